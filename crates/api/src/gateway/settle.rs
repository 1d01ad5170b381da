//! A call's bookkeeping guard: whatever way a call ends — answered, refused
//! by the upstream, broken off, or dropped when the client goes away — its
//! reservation is settled and its log queued exactly once
//! ([`UsageService::settle_call`](gatehouse_core::usage::UsageService::settle_call)).

use std::sync::Arc;
use std::time::Instant;

use gatehouse_core::keys::index::Grant;
use gatehouse_core::usage::ledger::Ticket;
use gatehouse_core::usage::{CallOutcome, Tokens};

use super::{Api, Gateway};

/// Everything needed to finish a call's bookkeeping once its answer is done.
pub(super) struct Settlement {
    pub(super) gateway: Arc<Gateway>,
    pub(super) ticket: Option<Ticket>,
    pub(super) grant: Grant,
    pub(super) api: Api,
    pub(super) stream: bool,
    pub(super) started: Instant,
    pub(super) request_bytes: usize,
    pub(super) request_body: Option<String>,
    /// Settled already (a call is settled exactly once).
    pub(super) done: bool,
    /// A playground call: logged as `playground`, under this request ID.
    pub(super) playground: Option<gatehouse_core::Id>,
}

impl Drop for Settlement {
    /// A call dropped before it finished — the client went away while the
    /// upstream worked — still gives its reservation back and is logged.
    fn drop(&mut self) {
        self.settle(
            499,
            Tokens::default(),
            0,
            None,
            Some("the client closed the connection".into()),
        );
    }
}

impl Settlement {
    /// Settles the reservation and queues the request log.
    pub(super) fn finish(
        mut self,
        status: u16,
        tokens: Tokens,
        response_bytes: usize,
        response_body: Option<String>,
        error: Option<String>,
    ) {
        self.settle(status, tokens, response_bytes, response_body, error);
    }

    fn settle(
        &mut self,
        status: u16,
        tokens: Tokens,
        response_bytes: usize,
        response_body: Option<String>,
        error: Option<String>,
    ) {
        if self.done {
            return;
        }
        self.done = true;
        self.gateway.services.usage.settle_call(
            self.ticket.take(),
            CallOutcome {
                grant: &self.grant,
                api: match self.playground {
                    Some(_) => "playground",
                    None => self.api.name(),
                },
                stream: self.stream,
                status,
                latency_ms: self.started.elapsed().as_millis() as u64,
                request_bytes: self.request_bytes,
                response_bytes,
                tokens,
                error,
                request_body: self.request_body.take(),
                response_body,
                request_id: self.playground,
            },
        );
    }
}
