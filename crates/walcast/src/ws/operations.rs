//! A connection's operations, run inside its writer task rather than as tasks of their own.
//!
//! A transaction that matches ten subscriptions of one connection wakes the writer task once:
//! the hub's wakes land in the set's ready queue, the ready operations are polled one after the
//! other and their messages go out in one burst, one write. As tasks of their own, each
//! subscription cost a task wake and poll, a wake of the writer and often a write of its own.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::Poll;

use futures::future::{AbortHandle, Abortable, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

type Op = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Hands operations to the writer task that runs them.
#[derive(Clone)]
pub struct Runner(mpsc::UnboundedSender<Op>);

/// The writer task's side: the operations it runs.
pub struct Running {
    new: mpsc::UnboundedReceiver<Op>,
    ops: FuturesUnordered<Op>,
}

/// A running operation, as its session holds it.
pub struct OpHandle {
    abort: AbortHandle,
    done: Arc<AtomicBool>,
}

pub fn channel() -> (Runner, Running) {
    let (tx, new) = mpsc::unbounded_channel();
    let running = Running {
        new,
        ops: FuturesUnordered::new(),
    };
    (Runner(tx), running)
}

impl Runner {
    /// Runs `op` in the writer task. When the writer is gone, so is the connection: the
    /// operation is dropped and its handle reads finished.
    pub fn run(&self, op: impl Future<Output = ()> + Send + 'static) -> OpHandle {
        let (abort, registration) = AbortHandle::new_pair();
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        // A combinator, not an async block: a block would hold the operation twice (the captured
        // future and the one it awaits), and it lives as long as the subscription.
        let op =
            Box::pin(Abortable::new(op, registration).map(move |_| finished.store(true, Relaxed)));
        if self.0.send(op).is_err() {
            done.store(true, Relaxed);
        }
        OpHandle { abort, done }
    }
}

impl OpHandle {
    /// Stops the operation before its next poll.
    pub fn abort(&self) {
        self.abort.abort();
    }

    pub fn is_finished(&self) -> bool {
        self.done.load(Relaxed) || self.abort.is_aborted()
    }
}

impl Running {
    /// Polls every operation that is ready, and takes new ones, for ever: run beside the
    /// writing, it ends when that does.
    pub async fn drive(&mut self) -> Infallible {
        poll_fn(|cx| {
            while let Poll::Ready(Some(op)) = self.new.poll_recv(cx) {
                self.ops.push(op);
            }
            // Pending once nothing is ready (or after the set's own fairness yield, which
            // wakes the task again); `None` when the set is empty, where the receiver's waker
            // stands.
            while let Poll::Ready(Some(())) = self.ops.poll_next_unpin(cx) {}
            Poll::Pending
        })
        .await
    }

    /// Keeps the operations, unpolled, until the runtime shuts down: at the server's shutdown
    /// tearing down each subscription (hub, payload group) would compete with every other
    /// connection's goodbye for the cores.
    pub fn park(self) {
        if self.ops.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let _ops = self;
            std::future::pending::<()>().await
        });
    }
}
