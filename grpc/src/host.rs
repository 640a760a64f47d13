//! The host callbacks of the server: what `TykTriggerEvent`, `CoProcessLog`, `TykStoreData`
//! and `TykGetData` are when there is no gateway process around the library.
//!
//! - events go to a sink: the log (one JSON line per event), or an HTTP webhook that gets a
//!   JSON POST per event from a background thread (a dispatch never waits for the webhook);
//!   both carry the trace id of the call that fired the event ([`crate::trace`]);
//! - log lines go to stderr as JSON lines ([`crate::log`]), `source: "middleware"`, with the
//!   request's trace id as the field `trace_id` (`Host::log_traced`);
//! - the store is Redis (keys under a prefix, TTL as `SET .. EX`, `SET .. NX` for
//!   `store_data_if_absent`) so that replay protection and stored secrets are shared by every
//!   replica, or a process-local store with TTL ([`crate::store`]).

use crate::log::{rfc3339_millis, Logger};
use crate::metrics::StoreCounters;
pub use crate::store::{RedisStore, Store, StoreFailure};
use crate::trace::current_trace_id;
use coprocess::{Host, LogLevel, StoreError};
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Events waiting for the webhook worker; past this an event is dropped and logged.
pub const WEBHOOK_QUEUE: usize = 4096;

/// The server's [`Host`].
pub struct ServerHost {
    logger: Logger,
    events: EventSink,
    store: Store,
    store_ops: StoreCounters,
}

// Indexes into metrics::STORE_OPS and STORE_RESULTS.
const GET: usize = 0;
const SET: usize = 1;
const SET_IF_ABSENT: usize = 2;
const OK: usize = 0;
const MISS: usize = 1;
const STORED: usize = 2;
const PRESENT: usize = 3;

fn failure_result(f: &StoreFailure) -> usize {
    match f {
        StoreFailure::Redis(e) if e.is_timeout() => 5,
        StoreFailure::Redis(_) => 4,
        StoreFailure::BreakerOpen => 6,
        StoreFailure::DeadlinePassed => 7,
    }
}

impl ServerHost {
    /// A host over a logger, an event sink and a store.
    pub fn new(logger: Logger, events: EventSink, store: Store) -> Self {
        ServerHost { logger, events, store, store_ops: StoreCounters::default() }
    }

    /// Store operations by op and result (for the metrics).
    pub fn store_operations(&self) -> &StoreCounters {
        &self.store_ops
    }

    /// The event sink (to close it on shutdown).
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

impl Host for ServerHost {
    /// With the trace id of the call being dispatched on this thread, if any.
    fn trigger_event(&self, name: &str, payload: &str) {
        let trace_id = current_trace_id();
        self.events.send(&self.logger, name, payload, trace_id.as_ref().map(|t| t.as_str()));
    }

    /// A line without a request trace id (the logger still adds the call's, for a line an
    /// event handler writes during a traced `DispatchEvent`).
    fn log(&self, level: LogLevel, message: &str) {
        self.logger.log(level, "middleware", message, &[]);
    }

    /// The trace id as a field of its own.
    fn log_traced(&self, level: LogLevel, message: &str, trace_id: &str) {
        self.logger.log(level, "middleware", message, &[("trace_id", Value::from(trace_id))]);
    }

    /// A failed write is lost (the store logs it).
    fn store_data(&self, key: &str, value: &str, ttl: i64) {
        let result = match &self.store {
            Store::Memory(m) => {
                m.set(key, value, ttl);
                OK
            }
            Store::Redis(r) => match r.set(key, value, ttl) {
                Ok(()) => OK,
                Err(f) => failure_result(&f),
            },
        };
        self.store_ops.count(SET, result);
    }

    /// A failed read is absent (the store logs it).
    fn get_data(&self, key: &str) -> Option<String> {
        let (value, result) = match &self.store {
            Store::Memory(m) => {
                let v = m.get(key);
                let r = if v.is_some() { OK } else { MISS };
                (v, r)
            }
            Store::Redis(r) => match r.get(key) {
                Ok(Some(v)) => (Some(v), OK),
                Ok(None) => (None, MISS),
                Err(f) => (None, failure_result(&f)),
            },
        };
        self.store_ops.count(GET, result);
        value
    }

