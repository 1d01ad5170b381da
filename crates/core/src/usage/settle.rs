//! Finishing a gateway call's bookkeeping: its tokens (the upstream's figures,
//! or an estimate when it reported none), its cost at the model's prices, the
//! reservation settled in the ledger, and its request log queued.

use super::ledger::Ticket;
use super::{RequestLog, UsageService};
use crate::keys::index::Grant;

/// Tokens an answer may produce when the request does not say (`max_tokens`);
/// also what an OpenAI caller gets from an Anthropic endpoint, which requires
/// the field.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The most output tokens a call is reserved for when its model's context
/// length is unknown: more than any model answers with, small enough that
/// its price fits in a budget's arithmetic.
pub const MAX_TOKENS_CAP: u64 = 1 << 21;

/// The output tokens a call is reserved for: what it asks for (or
/// [`DEFAULT_MAX_TOKENS`]), at most the model's context length when known
/// and never more than [`MAX_TOKENS_CAP`].
pub fn reserved_tokens(asked: Option<u64>, context_length: Option<u32>) -> u64 {
    let cap = context_length.map_or(MAX_TOKENS_CAP, |c| u64::from(c).min(MAX_TOKENS_CAP));
    asked.unwrap_or(DEFAULT_MAX_TOKENS).min(cap)
}

/// The most tokens of either kind one call is believed to have used: more
/// than any model's context (the largest hold about ten million). A count
/// above it can only come from a broken or hostile upstream; believed, one
/// answer could charge its caller more than any budget holds. Such a call is
/// estimated from its sizes instead, as if it had reported nothing.
pub const MAX_REPORTED_TOKENS: u64 = 1 << 24;

/// A rough token count for upstreams that report none: four bytes a token.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Token counts of one call and whether the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub reported: bool,
}

/// How one gateway call ended, as the gateway saw it.
pub struct CallOutcome<'a> {
    pub grant: &'a Grant,
    /// `chat.completions`, `embeddings` or `messages`.
    pub api: &'static str,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub request_bytes: usize,
    pub response_bytes: usize,
    pub tokens: Tokens,
    pub error: Option<String>,
    /// Kept only when the grant captures bodies.
    pub request_body: Option<String>,
    pub response_body: Option<String>,
    /// The request log's ID when the caller chose it (the playground keeps
    /// it with the answer); otherwise a new one.
    pub request_id: Option<crate::Id>,
}

impl UsageService {
    /// Settles a call: a successful call without reported usage is estimated
    /// from its sizes, the cost is the model's prices times the tokens, the
    /// reservation (if any) is settled with it, and the request log is queued.
    pub fn settle_call(&self, ticket: Option<Ticket>, call: CallOutcome<'_>) {
        let mut tokens = call.tokens;
        if tokens.prompt > MAX_REPORTED_TOKENS || tokens.completion > MAX_REPORTED_TOKENS {
            tracing::warn!(
                model = %call.grant.model.name,
                endpoint = %call.grant.model.endpoint_id,
                prompt_tokens = tokens.prompt,
                completion_tokens = tokens.completion,
                "the upstream reported more tokens than a call can use; the call is estimated instead"
            );
            tokens = Tokens::default();
        }
        let estimated = !tokens.reported && call.status < 400;
        if estimated {
            tokens.prompt = estimate_tokens(call.request_bytes);
            tokens.completion = estimate_tokens(call.response_bytes);
        }
        let model = &call.grant.model;
        let cost = model.cost_micros(tokens.prompt, tokens.completion);
        if let Some(ticket) = ticket {
            self.ledger().settle(
                ticket,
                cost,
                tokens.prompt.saturating_add(tokens.completion),
            );
        }
        let capture = call.grant.capture_bodies;
        let env = self.env();
        self.record(RequestLog {
            id: call.request_id.unwrap_or_else(|| env.ids.next_id()),
            at: env.clock.now(),
            key_id: call.grant.key_id,
            user_id: call.grant.owner_id,
            org_id: call.grant.org_id,
            model_id: model.id,
            model: model.name.clone(),
            endpoint_id: model.endpoint_id,
            api: call.api.to_string(),
            stream: call.stream,
            status: call.status,
            latency_ms: call.latency_ms,
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cost_micros: cost,
            tokens_estimated: estimated,
            error: call.error,
            captured: false,
            request_body: call.request_body.filter(|_| capture),
            response_body: call.response_body.filter(|_| capture),
        });
    }
}
