//! The store behind the host's `store_data`, `get_data` and `store_data_if_absent`: Redis
//! (shared by every replica) or process-local memory.
//!
//! A Redis operation has one deadline, `--redis-timeout-ms`, for all of it: taking a pooled
//! connection or opening a new one (TCP connect and the connection's setup commands), writing
//! the command and reading the reply. A dispatch on the blocking pool also carries a call
//! deadline (its arrival plus the Redis timeout, see [`with_call_deadline`]): an operation
//! never runs past it, so time spent waiting in the pool's queue counts against the same
//! timeout and a queued call cannot add a whole timeout of its own. A pooled connection that turns out broken (Redis
//! restarted) is replaced once within the same deadline; one that timed out is dropped and
//! the operation fails. A circuit breaker stops a Redis outage from costing every call the
//! whole timeout: after `--redis-breaker-failures` consecutive failed operations it opens and
//! operations fail at once for `--redis-breaker-backoff-ms`; then one operation probes Redis
//! (the others still fail at once) and its success closes the breaker, its failure opens it
//! again. Opening and closing each log one line; failed operations are logged at most once
//! per `--error-log-interval-ms` with the count of the others.

use crate::log::{Logger, RateLimited};
use coprocess::{LogLevel, MemoryStore};
use parking_lot::Mutex;
use serde_json::Value;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

thread_local! {
    static CALL_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Run `f` (a dispatch) with store operations on this thread bounded by `deadline`.
pub fn with_call_deadline<T>(deadline: Instant, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Instant>);
    impl Drop for Reset {
        fn drop(&mut self) {
            CALL_DEADLINE.with(|d| d.set(self.0));
        }
    }
    let _reset = Reset(CALL_DEADLINE.with(|d| d.replace(Some(deadline))));
    f()
}

/// The key-value store behind the host's store callbacks.
pub enum Store {
    /// Process-local, with TTL (not shared between replicas). Never blocks.
    Memory(MemoryStore),
    /// Redis, shared by every replica pointing at it.
    Redis(Box<RedisStore>),
}

impl Store {
    /// Whether an operation can wait on the network (dispatches touching it run on the
    /// blocking pool).
    pub fn can_block(&self) -> bool {
        matches!(self, Store::Redis(_))
    }
}

/// Why a Redis operation did not happen.
#[derive(Debug)]
pub enum StoreFailure {
    /// The breaker is open: Redis was not asked.
    BreakerOpen,
    /// The call's deadline had passed before the operation started: Redis was not asked.
    DeadlinePassed,
    /// Redis failed, timed out or could not be reached.
    Redis(redis::RedisError),
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFailure::BreakerOpen => f.write_str("circuit breaker open: failing fast while Redis is unavailable"),
            StoreFailure::DeadlinePassed => f.write_str("the call waited past the Redis timeout before this operation"),
            StoreFailure::Redis(e) => write!(f, "{e}"),
        }
    }
}

/// The settings of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// The deadline of one whole operation.
    pub timeout: Duration,
    /// Consecutive failures that open the breaker; 0: no breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a probe.
    pub breaker_backoff: Duration,
    /// At most one line per interval for failed operations.
    pub log_interval: Duration,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            timeout: Duration::from_secs(2),
            breaker_failures: 5,
            breaker_backoff: Duration::from_secs(2),
            log_interval: Duration::from_secs(10),
            max_idle: 32,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everything else fails fast.
    HalfOpen,
}

/// closed -> open after N consecutive failures -> half-open probe after the back-off ->
/// closed on the probe's success, open again on its failure.
struct Breaker {
    state: Mutex<BreakerState>,
    failures_to_open: u32,
    backoff: Duration,
    /// The state for the metrics (0 closed, 1 open, 2 half-open), written under `state`'s lock
    /// and read without it.
    shown: AtomicU8,
    opens: AtomicU64,
}

enum Admit {
    Go,
    Probe,
    Refuse,
}