    /// Atomic in both stores: `SET .. NX` in Redis, one lock in memory. A failed, timed-out or
    /// breaker-refused Redis operation is [`StoreError::Unavailable`].
    fn store_data_if_absent(&self, key: &str, value: &str, ttl: i64) -> Result<bool, StoreError> {
        let outcome = match &self.store {
            Store::Memory(m) => Ok(m.set_if_absent(key, value, ttl)),
            Store::Redis(r) => r.set_if_absent(key, value, ttl),
        };
        let result = match &outcome {
            Ok(true) => STORED,
            Ok(false) => PRESENT,
            Err(f) => failure_result(f),
        };
        self.store_ops.count(SET_IF_ABSENT, result);
        outcome.map_err(|_| StoreError::Unavailable)
    }
}

/// The JSON body of one event: `{"event": name, "payload": <JSON>, "time": RFC 3339}`, and
/// `"trace_id"` when the call that fired it had one. A payload that is JSON (every built-in
/// sends JSON) is embedded as a value, anything else as a string.
pub fn event_body(name: &str, payload: &str, at: SystemTime, trace_id: Option<&str>) -> String {
    let payload = serde_json::from_str::<Value>(payload).unwrap_or_else(|_| Value::String(payload.to_owned()));
    let mut body = json!({"event": name, "payload": payload, "time": rfc3339_millis(at)});
    if let Some(id) = trace_id {
        body["trace_id"] = Value::from(id);
    }
    body.to_string()
}

// ---------------------------------------------------------------------------------------------
// events

/// Where `trigger_event` goes.
pub enum EventSink {
    /// A log line at level info per event (`msg: "event"`, fields `event`, `payload` and
    /// `trace_id` when the call had one).
    Log,
    /// A JSON POST per event to a URL, from a background thread.
    Webhook(Webhook),
}

impl EventSink {
    fn send(&self, logger: &Logger, name: &str, payload: &str, trace_id: Option<&str>) {
        match self {
            EventSink::Log => {
                let payload =
                    serde_json::from_str::<Value>(payload).unwrap_or_else(|_| Value::String(payload.to_owned()));
                let mut fields = vec![("event", Value::from(name)), ("payload", payload)];
                if let Some(id) = trace_id {
                    fields.push(("trace_id", Value::from(id)));
                }
                logger.log(LogLevel::Info, "event", "event", &fields);
            }
            EventSink::Webhook(w) => w.send(logger, name, payload, trace_id),
        }
    }

    /// Webhook events posted, failed and dropped so far; `None` for the log sink.
    pub fn webhook_counts(&self) -> Option<[u64; 3]> {
        match self {
            EventSink::Log => None,
            EventSink::Webhook(w) => Some(w.counts.get()),
        }
    }

    /// Stop taking events and wait up to `grace` for queued ones to be posted.
    pub fn close(&self, grace: Duration) {
        if let EventSink::Webhook(w) = self {
            w.close(grace);
        }
    }
}

/// Posts events to an HTTP(S) URL. One attempt per event with a timeout; a failure is logged
/// (status or transport error, never the payload or the URL's query) and the event dropped.
pub struct Webhook {
    tx: Mutex<Option<SyncSender<String>>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    done: Arc<(Mutex<bool>, parking_lot::Condvar)>,
    counts: Arc<WebhookCounts>,
}

/// Events posted (2xx), failed (another status, or unreachable) and dropped (queue full or
/// stopped).
#[derive(Default)]
struct WebhookCounts([AtomicU64; 3]);

impl WebhookCounts {
    fn add(&self, i: usize) {
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.0[i].load(Ordering::Relaxed))
    }
}

impl Webhook {
    /// Start the worker for `url` with a per-request `timeout`.
    pub fn start(url: &str, timeout: Duration, logger: Logger) -> Result<Self, String> {
        let uri: ureq::http::Uri = url.parse().map_err(|_| "event sink URL is not a valid URL".to_string())?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err("event sink URL must be http:// or https://".into()),
        }
        if uri.host().is_none() {
            return Err("event sink URL needs a host".into());
        }
        let (tx, rx) = mpsc::sync_channel::<String>(WEBHOOK_QUEUE);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("coprocess-grpc/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let done = Arc::new((Mutex::new(false), parking_lot::Condvar::new()));
        let worker_done = done.clone();
        let counts = Arc::new(WebhookCounts::default());
        let worker_counts = counts.clone();
        let url = url.to_owned();
        let worker = std::thread::Builder::new()
            .name("event-webhook".into())
            .spawn(move || {
                post_loop(&agent, &url, rx, &logger, &worker_counts);
                *worker_done.0.lock() = true;
                worker_done.1.notify_all();
            })
            .map_err(|e| format!("cannot start the event webhook thread: {e}"))?;
        Ok(Webhook { tx: Mutex::new(Some(tx)), worker: Mutex::new(Some(worker)), done, counts })
    }

    fn send(&self, logger: &Logger, name: &str, payload: &str, trace_id: Option<&str>) {
        let body = event_body(name, payload, SystemTime::now(), trace_id);
        let tx = self.tx.lock().clone();
        let outcome = match tx {
            Some(tx) => tx.try_send(body),
            None => Err(TrySendError::Disconnected(body)),
        };
        match outcome {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counts.add(2);
                logger.warn("event webhook queue full, event dropped", &[("event", Value::from(name))]);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counts.add(2);
                logger.warn("event webhook stopped, event dropped", &[("event", Value::from(name))]);
            }
        }
    }

    fn close(&self, grace: Duration) {
        self.tx.lock().take();
        let deadline = Instant::now() + grace;
        let (lock, cv) = &*self.done;
        let mut finished = lock.lock();
        while !*finished {
            if cv.wait_until(&mut finished, deadline).timed_out() {
                break;
            }
        }
        if *finished {
            if let Some(h) = self.worker.lock().take() {
                let _ = h.join();
            }
        }
    }
}

