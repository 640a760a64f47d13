//! The server's own metrics (`coprocess_grpc_*`), kept without a lock on the call path and
//! written in the Prometheus text exposition format (version 0.0.4) beside the library's
//! ([`coprocess::Runtime::metrics`]); [`crate::metrics_server`] serves both on
//! `--metrics-listen`.
//!
//! Per-call counters (calls by method and gRPC status code, the call duration histogram,
//! store operations) live in [`Sharded`] cells: a thread always adds to its own shard
//! (assigned round-robin at its first count) with relaxed atomic adds, and a scrape sums the
//! shards. Rare events (connections refused, streams refused, pool and memory refusals) are
//! single relaxed atomics. Gauges (open connections, pool threads busy and calls queued,
//! request memory in use, the breaker's state) are read from the atomics the server keeps
//! anyway, at scrape time. Every label set is fixed: five method values, the 17 gRPC codes,
//! three store operations and their results.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coprocess::metrics::{Histogram, Sharded};

/// The `method` label of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `/coprocess.Dispatcher/Dispatch`.
    Dispatch,
    /// `/coprocess.Dispatcher/DispatchEvent`.
    DispatchEvent,
    /// `/grpc.health.v1.Health/Check`.
    HealthCheck,
    /// `/grpc.health.v1.Health/Watch`.
    HealthWatch,
    /// Any other path.
    Unknown,
}

impl Method {
    /// Every value, in label order.
    pub const ALL: [Method; 5] =
        [Method::Dispatch, Method::DispatchEvent, Method::HealthCheck, Method::HealthWatch, Method::Unknown];

    /// The method a request path names.
    pub fn of_path(path: &str) -> Method {
        match path {
            "/coprocess.Dispatcher/Dispatch" => Method::Dispatch,
            "/coprocess.Dispatcher/DispatchEvent" => Method::DispatchEvent,
            "/grpc.health.v1.Health/Check" => Method::HealthCheck,
            "/grpc.health.v1.Health/Watch" => Method::HealthWatch,
            _ => Method::Unknown,
        }
    }

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Method::Dispatch => "Dispatch",
            Method::DispatchEvent => "DispatchEvent",
            Method::HealthCheck => "HealthCheck",
            Method::HealthWatch => "HealthWatch",
            Method::Unknown => "unknown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The gRPC status codes by number, as the spec names them (the `code` label).
pub const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The call duration histogram: 50 µs to 10 s.
const CALL_DURATION: Histogram = Histogram(&[
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
]);

// Per method: counts by code, the histogram's buckets (the last one +Inf), the sum of
// durations in nanoseconds (their count is the sum of the buckets).
const HIST: usize = CODES.len();
const PER_METHOD: usize = HIST + CALL_DURATION.cells();

/// The store operations (the `op` label).
pub const STORE_OPS: [&str; 3] = ["get", "set", "set_if_absent"];

/// The results of a store operation (the `result` label): `ok` (a `get` that found a value, a
/// `set` done), `miss` (a `get` of an absent key), `stored`/`present` (`set_if_absent`),
/// `error` (Redis failed or the connection broke), `timeout` (the operation's deadline
/// passed), `breaker_open` and `deadline` (not sent to Redis: the breaker is open, or the
/// call's deadline had passed before the operation).
pub const STORE_RESULTS: [&str; 8] =
    ["ok", "miss", "stored", "present", "error", "timeout", "breaker_open", "deadline"];

/// Which store operations can have which results (the series that are written at zero).
fn store_result_applies(op: usize, result: usize) -> bool {
    match result {
        0 => op != 2,
        1 => op == 0,
        2 | 3 => op == 2,
        _ => true,
    }
}

/// The store operation counters, by op and result.
pub struct StoreCounters(Sharded);

impl Default for StoreCounters {
    fn default() -> Self {
        StoreCounters(Sharded::new(STORE_OPS.len() * STORE_RESULTS.len()))
    }
}

impl StoreCounters {
    /// Count one operation `op` ([`STORE_OPS`] index) with `result` ([`STORE_RESULTS`] index).
    pub fn count(&self, op: usize, result: usize) {
        self.0.add(op * STORE_RESULTS.len() + result, 1);
    }