impl Breaker {
    fn new(failures_to_open: u32, backoff: Duration) -> Self {
        Breaker {
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
            failures_to_open,
            backoff,
            shown: AtomicU8::new(0),
            opens: AtomicU64::new(0),
        }
    }

    fn show(&self, state: BreakerState) {
        let code = match state {
            BreakerState::Closed { .. } => 0,
            BreakerState::Open { .. } => 1,
            BreakerState::HalfOpen => 2,
        };
        self.shown.store(code, Ordering::Relaxed);
    }

    /// The state's name and how many times the breaker opened.
    fn status(&self) -> (&'static str, u64) {
        let state = match self.shown.load(Ordering::Relaxed) {
            0 => "closed",
            1 => "open",
            _ => "half-open",
        };
        (state, self.opens.load(Ordering::Relaxed))
    }

    fn admit(&self) -> Admit {
        if self.failures_to_open == 0 {
            return Admit::Go;
        }
        let mut state = self.state.lock();
        match *state {
            BreakerState::Closed { .. } => Admit::Go,
            BreakerState::Open { until } if Instant::now() >= until => {
                *state = BreakerState::HalfOpen;
                self.show(*state);
                Admit::Probe
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => Admit::Refuse,
        }
    }

    /// Record an outcome; returns the transition to log (`Some(true)`: opened,
    /// `Some(false)`: closed).
    fn record(&self, ok: bool, probe: bool) -> Option<bool> {
        if self.failures_to_open == 0 {
            return None;
        }
        let mut state = self.state.lock();
        match (*state, ok) {
            (BreakerState::Closed { failures }, true) => {
                if failures != 0 {
                    *state = BreakerState::Closed { failures: 0 };
                }
                None
            }
            (BreakerState::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.failures_to_open {
                    *state = BreakerState::Open { until: Instant::now() + self.backoff };
                    self.show(*state);
                    self.opens.fetch_add(1, Ordering::Relaxed);
                    Some(true)
                } else {
                    *state = BreakerState::Closed { failures };
                    None
                }
            }
            (BreakerState::HalfOpen, true) if probe => {
                *state = BreakerState::Closed { failures: 0 };
                self.show(*state);
                Some(false)
            }
            (BreakerState::HalfOpen, false) if probe => {
                *state = BreakerState::Open { until: Instant::now() + self.backoff };
                self.show(*state);
                None
            }
            // An operation admitted before the breaker opened, finishing after.
            _ => None,
        }
    }
}

/// A Redis store: keys are `prefix + key`, a positive TTL becomes `EX ttl`. Blocking calls,
/// each bounded by one deadline, over a pool of reusable connections.
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    settings: RedisSettings,
    idle: Mutex<Vec<redis::Connection>>,
    breaker: Breaker,
    logger: Logger,
    failures_log: RateLimited,
}

fn is_broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, "Redis operation timed out"))
}

impl RedisStore {
    /// Connect to `url` (`redis://host:port/db`; `rediss://` is not built in) and check that it
    /// answers PING within the timeout.
    pub fn connect(url: &str, prefix: &str, settings: RedisSettings, logger: Logger) -> Result<Self, String> {
        use redis::IntoConnectionInfo as _;
        let info = url.into_connection_info().map_err(|e| format!("invalid Redis URL: {e}"))?;
        // No CLIENT SETINFO round trip on every new connection.
        let redis_settings = info.redis_settings().clone().set_skip_set_lib_name();
        let client = redis::Client::open(info.set_redis_settings(redis_settings))
            .map_err(|e| format!("invalid Redis URL: {e}"))?;
        let store = RedisStore {
            client,
            prefix: prefix.to_owned(),
            failures_log: RateLimited::new(settings.log_interval),
            breaker: Breaker::new(settings.breaker_failures, settings.breaker_backoff),
            settings,
            idle: Mutex::new(Vec::new()),
            logger,
        };
        store
            .attempt(Instant::now() + store.settings.timeout, &mut |c| redis::cmd("PING").query::<String>(c))
            .map_err(|e| format!("Redis does not answer PING: {e}"))?;
        Ok(store)
    }

