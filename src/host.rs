//! The host functions (gateway callbacks) behind a trait.
//!
//! [`NativeHost`] calls the functions the host process defines (`TykTriggerEvent`,
//! `CoProcessLog`, `TykStoreData`, `TykGetData`) through weak imports, falling back per
//! function when the host lacks one. [`FakeHost`] records every call for unit tests.

use crate::ffi;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Log severity, spelled on the wire as `debug`, `info`, `warning`, `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Verbose diagnostics.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that did not stop the request.
    Warning,
    /// A failure.
    Error,
}

impl LogLevel {
    /// The level as the host's `CoProcessLog` expects it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }
}

/// The gateway's callbacks as seen by middleware. Implementations must be thread-safe.
pub trait Host: Send + Sync {
    /// Fire a gateway event with a JSON payload (`TykTriggerEvent`).
    fn trigger_event(&self, name: &str, payload: &str);
    /// Write a log line (`CoProcessLog`).
    fn log(&self, level: LogLevel, message: &str);
    /// Store a value with a TTL in seconds; `ttl <= 0` means no expiry (`TykStoreData`).
    fn store_data(&self, key: &str, value: &str, ttl: i64);
    /// Read a value; `None` when absent or empty (`TykGetData`).
    fn get_data(&self, key: &str) -> Option<String>;
}

/// A process-local key-value store with per-entry TTL: the fallback when the host has no
/// store, and the store of [`FakeHost`]. Expired entries are dropped on access and by a
/// periodic sweep, so the map cannot grow without bound from expired keys.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<StoreInner>,
}

#[derive(Default)]
struct StoreInner {
    map: HashMap<String, (String, Option<Instant>)>,
    writes: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Store `value` under `key` for `ttl` seconds (`ttl <= 0`: no expiry).
    pub fn set(&self, key: &str, value: &str, ttl: i64) {
        let now = Instant::now();
        let expiry = (ttl > 0).then(|| now + Duration::from_secs(ttl as u64));
        let mut inner = self.inner.lock();
        inner.writes += 1;
        if inner.writes % 1024 == 0 {
            inner.map.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        }
        inner.map.insert(key.to_owned(), (value.to_owned(), expiry));
    }

    /// The live value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        match inner.map.get(key) {
            Some((v, exp)) if exp.is_none_or(|e| e > now) => Some(v.clone()),
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        }
    }
}

/// The host functions of the process that loaded the library, with per-function fallbacks.
#[derive(Default)]
pub struct NativeHost {
    fallback_store: MemoryStore,
}

impl NativeHost {
    /// A host bound to the process's host functions.
    pub fn new() -> Self {
        Self::default()
    }

    fn stderr_log(level: LogLevel, message: &str) {
        eprintln!("coprocess [{}] {}", level.as_str(), message);
    }
}

impl Host for NativeHost {
    fn trigger_event(&self, name: &str, payload: &str) {
        if !ffi::host_trigger_event(name, payload) {
            self.log(LogLevel::Warning, &format!("host defines no TykTriggerEvent; event {name:?} dropped"));
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        if !ffi::host_log(message, level.as_str()) {
            Self::stderr_log(level, message);
        }
    }

    fn store_data(&self, key: &str, value: &str, ttl: i64) {
        if !ffi::host_store_data(key, value, ttl) {
            self.fallback_store.set(key, value, ttl);
        }
    }

    fn get_data(&self, key: &str) -> Option<String> {
        if key.contains('\0') {
            return None;
        }
        match ffi::host_get_data(key) {
            None => self.fallback_store.get(key),
            Some(value) => value.filter(|v| !v.is_empty()),
        }
    }
}

/// One recorded log line of a [`FakeHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// A host for unit tests: records events and logs, and keeps an in-memory store with TTL.
#[derive(Default)]
pub struct FakeHost {
    /// Every `trigger_event` call as (name, payload), in order.
    pub events: Mutex<Vec<(String, String)>>,
    /// Every log line, in order.
    pub logs: Mutex<Vec<LogLine>>,
    /// Every `store_data` call as (key, value, ttl), in order.
    pub stores: Mutex<Vec<(String, String, i64)>>,
    /// The store behind `store_data`/`get_data`; tests may seed it directly.
    pub store: MemoryStore,
}

impl FakeHost {
    /// An empty fake host.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any recorded log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs.lock().iter().any(|l| l.message.contains(needle))
    }
}

impl Host for FakeHost {
    fn trigger_event(&self, name: &str, payload: &str) {
        self.events.lock().push((name.to_owned(), payload.to_owned()));
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.lock().push(LogLine { level, message: message.to_owned() });
    }

    fn store_data(&self, key: &str, value: &str, ttl: i64) {
        self.stores.lock().push((key.to_owned(), value.to_owned(), ttl));
        self.store.set(key, value, ttl);
    }

    fn get_data(&self, key: &str) -> Option<String> {
        self.store.get(key).filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_honours_ttl() {
        let s = MemoryStore::new();
        s.set("a", "1", 0);
        s.set("b", "2", 1);
        assert_eq!(s.get("a").as_deref(), Some("1"));
        assert_eq!(s.get("b").as_deref(), Some("2"));
        assert_eq!(s.get("c"), None);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(s.get("b"), None, "entry outlived its TTL");
        assert_eq!(s.get("a").as_deref(), Some("1"), "ttl 0 must not expire");
    }

    #[test]
    fn native_host_without_host_functions_falls_back() {
        // The unit-test binary defines none of the host functions, so every call falls back.
        let h = NativeHost::new();
        h.store_data("k", "v", 10);
        assert_eq!(h.get_data("k").as_deref(), Some("v"));
        assert_eq!(h.get_data("missing"), None);
        h.log(LogLevel::Info, "fallback log line");
        h.trigger_event("E", "{}");
    }
}
