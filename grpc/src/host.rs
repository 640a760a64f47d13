//! The host callbacks of the server: what `TykTriggerEvent`, `CoProcessLog`, `TykStoreData`
//! and `TykGetData` are when there is no gateway process around the library.
//!
//! - events go to a sink: the log (one JSON line per event), or an HTTP webhook that gets a
//!   JSON POST per event from a background thread (a dispatch never waits for the webhook);
//! - log lines go to stderr as JSON lines ([`crate::log`]), `source: "middleware"`;
//! - the store is Redis (keys under a prefix, TTL as `SET .. EX`) so that replay protection
//!   and stored secrets are shared by every replica, or a process-local store with TTL.

use crate::log::{rfc3339_millis, Logger};
use coprocess::{Host, LogLevel, MemoryStore};
use parking_lot::Mutex;
use serde_json::{json, Value};
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
}

impl ServerHost {
    /// A host over a logger, an event sink and a store.
    pub fn new(logger: Logger, events: EventSink, store: Store) -> Self {
        ServerHost { logger, events, store }
    }

    /// The event sink (to close it on shutdown).
    pub fn events(&self) -> &EventSink {
        &self.events
    }
}

impl Host for ServerHost {
    fn trigger_event(&self, name: &str, payload: &str) {
        self.events.send(&self.logger, name, payload);
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logger.log(level, "middleware", message, &[]);
    }

    fn store_data(&self, key: &str, value: &str, ttl: i64) {
        self.store.set(&self.logger, key, value, ttl);
    }

    fn get_data(&self, key: &str) -> Option<String> {
        self.store.get(&self.logger, key).filter(|v| !v.is_empty())
    }
}

/// The JSON body of one event: `{"event": name, "payload": <JSON>, "time": RFC 3339}`. A
/// payload that is JSON (every built-in sends JSON) is embedded as a value, anything else as
/// a string.
pub fn event_body(name: &str, payload: &str, at: SystemTime) -> String {
    let payload = serde_json::from_str::<Value>(payload).unwrap_or_else(|_| Value::String(payload.to_owned()));
    json!({"event": name, "payload": payload, "time": rfc3339_millis(at)}).to_string()
}

// ---------------------------------------------------------------------------------------------
// events

/// Where `trigger_event` goes.
pub enum EventSink {
    /// A log line at level info per event (`msg: "event"`, fields `event` and `payload`).
    Log,
    /// A JSON POST per event to a URL, from a background thread.
    Webhook(Webhook),
}