    fn remaining(deadline: Instant) -> redis::RedisResult<Duration> {
        match deadline.checked_duration_since(Instant::now()) {
            Some(d) if d >= Duration::from_millis(1) => Ok(d),
            _ => Err(timed_out()),
        }
    }

    fn fresh(&self, deadline: Instant) -> redis::RedisResult<redis::Connection> {
        // Connect and setup share the remaining time (redis-rs applies what is left after
        // the TCP connect to the setup commands).
        self.client.get_connection_with_timeout(Self::remaining(deadline)?)
    }

    fn query<T>(
        conn: &mut redis::Connection,
        deadline: Instant,
        f: &mut dyn FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let left = Self::remaining(deadline)?;
        conn.set_read_timeout(Some(left))?;
        conn.set_write_timeout(Some(left))?;
        f(conn)
    }

    /// One attempt within `deadline`: a pooled connection (replaced once if it is found
    /// broken, not after a timeout), or a new one.
    fn attempt<T>(
        &self,
        deadline: Instant,
        f: &mut dyn FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let pooled = self.idle.lock().pop();
        let (conn, result) = match pooled {
            Some(mut conn) => {
                let result = Self::query(&mut conn, deadline, f);
                match &result {
                    Err(e) if is_broken(e) && !e.is_timeout() => {
                        let mut conn = self.fresh(deadline)?;
                        let result = Self::query(&mut conn, deadline, f);
                        (conn, result)
                    }
                    _ => (conn, result),
                }
            }
            None => {
                let mut conn = self.fresh(deadline)?;
                let result = Self::query(&mut conn, deadline, f);
                (conn, result)
            }
        };
        let reusable = match &result {
            Ok(_) => true,
            Err(e) => !is_broken(e),
        };
        if reusable {
            let mut idle = self.idle.lock();
            if idle.len() < self.settings.max_idle {
                // Idle connections carry no timeout; the next use sets its own.
                let _ = conn.set_read_timeout(None);
                idle.push(conn);
            }
        }
        result
    }