    /// The count of `op` with `result`.
    pub fn get(&self, op: usize, result: usize) -> u64 {
        self.0.get(op * STORE_RESULTS.len() + result)
    }
}

/// The server's counters: calls, and the rare events that refuse connections, streams and calls.
pub struct ServerMetrics {
    calls: Sharded,
    /// Connections accepted and served (not refused).
    pub connections_accepted: AtomicU64,
    /// Connections closed at once because `--max-connections` were open.
    pub connections_refused_limit: AtomicU64,
    /// Connections accepted with the reserved descriptor and closed (out of file descriptors).
    pub connections_refused_fds: AtomicU64,
    /// Connections closed because TLS or the HTTP/2 preface did not complete in time (or was
    /// not HTTP/2).
    pub handshakes_failed: AtomicU64,
    /// RST_STREAM frames with REFUSED_STREAM the server wrote (streams past
    /// `--max-concurrent-streams`, refused by h2).
    pub streams_refused: AtomicU64,
    /// Calls refused because their message did not fit the request memory budget.
    pub memory_refused: AtomicU64,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics {
            calls: Sharded::new(Method::ALL.len() * PER_METHOD),
            connections_accepted: AtomicU64::new(0),
            connections_refused_limit: AtomicU64::new(0),
            connections_refused_fds: AtomicU64::new(0),
            handshakes_failed: AtomicU64::new(0),
            streams_refused: AtomicU64::new(0),
            memory_refused: AtomicU64::new(0),
        }
    }
}

impl ServerMetrics {
    /// Count one call of `method` answered with gRPC status `code` after `took`.
    pub fn call(&self, method: Method, code: u32, took: Duration) {
        let base = method.index() * PER_METHOD;
        let code = if (code as usize) < CODES.len() { code as usize } else { 2 };
        let shard = self.calls.shard();
        shard[base + code].fetch_add(1, Ordering::Relaxed);
        CALL_DURATION.observe(shard, base + HIST, took);
    }

    /// Calls of `method` answered with `code` so far.
    pub fn calls(&self, method: Method, code: u32) -> u64 {
        self.calls.get(method.index() * PER_METHOD + code as usize)
    }

    fn render_calls(&self, out: &mut String) {
        family(
            out,
            "coprocess_grpc_calls_total",
            "counter",
            "Calls answered, by method and gRPC status code (CANCELLED: the client went away first).",
        );
        for method in Method::ALL {
            let base = method.index() * PER_METHOD;
            for (code, name) in CODES.iter().enumerate() {
                let n = self.calls.get(base + code);
                // Every method's OK series from the start, others once counted.
                if n > 0 || code == 0 {
                    let _ =
                        writeln!(out, "coprocess_grpc_calls_total{{method=\"{}\",code=\"{name}\"}} {n}", method.name());
                }
            }
        }
        family(
            out,
            "coprocess_grpc_call_duration_seconds",
            "histogram",
            "Time from a call's headers to its answer, by method.",
        );
        for method in Method::ALL {
            let labels = format!("method=\"{}\"", method.name());
            let base = method.index() * PER_METHOD + HIST;
            CALL_DURATION.render(out, "coprocess_grpc_call_duration_seconds", &labels, &self.calls, base);
        }
    }
}

