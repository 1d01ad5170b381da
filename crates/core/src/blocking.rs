//! CPU-heavy work (password hashing) runs on a bounded pool supplied by the
//! binary, so that it neither blocks the async workers nor, under a flood of
//! logins, takes every CPU. Core only describes the pool.

use crate::{Error, Result};

/// Runs jobs somewhere other than the calling async task.
pub trait BlockingPool: Send + Sync {
    fn execute(&self, job: Box<dyn FnOnce() + Send + 'static>);
}

/// Runs each job at once on the calling thread (tests, tools).
pub struct InlinePool;

impl BlockingPool for InlinePool {
    fn execute(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        job();
    }
}

/// Runs `f` on `pool` and waits for its result.
pub async fn run<T: Send + 'static>(
    pool: &dyn BlockingPool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = futures_channel::oneshot::channel();
    pool.execute(Box::new(move || {
        let _ = tx.send(f());
    }));
    rx.await
        .map_err(|_| Error::internal("a blocking job was dropped before it finished"))
}

/// Lets the executor run other tasks before continuing: long loops in async
/// code (a large usage flush) call it now and then, so that the requests
/// queued on the same worker thread are not held up.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}