impl EventSink {
    fn send(&self, logger: &Logger, name: &str, payload: &str) {
        match self {
            EventSink::Log => {
                let payload =
                    serde_json::from_str::<Value>(payload).unwrap_or_else(|_| Value::String(payload.to_owned()));
                logger.log(LogLevel::Info, "event", "event", &[("event", Value::from(name)), ("payload", payload)]);
            }
            EventSink::Webhook(w) => w.send(logger, name, payload),
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
        let url = url.to_owned();
        let worker = std::thread::Builder::new()
            .name("event-webhook".into())
            .spawn(move || {
                post_loop(&agent, &url, rx, &logger);
                *worker_done.0.lock() = true;
                worker_done.1.notify_all();
            })
            .map_err(|e| format!("cannot start the event webhook thread: {e}"))?;
        Ok(Webhook { tx: Mutex::new(Some(tx)), worker: Mutex::new(Some(worker)), done })
    }

    fn send(&self, logger: &Logger, name: &str, payload: &str) {
        let body = event_body(name, payload, SystemTime::now());
        let tx = self.tx.lock().clone();
        let outcome = match tx {
            Some(tx) => tx.try_send(body),
            None => Err(TrySendError::Disconnected(body)),
        };
        match outcome {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                logger.warn("event webhook queue full, event dropped", &[("event", Value::from(name))]);
            }
            Err(TrySendError::Disconnected(_)) => {
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

fn post_loop(agent: &ureq::Agent, url: &str, rx: Receiver<String>, logger: &Logger) {
    for body in rx {
        let result = agent.post(url).header("Content-Type", "application/json").send(body.as_bytes());
        match result {
            Ok(resp) if resp.status().is_success() => {}
            Ok(resp) => logger.warn(
                "event webhook answered with an error status",
                &[("status", Value::from(resp.status().as_u16()))],
            ),
            Err(e) => logger.warn("event webhook unreachable", &[("error", Value::from(e.to_string()))]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// store

/// The key-value store behind `store_data`/`get_data`.
pub enum Store {
    /// Process-local, with TTL (not shared between replicas).
    Memory(MemoryStore),
    /// Redis, shared by every replica pointing at it.
    Redis(RedisStore),
}

impl Store {
    fn set(&self, logger: &Logger, key: &str, value: &str, ttl: i64) {
        match self {
            Store::Memory(m) => m.set(key, value, ttl),
            Store::Redis(r) => {
                if let Err(e) = r.set(key, value, ttl) {
                    logger.error("redis store write failed", &[("error", Value::from(redis_reason(&e)))]);
                }
            }
        }
    }

    fn get(&self, logger: &Logger, key: &str) -> Option<String> {
        match self {
            Store::Memory(m) => m.get(key),
            Store::Redis(r) => match r.get(key) {
                Ok(v) => v,
                Err(e) => {
                    logger.error(
                        "redis store read failed; treated as absent",
                        &[("error", Value::from(redis_reason(&e)))],
                    );
                    None
                }
            },
        }
    }
}

/// A Redis error without anything from the request (the key is not echoed).
fn redis_reason(e: &redis::RedisError) -> String {
    e.to_string()
}

/// Idle connections kept for reuse.
const REDIS_IDLE_MAX: usize = 64;

/// A Redis store: keys are `prefix + key`, a positive TTL becomes `SET key value EX ttl`, no
/// TTL a plain `SET`. Blocking calls with connect/read/write timeouts, over a small pool of
/// reusable connections (dispatches run on blocking threads, one connection per thread in use).
pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    idle: Mutex<Vec<redis::Connection>>,
}

impl RedisStore {
    /// Connect to `url` (`redis://host:port/db`, `rediss://` not built in) and check it answers PING.
    pub fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {}", redis_reason(&e)))?;
        let store = RedisStore { client, prefix: prefix.to_owned(), timeout, idle: Mutex::new(Vec::new()) };
        store
            .with_connection(|c| redis::cmd("PING").query::<String>(c))
            .map_err(|e| format!("Redis does not answer PING: {}", redis_reason(&e)))?;
        Ok(store)
    }

    fn fresh(&self) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }

    /// Run `f` on a pooled connection; a pooled connection that turns out broken (Redis
    /// restarted, idle timeout) is dropped and `f` retried once on a fresh one.
    fn with_connection<T>(
        &self,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let pooled = self.idle.lock().pop();
        let (mut conn, was_pooled) = match pooled {
            Some(c) => (c, true),
            None => (self.fresh()?, false),
        };
        let mut result = f(&mut conn);
        if let Err(e) = &result {
            if was_pooled && (e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()) {
                conn = self.fresh()?;
                result = f(&mut conn);
            }
        }
        let reusable = match &result {
            Ok(_) => true,
            Err(e) => !(e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() || e.is_timeout()),
        };
        if reusable {
            let mut idle = self.idle.lock();
            if idle.len() < REDIS_IDLE_MAX {
                idle.push(conn);
            }
        }
        result
    }

    /// The full Redis key.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `SET prefix+key value [EX ttl]`.
    pub fn set(&self, key: &str, value: &str, ttl: i64) -> redis::RedisResult<()> {
        let full = self.key(key);
        self.with_connection(|c| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&full).arg(value);
            if ttl > 0 {
                cmd.arg("EX").arg(ttl);
            }
            cmd.query::<()>(c)
        })
    }

    /// `GET prefix+key` (bytes that are not UTF-8 are converted lossily).
    pub fn get(&self, key: &str) -> redis::RedisResult<Option<String>> {
        let full = self.key(key);
        let raw = self.with_connection(|c| redis::cmd("GET").arg(&full).query::<Option<Vec<u8>>>(c))?;
        Ok(raw.map(|b| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn event_bodies_embed_json_payloads() {
        let at = UNIX_EPOCH + Duration::from_secs(1_714_737_642);
        let v: Value = serde_json::from_str(&event_body("E", r#"{"a":[1,2]}"#, at)).unwrap();
        assert_eq!(v, json!({"event": "E", "payload": {"a": [1, 2]}, "time": "2024-05-03T12:00:42.000Z"}));
        let v: Value = serde_json::from_str(&event_body("E", "not json \"", at)).unwrap();
        assert_eq!(v["payload"], "not json \"");
    }

    #[test]
    fn memory_store_host_contract() {
        let host = ServerHost::new(Logger::new(LogLevel::Error), EventSink::Log, Store::Memory(MemoryStore::new()));
        host.store_data("k", "v", 0);
        host.store_data("empty", "", 0);
        assert_eq!(host.get_data("k").as_deref(), Some("v"));
        assert_eq!(host.get_data("empty"), None, "an empty value reads as absent");
        assert_eq!(host.get_data("missing"), None);
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
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                assert!(request_line.starts_with("POST /hook "), "{request_line}");
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                bodies.push(String::from_utf8(body).unwrap());
                (&stream).write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").unwrap();
            }
            bodies
        });
        let hook = Webhook::start(&url, Duration::from_secs(5), Logger::new(LogLevel::Error)).unwrap();
        let sink = EventSink::Webhook(hook);
        let l = Logger::new(LogLevel::Error);
        sink.send(&l, "First", r#"{"n":1}"#);
        sink.send(&l, "Second", "plain");
        sink.close(Duration::from_secs(10));
        let bodies = server.join().unwrap();
        let first: Value = serde_json::from_str(&bodies[0]).unwrap();
        let second: Value = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!((first["event"].as_str(), first["payload"]["n"].as_i64()), (Some("First"), Some(1)));
        assert_eq!((second["event"].as_str(), second["payload"].as_str()), (Some("Second"), Some("plain")));
    }
}
