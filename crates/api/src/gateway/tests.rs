//! Unit tests of the gateway's pure parts: captured bodies, usage reading
//! and the stream reader.

use gatehouse_core::usage::Tokens;

use super::stream::StreamUsage;
use super::usage::{trailing_usage, usage_of};
use super::*;
use crate::sse::MAX_EVENT_LINE;

#[test]
fn captured_bodies_are_cut_at_the_limit_and_say_so() {
    assert_eq!(captured_text(b"{\"a\":1}", 7), "{\"a\":1}");
    let big = vec![b'x'; CAPTURE_LIMIT + 10];
    let text = captured_text(&big, big.len());
    assert!(text.starts_with(&"x".repeat(CAPTURE_LIMIT)));
    assert!(
        text.ends_with("…[10 more bytes not captured]"),
        "{}",
        &text[CAPTURE_LIMIT..]
    );
    // A stream's capture holds the first bytes; the total says how many came.
    let text = captured_text(&big[..CAPTURE_LIMIT], 3 * CAPTURE_LIMIT);
    assert!(text.ends_with(&format!("…[{} more bytes not captured]", 2 * CAPTURE_LIMIT)));
}

fn tokens(json: &str) -> Option<(u64, u64)> {
    let mut t = Tokens::default();
    usage_of(json.as_bytes(), &mut t);
    t.reported.then_some((t.prompt, t.completion))
}

#[test]
fn usage_is_read_from_the_end_or_from_the_whole_answer() {
    // The usual answer: `usage` last, read without parsing the rest.
    let openai = r#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    assert_eq!(tokens(openai), Some((12, 3)));
    assert!(trailing_usage(openai.as_bytes(), openai.rfind("\"usage\"").unwrap()).is_some());
    // Anthropic's names, whitespace around everything.
    assert_eq!(
        tokens(
            "{ \"content\": [],\n  \"usage\" :\t{\"input_tokens\": 7, \"output_tokens\": 2} \n}\n"
        ),
        Some((7, 2))
    );
    // `usage` not last, or only in `message` (Anthropic's message_start):
    // the whole answer is read.
    assert_eq!(
        tokens(r#"{"usage":{"prompt_tokens":4,"completion_tokens":1},"choices":[]}"#),
        Some((4, 1))
    );
    assert_eq!(
        tokens(
            r#"{"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}"#
        ),
        Some((9, 1))
    );
    // A nested `usage` that ends the text is not the answer's.
    assert_eq!(
        tokens(r#"{"choices":[{"meta":{"usage":{"prompt_tokens":99,"completion_tokens":99}}}]}"#),
        None
    );
    // Text that talks about usage is not usage.
    assert_eq!(
        tokens(r#"{"choices":[{"text":"\"usage\": {\"prompt_tokens\": 99}}"}]}"#),
        None
    );
    assert_eq!(
        tokens(r#"{"a\"usage":{"prompt_tokens":99,"completion_tokens":99}}"#),
        None
    );
    // No usage, a null one, no JSON at all.
    assert_eq!(tokens(r#"{"choices":[]}"#), None);
    assert_eq!(tokens(r#"{"choices":[],"usage":null}"#), None);
    assert_eq!(tokens("data: [DONE]"), None);
    assert_eq!(tokens(r#"{"usage":"#), None);
}

#[test]
fn stream_usage_is_read_however_the_stream_is_cut() {
    let stream = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"usage\\\": 1}\"}}]}\r\n\r\n",
        ": a comment\n\n",
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
    )
    .as_bytes();
    for cut in 0..stream.len() {
        let mut usage = StreamUsage::default();
        usage.see(&stream[..cut]);
        usage.see(&stream[cut..]);
        let t = usage.tokens;
        assert!(t.reported, "cut at {cut}");
        assert_eq!((t.prompt, t.completion), (12, 3), "cut at {cut}");
    }
    // Byte by byte, and an overlong line is dropped without harm.
    let mut usage = StreamUsage::default();
    usage.see(&vec![b'x'; MAX_EVENT_LINE + 1]);
    assert!(usage.pending.is_empty());
    for b in stream {
        usage.see(std::slice::from_ref(b));
    }
    assert_eq!((usage.tokens.prompt, usage.tokens.completion), (12, 3));
}

#[test]
fn the_usage_chunk_nobody_asked_for_is_dropped_wherever_pieces_split() {
    use super::stream::HideUsageChunk;
    let chunk = |content: &str| {
        format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}}}}],\"usage\":null}}\n\n"
        )
    };
    let usage = "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\r\n\r\n";
    let upstream = format!(
        "{}{}: keep-alive comment\n\n{usage}data: [DONE]\n\n",
        chunk("Hel"),
        chunk("lo")
    );
    let expected = format!(
        "{}{}: keep-alive comment\n\ndata: [DONE]\n\n",
        chunk("Hel"),
        chunk("lo")
    );
    for size in [1, 2, 7, 64, upstream.len()] {
        let mut filter = HideUsageChunk::default();
        let mut out = Vec::new();
        for piece in upstream.as_bytes().chunks(size) {
            out.extend(filter.pass(axum::body::Bytes::copy_from_slice(piece)));
        }
        out.extend(filter.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            expected,
            "pieces of {size}"
        );
    }
    // Event by event, as upstreams write them: all but the usage chunk pass.
    let mut filter = HideUsageChunk::default();
    let mut out = Vec::new();
    for event in upstream.split_inclusive("\n\n") {
        out.extend(filter.pass(axum::body::Bytes::copy_from_slice(event.as_bytes())));
    }
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    // A line longer than any event passes through as it comes, in order.
    let long = format!("data: {}\n\n", "x".repeat(MAX_EVENT_LINE + 10));
    let mut filter = HideUsageChunk::default();
    let mut out = Vec::new();
    for piece in long.as_bytes().chunks(4096) {
        out.extend(filter.feed(piece));
    }
    out.extend(filter.finish());
    assert_eq!(out, long.as_bytes());
}

#[test]
fn only_a_chunk_with_empty_choices_and_a_usage_object_is_the_usage_chunk() {
    use super::stream::HideUsageChunk;
    let dropped = |line: &str| {
        let mut filter = HideUsageChunk::default();
        filter.feed(format!("{line}\n").as_bytes()).is_empty()
    };
    assert!(dropped(
        r#"data: {"choices":[],"usage":{"prompt_tokens":1}}"#
    ));
    assert!(dropped(
        r#"data: {"usage": {"total_tokens":1}, "choices": [ ]}"#
    ));
    assert!(!dropped(r#"data: {"choices":[],"usage":null}"#));
    assert!(!dropped(
        r#"data: {"choices":[{"index":0}],"usage":{"prompt_tokens":1}}"#
    ));
    assert!(!dropped(r#"data: {"usage":{"prompt_tokens":1}}"#));
    assert!(!dropped(r#"data: {"choices":[],"usage":{"a":1}"#));
    assert!(!dropped(r#"event: {"choices":[],"usage":{}}"#));
}
