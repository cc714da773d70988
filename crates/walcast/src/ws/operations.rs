//! A connection's operations, run inside its writer task rather than as tasks of their own.
//!
//! A transaction that matches ten subscriptions of one connection wakes the writer task once:
//! the hub's wakes land in the set's ready queue, the ready operations are polled one after the
//! other and their messages go out in one burst, one write. As tasks of their own, each
//! subscription cost a task wake and poll, a wake of the writer and often a write of its own.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::future::{AbortHandle, Abortable, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::task::AtomicWaker;
use tokio::sync::mpsc;

type Op = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Hands operations to the writer task that runs them.
#[derive(Clone)]
pub struct Runner(mpsc::UnboundedSender<Op>);

/// The writer task's side: the operations it runs.
pub struct Running {
    new: mpsc::UnboundedReceiver<Op>,
    ops: FuturesUnordered<Op>,
    quiet: Arc<Quiet>,
    /// `quiet` as a waker, made once.
    waker: Waker,
}

/// The waker the set of operations is polled with.
///
/// After a pass in which it polled every operation, `FuturesUnordered` wakes its task: a
/// fairness yield for a set that shares its task with other work. Here the set is the writer's
/// own work, and that wake cost a second poll of the writer task for every burst (and, with
/// the other worker idle, a thread wake-up). While [`Running::drive`] polls the set, a wake only
/// asks for another pass in the same poll; at any other time it wakes the writer task.
#[derive(Default)]
struct Quiet {
    polling: AtomicBool,
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Quiet {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Set, then checked (and the reverse in `drive`): one side always sees the other.
        self.woken.store(true, SeqCst);
        if !self.polling.load(SeqCst) {
            self.task.wake();
        }
    }
}

/// Passes over the ready operations in one poll of the writer before it yields to the runtime
/// anyway.
const PASSES: usize = 4;

/// A running operation, as its session holds it.
pub struct OpHandle {
    abort: AbortHandle,
    done: Arc<AtomicBool>,
    /// Its serial on the connection, when the session numbers its operations.
    serial: u64,
}

pub fn channel() -> (Runner, Running) {
    let (tx, new) = mpsc::unbounded_channel();
    let quiet = Arc::new(Quiet::default());
    let running = Running {
        new,
        ops: FuturesUnordered::new(),
        waker: Waker::from(quiet.clone()),
        quiet,
    };
    (Runner(tx), running)
}

impl Runner {
    /// Runs `op` in the writer task. When the writer is gone, so is the connection: the
    /// operation is dropped and its handle reads finished.
    pub fn run(&self, op: impl Future<Output = ()> + Send + 'static) -> OpHandle {
        let (abort, registration) = AbortHandle::new_pair();
        let done = Arc::new(AtomicBool::new(false));
        // Set when the operation ends or is dropped unpolled (its writer ended first). A
        // combinator, not an async block: a block would hold the operation twice (the captured
        // future and the one it awaits), and it lives as long as the subscription.
        let finished = Finished(done.clone());
        let op = Box::pin(Abortable::new(op, registration).map(move |_| drop(finished)));
        // Refused when the writer is gone: the operation is dropped, and the flag with it.
        let _ = self.0.send(op);
        OpHandle {
            abort,
            done,
            serial: 0,
        }
    }
}

/// Marks its operation finished when dropped.
struct Finished(Arc<AtomicBool>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

impl OpHandle {
    /// Stops the operation before its next poll.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// The handle of the operation the session numbered `serial` (see `OpEvent`).
    pub fn numbered(self, serial: u64) -> OpHandle {
        OpHandle { serial, ..self }
    }

    pub fn serial(&self) -> u64 {
        self.serial
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
            self.quiet.task.register(cx.waker());
            let mut inner = Context::from_waker(&self.waker);
            for _ in 0..PASSES {
                self.quiet.woken.store(false, SeqCst);
                self.quiet.polling.store(true, SeqCst);
                // Pending once nothing is ready or after the set's fairness yield; `None` when
                // the set is empty.
                while let Poll::Ready(Some(())) = self.ops.poll_next_unpin(&mut inner) {}
                self.quiet.polling.store(false, SeqCst);
                if !self.quiet.woken.swap(false, SeqCst) {
                    return Poll::Pending;
                }
            }
            // Still being woken: the writer's turn ends here, and it is polled again later.
            cx.waker().wake_by_ref();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn until_finished(op: &OpHandle) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !op.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the operation finished");
    }

    #[tokio::test]
    async fn operations_run_end_and_abort_in_the_writer_task() {
        let (runner, mut running) = channel();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let quick = runner.run(async {});
        let waiting = runner.run(async move {
            let _ = rx.await;
        });
        let held = runner.run(std::future::pending());
        let driver = tokio::spawn(async move { match running.drive().await {} });
        until_finished(&quick).await;
        assert!(!waiting.is_finished());
        let _ = tx.send(());
        until_finished(&waiting).await;
        held.abort();
        until_finished(&held).await;
        driver.abort();
    }

    #[test]
    fn a_pass_over_every_operation_does_not_wake_the_writer_again() {
        use crate::ws::testing::Wakes;
        use futures::channel::mpsc::unbounded;
        use std::sync::atomic::AtomicUsize;
        let (runner, mut running) = channel();
        let (events, mut inbox) = unbounded::<()>();
        let handled = Arc::new(AtomicUsize::new(0));
        let counted = handled.clone();
        let _op = runner.run(async move {
            while inbox.next().await.is_some() {
                counted.fetch_add(1, Relaxed);
            }
        });
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut drive = Box::pin(running.drive());
        assert!(drive.as_mut().poll(&mut cx).is_pending());
        for i in 1..=3 {
            events.unbounded_send(()).expect("send");
            assert_eq!(wakes.count(), i, "an event wakes the writer once");
            assert!(drive.as_mut().poll(&mut cx).is_pending());
            assert_eq!(handled.load(Relaxed), i);
            assert_eq!(wakes.count(), i, "and handling it does not wake it again");
        }
    }

    #[tokio::test]
    async fn operations_dropped_with_their_writer_read_finished() {
        let (runner, running) = channel();
        let queued = runner.run(std::future::pending());
        assert!(!queued.is_finished());
        drop(running);
        assert!(queued.is_finished(), "dropped with the queue it waited in");
        let late = runner.run(std::future::pending());
        assert!(late.is_finished(), "refused by a writer that is gone");
    }
}