/// What a scrape reads besides the counters: the gauges, from the server's own atomics.
pub struct Gauges {
    /// Connections open now (all listeners).
    pub connections_open: usize,
    /// The connection limit in force.
    pub connections_max: usize,
    /// Blocking pool threads.
    pub pool_threads: usize,
    /// Of them, running a dispatch now.
    pub pool_busy: usize,
    /// Calls waiting for a pool thread now.
    pub pool_queued: usize,
    /// The queue's capacity (`--blocking-queue`).
    pub pool_queue_capacity: usize,
    /// Calls refused because the pool and its queue were full.
    pub pool_refused: u64,
    /// Request message bytes held by calls now.
    pub memory_in_use: usize,
    /// `--request-memory-bytes`.
    pub memory_limit: usize,
    /// The Redis breaker: its state (`closed`, `open`, `half-open`) and how many times it opened;
    /// `None` with the in-memory store.
    pub breaker: Option<(&'static str, u64)>,
    /// Webhook events posted, failed and dropped (queue full or stopped); `None` with the log sink.
    pub webhook: Option<[u64; 3]>,
}

/// Write a metric family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn one(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The server's exposition: counters, gauges and the process gauges.
pub fn render(out: &mut String, m: &ServerMetrics, g: &Gauges, store: &StoreCounters) {
    family(out, "coprocess_grpc_build_info", "gauge", "Always 1; the server's version in the label.");
    let _ = writeln!(out, "coprocess_grpc_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    m.render_calls(out);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    one(
        out,
        "coprocess_grpc_connections_open",
        "gauge",
        "Connections open now, on every listener.",
        g.connections_open,
    );
    one(
        out,
        "coprocess_grpc_connections_max",
        "gauge",
        "The connection limit in force (--max-connections).",
        g.connections_max,
    );
    one(
        out,
        "coprocess_grpc_connections_accepted_total",
        "counter",
        "Connections accepted and served.",
        load(&m.connections_accepted),
    );
    family(
        out,
        "coprocess_grpc_connections_refused_total",
        "counter",
        "Connections closed as soon as accepted: at the connection limit, or out of file descriptors.",
    );
    let _ = writeln!(
        out,
        "coprocess_grpc_connections_refused_total{{reason=\"limit\"}} {}",
        load(&m.connections_refused_limit)
    );
    let _ = writeln!(
        out,
        "coprocess_grpc_connections_refused_total{{reason=\"out_of_fds\"}} {}",
        load(&m.connections_refused_fds)
    );
    one(
        out,
        "coprocess_grpc_handshakes_failed_total",
        "counter",
        "Connections closed before serving: TLS or the HTTP/2 preface not done within --handshake-timeout-ms, or not HTTP/2.",
        load(&m.handshakes_failed),
    );
    one(
        out,
        "coprocess_grpc_streams_refused_total",
        "counter",
        "Streams reset with REFUSED_STREAM (past --max-concurrent-streams on their connection).",
        load(&m.streams_refused),
    );
    one(
        out,
        "coprocess_grpc_pool_threads",
        "gauge",
        "Threads of the blocking pool (--blocking-threads).",
        g.pool_threads,
    );
    one(out, "coprocess_grpc_pool_busy_threads", "gauge", "Blocking pool threads running a dispatch now.", g.pool_busy);
    one(
        out,
        "coprocess_grpc_pool_queue_depth",
        "gauge",
        "Calls waiting for a blocking pool thread now.",
        g.pool_queued,
    );
    one(
        out,
        "coprocess_grpc_pool_queue_capacity",
        "gauge",
        "Calls that may wait for a blocking pool thread (--blocking-queue).",
        g.pool_queue_capacity,
    );
    one(
        out,
        "coprocess_grpc_pool_refused_total",
        "counter",
        "Calls refused UNAVAILABLE because every blocking thread was busy and the queue full.",
        g.pool_refused,
    );
    one(
        out,
        "coprocess_grpc_request_memory_in_use_bytes",
        "gauge",
        "Bytes of request messages held by calls now.",
        g.memory_in_use,
    );
    one(
        out,
        "coprocess_grpc_request_memory_limit_bytes",
        "gauge",
        "The request memory budget (--request-memory-bytes).",
        g.memory_limit,
    );
    one(
        out,
        "coprocess_grpc_request_memory_refused_total",
        "counter",
        "Calls refused RESOURCE_EXHAUSTED because their message did not fit the request memory budget then.",
        load(&m.memory_refused),
    );
    family(
        out,
        "coprocess_grpc_store_operations_total",
        "counter",
        "Store operations by operation (get, set, set_if_absent) and result (ok, miss, stored, present, error, \
         timeout; breaker_open and deadline: not sent to Redis).",
    );
    for (o, op) in STORE_OPS.iter().enumerate() {
        for (r, result) in STORE_RESULTS.iter().enumerate() {
            let n = store.get(o, r);
            if n > 0 || store_result_applies(o, r) {
                let _ = writeln!(out, "coprocess_grpc_store_operations_total{{op=\"{op}\",result=\"{result}\"}} {n}");
            }
        }
    }
    if let Some((state, opens)) = g.breaker {
        family(
            out,
            "coprocess_grpc_store_breaker_state",
            "gauge",
            "The Redis store's circuit breaker: 1 for its current state, 0 for the others.",
        );
        for s in ["closed", "open", "half-open"] {
            let _ = writeln!(out, "coprocess_grpc_store_breaker_state{{state=\"{s}\"}} {}", u8::from(s == state));
        }
        one(
            out,
            "coprocess_grpc_store_breaker_opens_total",
            "counter",
            "Times the Redis store's circuit breaker opened.",
            opens,
        );
    }
    if let Some(counts) = g.webhook {
        family(
            out,
            "coprocess_grpc_webhook_events_total",
            "counter",
            "Events for the webhook sink: posted (2xx), failed (another status or unreachable), dropped (queue full or stopped).",
        );
        for (result, n) in ["posted", "failed", "dropped"].iter().zip(counts) {
            let _ = writeln!(out, "coprocess_grpc_webhook_events_total{{result=\"{result}\"}} {n}");
        }
    }
    render_process(out);
}

/// Process gauges from /proc/self (each left out when it cannot be read).
fn render_process(out: &mut String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(threads) = field("Threads:") {
        one(
            out,
            "coprocess_grpc_os_threads",
            "gauge",
            "OS threads of the server process (/proc/self/status Threads).",
            threads,
        );
    }
    if let Some(kb) = field("VmRSS:") {
        one(
            out,
            "coprocess_grpc_resident_memory_bytes",
            "gauge",
            "Resident memory of the server process (/proc/self/status VmRSS).",
            kb * 1024,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // Less the descriptor reading the directory.
        let n = dir.count().saturating_sub(1);
        one(out, "coprocess_grpc_open_fds", "gauge", "Open file descriptors of the server process (/proc/self/fd).", n);
    }
    one(
        out,
        "coprocess_grpc_max_fds",
        "gauge",
        "The soft limit of open file descriptors (RLIMIT_NOFILE).",
        crate::server::open_file_limit(),
    );
    if let Some(seconds) = cpu_seconds() {
        one(
            out,
            "coprocess_grpc_cpu_seconds_total",
            "counter",
            "User and system CPU time of the server process (/proc/self/stat).",
            seconds,
        );
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of proc(5), counted here from the state (field 3).
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a configuration value and nothing else.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// Scans the bytes a connection writes for HTTP/2 frame headers and counts the RST_STREAM
/// frames with REFUSED_STREAM among them (h2 refuses streams past the concurrency limit by
/// itself and tells the server nothing). It only reads; the bytes go out unchanged.
#[derive(Debug, Default)]
pub struct FrameScan {
    head: [u8; 9],
    have: usize,
    /// Payload bytes still to pass over.
    skip: usize,
    /// Inside an RST_STREAM payload: error code bytes read so far and the rest of the payload.
    rst: Option<(usize, [u8; 4], usize)>,
}

/// HTTP/2 RST_STREAM frame type and REFUSED_STREAM error code.
const RST_STREAM: u8 = 3;
const REFUSED_STREAM: u32 = 7;

impl FrameScan {
    /// Scan the next bytes written; returns how many REFUSED_STREAM resets they completed.
    pub fn scan(&mut self, mut bytes: &[u8]) -> u64 {
        let mut refused = 0;
        while !bytes.is_empty() {
            if let Some((got, mut code, rest)) = self.rst {
                let n = (4 - got).min(bytes.len());
                code[got..got + n].copy_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if got + n == 4 {
                    refused += u64::from(u32::from_be_bytes(code) == REFUSED_STREAM);
                    self.rst = None;
                    self.skip = rest;
                } else {
                    self.rst = Some((got + n, code, rest));
                }
                continue;
            }
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                bytes = &bytes[n..];
                self.skip -= n;
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.have += n;
            if self.have < 9 {
                continue;
            }
            self.have = 0;
            let len = u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as usize;
            if self.head[3] == RST_STREAM && len >= 4 {
                self.rst = Some((0, [0; 4], len - 4));
            } else {
                self.skip = len;
            }
        }
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn refused_streams_are_counted_in_any_split() {
        let stream: Vec<u8> = [
            frame(4, 0, &[0, 3, 0, 0, 1, 0]), // SETTINGS
            frame(3, 3, &7u32.to_be_bytes()), // RST_STREAM REFUSED_STREAM
            frame(0, 1, &[0; 300]),           // DATA
            frame(3, 5, &8u32.to_be_bytes()), // RST_STREAM CANCEL
            frame(1, 1, &[0x88]),             // HEADERS
            frame(3, 7, &7u32.to_be_bytes()), // RST_STREAM REFUSED_STREAM
            frame(0, 1, &3u32.to_be_bytes()), // DATA that looks like a code
        ]
        .concat();
        assert_eq!(FrameScan::default().scan(&stream), 2);
        for cut in 0..stream.len() {
            let mut s = FrameScan::default();
            let (a, b) = stream.split_at(cut);
            assert_eq!(s.scan(a) + s.scan(b), 2, "cut at {cut}");
        }
        let mut s = FrameScan::default();
        assert_eq!(stream.iter().map(|b| s.scan(std::slice::from_ref(b))).sum::<u64>(), 2);
    }

    #[test]
    fn calls_are_counted_by_method_code_and_duration() {
        let m = ServerMetrics::default();
        m.call(Method::Dispatch, 0, Duration::from_micros(40));
        m.call(Method::Dispatch, 0, Duration::from_millis(3));
        m.call(Method::Dispatch, 14, Duration::from_secs(20));
        m.call(Method::Unknown, 99, Duration::ZERO);
        assert_eq!(m.calls(Method::Dispatch, 0), 2);
        assert_eq!(m.calls(Method::Dispatch, 14), 1);
        assert_eq!(m.calls(Method::Unknown, 2), 1, "a code outside the table counts as UNKNOWN");
        let mut out = String::new();
        m.render_calls(&mut out);
        for line in [
            "coprocess_grpc_calls_total{method=\"Dispatch\",code=\"OK\"} 2",
            "coprocess_grpc_calls_total{method=\"Dispatch\",code=\"UNAVAILABLE\"} 1",
            "coprocess_grpc_calls_total{method=\"HealthCheck\",code=\"OK\"} 0",
            "coprocess_grpc_call_duration_seconds_bucket{method=\"Dispatch\",le=\"0.00005\"} 1",
            "coprocess_grpc_call_duration_seconds_bucket{method=\"Dispatch\",le=\"0.005\"} 2",
            "coprocess_grpc_call_duration_seconds_bucket{method=\"Dispatch\",le=\"10\"} 2",
            "coprocess_grpc_call_duration_seconds_bucket{method=\"Dispatch\",le=\"+Inf\"} 3",
            "coprocess_grpc_call_duration_seconds_count{method=\"Dispatch\"} 3",
            "coprocess_grpc_call_duration_seconds_sum{method=\"Dispatch\"} 20.00304",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(!out.contains("method=\"Dispatch\",code=\"INTERNAL\""), "unused codes are left out");
    }

    #[test]
    fn counts_from_many_threads_add_up() {
        let m = std::sync::Arc::new(ServerMetrics::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.call(Method::DispatchEvent, 0, Duration::from_micros(1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.calls(Method::DispatchEvent, 0), 12_000);
    }
}