fn post_loop(agent: &ureq::Agent, url: &str, rx: Receiver<String>, logger: &Logger, counts: &WebhookCounts) {
    for body in rx {
        let result = agent.post(url).header("Content-Type", "application/json").send(body.as_bytes());
        match result {
            Ok(resp) if resp.status().is_success() => counts.add(0),
            Ok(resp) => {
                counts.add(1);
                logger.warn(
                    "event webhook answered with an error status",
                    &[("status", Value::from(resp.status().as_u16()))],
                )
            }
            Err(e) => {
                counts.add(1);
                logger.warn("event webhook unreachable", &[("error", Value::from(e.to_string()))])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn event_bodies_embed_json_payloads() {
        let at = UNIX_EPOCH + Duration::from_secs(1_714_737_642);
        let v: Value = serde_json::from_str(&event_body("E", r#"{"a":[1,2]}"#, at, None)).unwrap();
        assert_eq!(v, json!({"event": "E", "payload": {"a": [1, 2]}, "time": "2024-05-03T12:00:42.000Z"}));
        let v: Value = serde_json::from_str(&event_body("E", "not json \"", at, Some("ab"))).unwrap();
        assert_eq!((v["payload"].as_str(), v["trace_id"].as_str()), (Some("not json \""), Some("ab")));
    }

    #[test]
    fn memory_store_host_contract() {
        let host =
            ServerHost::new(Logger::new(LogLevel::Error), EventSink::Log, Store::Memory(coprocess::MemoryStore::new()));
        let store = coprocess::Store::new(&host);
        store.set("k", "v", 0);
        store.set("empty", "", 0);
        assert_eq!(store.get("k").as_deref(), Some("v"));
        assert_eq!(store.get("empty"), None, "an empty value reads as absent");
        assert_eq!(store.get("missing"), None);
        assert_eq!(store.set_if_absent("n", "1", 10), Ok(true));
        assert_eq!(store.set_if_absent("n", "2", 10), Ok(false));
        assert_eq!(store.get("n").as_deref(), Some("1"), "the first value stays");
        assert_eq!(store.set_if_absent("empty", "3", 10), Ok(true), "an empty value is absent");
    }

    #[test]
    fn memory_set_if_absent_is_atomic() {
        let host = Arc::new(ServerHost::new(
            Logger::new(LogLevel::Error),
            EventSink::Log,
            Store::Memory(coprocess::MemoryStore::new()),
        ));
        let winners: usize = (0..8)
            .map(|_| {
                let h = host.clone();
                std::thread::spawn(move || {
                    (0..500).filter(|i| h.store_data_if_absent(&format!("race-{i}"), "x", 10) == Ok(true)).count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 500, "each key is stored by exactly one caller");
    }

    #[test]
    fn webhook_urls_are_checked() {
        let l = Logger::new(LogLevel::Error);
        assert!(Webhook::start("ftp://x/", Duration::from_secs(1), l.clone()).is_err());
        assert!(Webhook::start("not a url", Duration::from_secs(1), l.clone()).is_err());
        assert!(Webhook::start("/path-only", Duration::from_secs(1), l).is_err());
    }

    #[test]
    fn webhook_posts_events_and_drains_on_close() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for _ in 0..2 {
                let (request_line, body) = crate::testhttp::accept_post(&listener, "204 No Content");
                assert!(request_line.starts_with("POST /hook "), "{request_line}");
                bodies.push(body);
            }
            bodies
        });
        let hook = Webhook::start(&url, Duration::from_secs(5), Logger::new(LogLevel::Error)).unwrap();
        let sink = EventSink::Webhook(hook);
        let l = Logger::new(LogLevel::Error);
        sink.send(&l, "First", r#"{"n":1}"#, Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        sink.send(&l, "Second", "plain", None);
        sink.close(Duration::from_secs(10));
        assert_eq!(sink.webhook_counts(), Some([2, 0, 0]), "posted, failed, dropped");
        let bodies = server.join().unwrap();
        let first: Value = serde_json::from_str(&bodies[0]).unwrap();
        let second: Value = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!((first["event"].as_str(), first["payload"]["n"].as_i64()), (Some("First"), Some(1)));
        assert_eq!((second["event"].as_str(), second["payload"].as_str()), (Some("Second"), Some("plain")));
        assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(second.get("trace_id").is_none());
    }
}
