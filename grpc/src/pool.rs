//! A fixed set of threads for the dispatches that may wait (on Redis or the network), with a
//! bounded queue: a call that finds every thread busy and the queue full is refused at once
//! (the server answers `UNAVAILABLE`) instead of waiting without limit. The threads live as
//! long as the server, so the library's per-thread `config_data` cache stays warm. Jobs
//! queued, threads busy and calls refused are counted with atomics ([`PoolStats`]).

use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The pool. Admission counts the jobs accepted and not yet finished against
/// `threads + queue`, so the pool takes exactly that many whether or not its threads have woken
/// to take the first ones.
pub struct BlockingPool {
    tx: SyncSender<Job>,
    threads: usize,
    queue: usize,
    stats: Arc<PoolStats>,
}

/// What the pool is doing, for the metrics.
#[derive(Debug, Default)]
pub struct PoolStats {
    queued: AtomicUsize,
    busy: AtomicUsize,
    admitted: AtomicUsize,
    refused: AtomicU64,
}

impl PoolStats {
    /// Jobs waiting for a thread now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Threads running a job now.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Jobs refused (every thread busy and the queue full) so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Every thread is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl BlockingPool {
    /// `threads` threads (at least 1) and room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::sync_channel::<Job>(threads + queue);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(PoolStats::default());
        for i in 0..threads {
            let (rx, stats) = (rx.clone(), stats.clone());
            std::thread::Builder::new().name(format!("coprocess-blocking-{i}")).spawn(move || worker(&rx, &stats))?;
        }
        Ok(BlockingPool { tx, threads, queue, stats })
    }

    /// Threads, queue length.
    pub fn size(&self) -> (usize, usize) {
        (self.threads, self.queue)
    }

    /// Jobs queued, threads busy, jobs refused.
    pub fn stats(&self) -> &Arc<PoolStats> {
        &self.stats
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
        if self.stats.admitted.fetch_add(1, Ordering::AcqRel) >= self.threads + self.queue {
            self.stats.admitted.fetch_sub(1, Ordering::AcqRel);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Full);
        }
        // Counted before it is sent, so a worker taking it at once never counts below zero.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(result),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.admitted.fetch_sub(1, Ordering::AcqRel);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                Err(Full)
            }
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, stats: &PoolStats) {
    loop {
        let job = rx.lock().recv();
        match job {
            Ok(job) => {
                stats.busy.fetch_add(1, Ordering::Relaxed);
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                job();
                stats.busy.fetch_sub(1, Ordering::Relaxed);
                stats.admitted.fetch_sub(1, Ordering::AcqRel);
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `n` jobs sent back to back (each must be taken), each returning its index once released.
    fn gated(pool: &BlockingPool, n: usize) -> (std::sync::mpsc::Sender<()>, Vec<oneshot::Receiver<usize>>) {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let pending = (0..n)
            .map(|i| {
                let gate = gate.clone();
                let job = move || {
                    let _ = gate.lock().recv_timeout(Duration::from_secs(10));
                    i
                };
                pool.try_run(job).expect("threads + queue fit, back to back")
            })
            .collect();
        (release, pending)
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..200 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn runs_jobs_and_refuses_past_the_queue() {
        let pool = BlockingPool::new(2, 3).unwrap();
        assert_eq!(pool.try_run(|| 40 + 2).unwrap().await.unwrap(), 42);
        // 2 running + 3 queued fit; the 6th is refused at once.
        let (release, pending) = gated(&pool, 5);
        assert_eq!(pool.try_run(|| 0).err(), Some(Full));
        let s = pool.stats();
        until(|| s.busy() == 2).await;
        assert_eq!((s.busy(), s.queued(), s.refused()), (2, 3, 1));
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
        // The busy count drops after the job's result is sent.
        until(|| s.busy() == 0).await;
        assert_eq!((s.busy(), s.queued(), s.refused()), (0, 0, 1));
    }

    #[tokio::test]
    async fn takes_threads_plus_queue_jobs_sent_before_any_thread_wakes() {
        for _ in 0..20 {
            let pool = BlockingPool::new(2, 2).unwrap();
            let (release, pending) = gated(&pool, 4);
            assert_eq!(pool.try_run(|| 0).err(), Some(Full));
            for _ in 0..4 {
                release.send(()).unwrap();
            }
            for r in pending {
                r.await.unwrap();
            }
        }
    }
}