    fn run<T>(
        &self,
        op: &'static str,
        f: &mut dyn FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreFailure> {
        let now = Instant::now();
        let mut deadline = now + self.settings.timeout;
        if let Some(call) = CALL_DEADLINE.with(Cell::get) {
            if call <= now {
                self.failed(op, &StoreFailure::DeadlinePassed);
                return Err(StoreFailure::DeadlinePassed);
            }
            deadline = deadline.min(call);
        }
        let probe = match self.breaker.admit() {
            Admit::Refuse => {
                self.failed(op, &StoreFailure::BreakerOpen);
                return Err(StoreFailure::BreakerOpen);
            }
            Admit::Probe => true,
            Admit::Go => false,
        };
        let result = self.attempt(deadline, f);
        // A reply that is a Redis error (not a connection problem) shows Redis is up.
        let up = match &result {
            Ok(_) => true,
            Err(e) => !is_broken(e) && !e.is_connection_refusal(),
        };
        match self.breaker.record(up, probe) {
            Some(true) => {
                // The pool's connections are as dead as the one that failed.
                self.idle.lock().clear();
                self.logger.error(
                    "redis store unavailable: circuit breaker open, store operations fail at once",
                    &[
                        ("failures", Value::from(self.breaker.failures_to_open)),
                        ("backoff_ms", Value::from(self.breaker.backoff.as_millis() as u64)),
                        ("error", Value::from(result.as_ref().err().map(|e| e.to_string()))),
                    ],
                );
            }
            Some(false) => {
                self.logger.info(
                    "redis store available again: circuit breaker closed",
                    &[("failed_while_open", Value::from(self.failures_log.take_suppressed()))],
                );
            }
            None => {}
        }
        result.map_err(|e| {
            let failure = StoreFailure::Redis(e);
            self.failed(op, &failure);
            failure
        })
    }

    fn failed(&self, op: &str, failure: &StoreFailure) {
        self.failures_log.log(
            &self.logger,
            LogLevel::Error,
            "redis store operation failed",
            &[("op", Value::from(op)), ("error", Value::from(failure.to_string()))],
        );
    }

    /// The circuit breaker's state (`closed`, `open`, `half-open`) and how many times it opened
    /// (read without a lock, for the metrics).
    pub fn breaker_status(&self) -> (&'static str, u64) {
        self.breaker.status()
    }

    /// The full Redis key.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `SET prefix+key value [EX ttl]`.
    pub fn set(&self, key: &str, value: &str, ttl: i64) -> Result<(), StoreFailure> {
        let full = self.key(key);
        self.run("set", &mut |c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&full).arg(value);
            if ttl > 0 {
                cmd.arg("EX").arg(ttl);
            }
            cmd.query::<()>(c)
        })
    }

    /// `SET prefix+key value NX [EX ttl]`: true when stored, false when the key was present.
    pub fn set_if_absent(&self, key: &str, value: &str, ttl: i64) -> Result<bool, StoreFailure> {
        let full = self.key(key);
        self.run("set_if_absent", &mut |c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&full).arg(value).arg("NX");
            if ttl > 0 {
                cmd.arg("EX").arg(ttl);
            }
            Ok(cmd.query::<Option<String>>(c)?.is_some())
        })
    }

    /// `GET prefix+key` (bytes that are not UTF-8 are converted lossily).
    pub fn get(&self, key: &str) -> Result<Option<String>, StoreFailure> {
        let full = self.key(key);
        let raw = self.run("get", &mut |c| redis::cmd("GET").arg(&full).query::<Option<Vec<u8>>>(c))?;
        Ok(raw.map(|b| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(n: u32, backoff_ms: u64) -> Breaker {
        Breaker::new(n, Duration::from_millis(backoff_ms))
    }

    #[test]
    fn breaker_opens_after_consecutive_failures_probes_and_closes() {
        let b = breaker(3, 50);
        for _ in 0..2 {
            assert!(matches!(b.admit(), Admit::Go));
            assert_eq!(b.record(false, false), None);
        }
        assert_eq!(b.record(true, false), None, "a success resets the count");
        for _ in 0..2 {
            assert_eq!(b.record(false, false), None);
        }
        assert_eq!(b.status(), ("closed", 0));
        assert_eq!(b.record(false, false), Some(true), "the third consecutive failure opens it");
        assert_eq!(b.status(), ("open", 1));
        assert!(matches!(b.admit(), Admit::Refuse), "open: fail fast");
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(b.admit(), Admit::Probe), "after the back-off: one probe");
        assert_eq!(b.status(), ("half-open", 1));
        assert!(matches!(b.admit(), Admit::Refuse), "only one probe at a time");
        assert_eq!(b.record(false, true), None, "a failed probe opens it again, without a new line");
        assert!(matches!(b.admit(), Admit::Refuse));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(b.admit(), Admit::Probe));
        assert_eq!(b.record(true, true), Some(false), "a good probe closes it");
        assert_eq!(b.status(), ("closed", 1), "a failed probe is not another opening");
        assert!(matches!(b.admit(), Admit::Go));
    }

    #[test]
    fn call_deadlines_nest_and_reset() {
        let get = || CALL_DEADLINE.with(Cell::get);
        assert_eq!(get(), None);
        let (a, b) = (Instant::now() + Duration::from_secs(5), Instant::now() + Duration::from_secs(1));
        with_call_deadline(a, || {
            assert_eq!(get(), Some(a));
            with_call_deadline(b, || assert_eq!(get(), Some(b)));
            assert_eq!(get(), Some(a));
        });
        assert_eq!(get(), None);
    }

    #[test]
    fn no_breaker_when_disabled() {
        let b = breaker(0, 50);
        for _ in 0..100 {
            assert!(matches!(b.admit(), Admit::Go));
            assert_eq!(b.record(false, false), None);
        }
    }
}
