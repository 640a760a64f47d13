//! A fixed set of threads for the dispatches that may wait (on Redis or the network), with a
//! bounded queue: a call that finds every thread busy and the queue full is refused at once
//! (the server answers `UNAVAILABLE`) instead of waiting without limit. The threads live as
//! long as the server, so the library's per-thread `config_data` cache stays warm.

use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The pool.
pub struct BlockingPool {
    tx: SyncSender<Job>,
    threads: usize,
    queue: usize,
}

/// Every thread is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl BlockingPool {
    /// `threads` threads (at least 1) and room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("coprocess-blocking-{i}")).spawn(move || worker(&rx))?;
        }
        Ok(BlockingPool { tx, threads, queue })
    }

    /// Threads, queue length.
    pub fn size(&self) -> (usize, usize) {
        (self.threads, self.queue)
    }

    /// Queue `f`; its result arrives on the receiver (which errs if `f` panicked).
    pub fn try_run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Full> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            if let Ok(v) = catch_unwind(AssertUnwindSafe(f)) {
                let _ = done.send(v);
            }
        });
        match self.tx.try_send(job) {
            Ok(()) => Ok(result),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Full),
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = rx.lock().recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn runs_jobs_and_refuses_past_the_queue() {
        let pool = BlockingPool::new(2, 3).unwrap();
        assert_eq!(pool.try_run(|| 40 + 2).unwrap().await.unwrap(), 42);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let mut pending = Vec::new();
        // 2 running + 3 queued fit; the 6th is refused at once.
        for i in 0..5 {
            let gate = gate.clone();
            let r = pool.try_run(move || {
                let _ = gate.lock().recv_timeout(Duration::from_secs(10));
                i
            });
            pending.push(r.expect("fits"));
            // Let the workers pick up the first two before queueing the rest.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.try_run(|| 0).err(), Some(Full));
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        let mut got = Vec::new();
        for r in pending {
            got.push(r.await.unwrap());
        }
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        let panicked = pool.try_run(|| panic!("on purpose")).unwrap();
        assert!(panicked.await.is_err(), "a panic drops the result");
        assert_eq!(pool.try_run(|| 7).unwrap().await.unwrap(), 7, "the thread survives a panic");
    }
}
