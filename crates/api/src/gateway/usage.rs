//! Reading token counts from an answer or a stream event without parsing
//! more of it than needed.

use std::sync::LazyLock;

use gatehouse_core::usage::Tokens;
use memchr::memmem::{Finder, FinderRev};

/// The parts of an answer (or stream event) the gateway reads: `usage`, or
/// Anthropic's `message.usage`; everything else is skipped.
#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: Option<UsageFields>,
    message: Option<MessageUsage>,
}

#[derive(serde::Deserialize)]
struct MessageUsage {
    usage: Option<UsageFields>,
}

#[derive(serde::Deserialize)]
pub(super) struct UsageFields {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// Searchers built once: `memmem::find` builds one per call, which cost a
/// streamed call about 2 000 instructions (callgrind, the gateway bench).
static USAGE_REV: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\"usage\""));
pub(super) static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
pub(super) static EMPTY_CHOICES: LazyLock<[Finder<'static>; 2]> = LazyLock::new(|| {
    [
        Finder::new(b"\"choices\":[]"),
        Finder::new(b"\"choices\": []"),
    ]
});

/// Reads the token counts of an OpenAI or Anthropic answer or stream event.
///
/// Most answers end with their `usage` (an embeddings answer is mostly
/// numbers before it): when the last `"usage"` in the text is a member of the
/// outermost object and closes it, only that member is parsed. Otherwise the
/// whole text is read, skipping all but `usage` and `message.usage`. Text with
/// no `"usage"` at all reports nothing and is not parsed.
pub(super) fn usage_of(json: &[u8], tokens: &mut Tokens) {
    let Some(at) = USAGE_REV.rfind(json) else {
        return;
    };
    let usage = trailing_usage(json, at).or_else(|| {
        let answer = serde_json::from_slice::<UsageOnly>(json).ok()?;
        answer.usage.or(answer.message.and_then(|m| m.usage))
    });
    let Some(usage) = usage else {
        return;
    };
    if let Some(n) = usage.prompt_tokens.or(usage.input_tokens) {
        tokens.prompt = n;
        tokens.reported = true;
    }
    if let Some(n) = usage.completion_tokens.or(usage.output_tokens) {
        tokens.completion = n;
        tokens.reported = true;
    }
}

/// The `usage` member whose name starts at `at`, if it is the outermost
/// object's last member: after its value come only whitespace, one `}` and
/// whitespace. (A quote before the name could be an escaped one inside a
/// longer name: such text takes the slow path.)
pub(super) fn trailing_usage(json: &[u8], at: usize) -> Option<UsageFields> {
    if at > 0 && json[at - 1] == b'\\' {
        return None;
    }
    let rest = json[at + b"\"usage\"".len()..].trim_ascii_start();
    let rest = rest.strip_prefix(b":")?;
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Option<UsageFields>>();
    let usage = values.next()?.ok()?;
    let after = rest[values.byte_offset()..].trim_ascii();
    if after != b"}" {
        return None;
    }
    usage
}
