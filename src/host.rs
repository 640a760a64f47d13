//! The host functions (gateway callbacks) behind a trait.
//!
//! [`NativeHost`] calls the functions the host process defines (`TykTriggerEvent`,
//! `CoProcessLog`, `TykStoreData`, `TykGetData`, `CoProcessStoreDataIfAbsent`) through weak
//! imports, falling back per function when the host lacks one. [`FakeHost`] records every call
//! for unit tests. Middleware reaches the store through [`Store`], which applies the store
//! contract (an empty value is absent; keys never contain NUL) for every host in one place.

use crate::native;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
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

/// Why a store operation could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The host's store did not answer (down, timed out, refusing): callers fail closed.
    Unavailable,
    /// The key contains NUL or the value is empty (an empty value reads as absent): nothing
    /// was asked of the host.
    Invalid,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Unavailable => "the host store is unavailable",
            StoreError::Invalid => "the key contains NUL or the value is empty",
        })
    }
}

impl std::error::Error for StoreError {}

/// The gateway's callbacks. Implementations must be thread-safe. The store methods are the
/// raw host operations; middleware uses them through [`Store`] (`Context::store`), which
/// applies the store contract, so implementations need not.
pub trait Host: Send + Sync {
    /// Fire a gateway event with a JSON payload (`TykTriggerEvent`).
    fn trigger_event(&self, name: &str, payload: &str);
    /// Write a log line (`CoProcessLog`).
    fn log(&self, level: LogLevel, message: &str);
    /// Store a value with a TTL in seconds; `ttl <= 0` means no expiry (`TykStoreData`).
    fn store_data(&self, key: &str, value: &str, ttl: i64);
    /// Read a value as the host returns it (`TykGetData`): `None` when absent.
    fn get_data(&self, key: &str) -> Option<String>;
    /// Store `value` under `key` with a TTL in seconds (`ttl <= 0`: no expiry) only when the
    /// key is absent (`CoProcessStoreDataIfAbsent`): `Ok(true)` when stored, `Ok(false)` when
    /// the key was present (nothing written). Implement it atomically where the store can;
    /// this default is a read then a write, so two callers racing on one key may both store.
    fn store_data_if_absent(&self, key: &str, value: &str, ttl: i64) -> Result<bool, StoreError> {
        if self.get_data(key).is_some_and(|v| !v.is_empty()) {
            return Ok(false);
        }
        self.store_data(key, value, ttl);
        Ok(true)
    }
}

/// The host's store with the store contract applied, for every host alike:
/// - an empty value is absent (`get` gives `None`; empty values are never stored by
///   `set_if_absent`);
/// - a key containing NUL (which a C host cannot receive intact) is never passed on: `get`
///   gives `None`, `set` writes nothing, `set_if_absent` is [`StoreError::Invalid`];
/// - a TTL is in seconds; `ttl <= 0` means no expiry.
#[derive(Clone, Copy)]
pub struct Store<'h> {
    host: &'h dyn Host,
}

impl<'h> Store<'h> {
    /// The store of `host`.
    pub fn new(host: &'h dyn Host) -> Self {
        Store { host }
    }

    /// The value under `key`, `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<String> {
        if key.contains('\0') {
            return None;
        }
        self.host.get_data(key).filter(|v| !v.is_empty())
    }

    /// Store `value` under `key` for `ttl` seconds (`ttl <= 0`: no expiry).
    pub fn set(&self, key: &str, value: &str, ttl: i64) {
        if !key.contains('\0') {
            self.host.store_data(key, value, ttl);
        }
    }

    /// Store `value` under `key` only when absent: `Ok(true)` stored, `Ok(false)` present.
    /// Atomic when the host implements it atomically (see [`Host::store_data_if_absent`]).
    pub fn set_if_absent(&self, key: &str, value: &str, ttl: i64) -> Result<bool, StoreError> {
        if key.contains('\0') || value.is_empty() {
            return Err(StoreError::Invalid);
        }
        self.host.store_data_if_absent(key, value, ttl)
    }
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
        if inner.writes.is_multiple_of(1024) {
            inner.map.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
        }
        inner.map.insert(key.to_owned(), (value.to_owned(), expiry));
    }

    /// Store `value` under `key` only when no live entry is there, atomically: true when
    /// stored, false when the key was present (nothing written).
    pub fn set_if_absent(&self, key: &str, value: &str, ttl: i64) -> bool {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if inner.map.get(key).is_some_and(|(v, exp)| !v.is_empty() && exp.is_none_or(|e| e > now)) {
            return false;
        }
        let expiry = (ttl > 0).then(|| now + Duration::from_secs(ttl as u64));
        inner.map.insert(key.to_owned(), (value.to_owned(), expiry));
        true
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
        if !native::trigger_event(name, payload) {
            self.log(LogLevel::Warning, &format!("host defines no TykTriggerEvent; event {name:?} dropped"));
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        if !native::log(message, level.as_str()) {
            Self::stderr_log(level, message);
        }
    }

    fn store_data(&self, key: &str, value: &str, ttl: i64) {
        if !native::store_data(key, value, ttl) {
            self.fallback_store.set(key, value, ttl);
        }
    }

    fn get_data(&self, key: &str) -> Option<String> {
        match native::get_data(key) {
            None => self.fallback_store.get(key),
            Some(value) => value,
        }
    }

    /// The host's `CoProcessStoreDataIfAbsent` when it defines one; otherwise a read then a
    /// write through `TykGetData`/`TykStoreData` (not atomic) when it defines those, and the
    /// process-local store's atomic operation when it defines no store function at all.
    fn store_data_if_absent(&self, key: &str, value: &str, ttl: i64) -> Result<bool, StoreError> {
        match native::store_data_if_absent(key, value, ttl) {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            Some(n) if n < 0 => Err(StoreError::Unavailable),
            Some(n) => {
                self.log(LogLevel::Error, &format!("CoProcessStoreDataIfAbsent returned {n}, not 1, 0 or negative"));
                Err(StoreError::Unavailable)
            }
            None if !native::has_store() => Ok(self.fallback_store.set_if_absent(key, value, ttl)),
            None => {
                if self.get_data(key).is_some_and(|v| !v.is_empty()) {
                    return Ok(false);
                }
                self.store_data(key, value, ttl);
                Ok(true)
            }
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
/// Clones share one state, so a test can hand a clone to a [`Runtime`](crate::Runtime) and
/// inspect what it recorded.
#[derive(Default, Clone)]
pub struct FakeHost {
    state: std::sync::Arc<FakeHostState>,
}

/// What a [`FakeHost`] records (reached through the host: `host.events.lock()`).
#[derive(Default)]
pub struct FakeHostState {
    /// Every `trigger_event` call as (name, payload), in order.
    pub events: Mutex<Vec<(String, String)>>,
    /// Every log line, in order.
    pub logs: Mutex<Vec<LogLine>>,
    /// Every value written (`store_data`, and `store_data_if_absent` when it stored) as
    /// (key, value, ttl), in order.
    pub stores: Mutex<Vec<(String, String, i64)>>,
    /// The store behind `store_data`/`get_data`; tests may seed it directly.
    pub store: MemoryStore,
    /// When set, `store_data_if_absent` answers [`StoreError::Unavailable`] (a store outage).
    pub store_unavailable: std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for FakeHost {
    type Target = FakeHostState;

    fn deref(&self) -> &FakeHostState {
        &self.state
    }
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
        self.store.get(key)
    }

    fn store_data_if_absent(&self, key: &str, value: &str, ttl: i64) -> Result<bool, StoreError> {
        if self.store_unavailable.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Unavailable);
        }
        let stored = self.store.set_if_absent(key, value, ttl);
        if stored {
            self.stores.lock().push((key.to_owned(), value.to_owned(), ttl));
        }
        Ok(stored)
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
        let store = Store::new(&h);
        store.set("k", "v", 10);
        assert_eq!(store.get("k").as_deref(), Some("v"));
        assert_eq!(store.get("missing"), None);
        store.set("empty", "", 10);
        assert_eq!(store.get("empty"), None, "an empty stored value reads as absent");
        assert_eq!(store.set_if_absent("n", "1", 10), Ok(true));
        assert_eq!(store.set_if_absent("n", "2", 10), Ok(false));
        assert_eq!(store.get("n").as_deref(), Some("1"), "a present key is not overwritten");
        assert_eq!(store.set_if_absent("empty", "3", 10), Ok(true), "an empty value is absent");
        assert_eq!(store.set_if_absent("a\0b", "1", 10), Err(StoreError::Invalid));
        assert_eq!(store.set_if_absent("e", "", 10), Err(StoreError::Invalid));
        h.log(LogLevel::Info, "fallback log line");
        h.trigger_event("E", "{}");
    }

    #[test]
    fn fallback_set_if_absent_is_atomic() {
        let h = NativeHost::new();
        let stored = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..200 {
                        if Store::new(&h).set_if_absent(&format!("race-{i}"), "x", 10) == Ok(true) {
                            stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(stored.into_inner(), 200, "each key stored exactly once");
    }

    #[test]
    fn memory_store_set_if_absent_honours_ttl() {
        let s = MemoryStore::new();
        assert!(s.set_if_absent("k", "1", 1));
        assert!(!s.set_if_absent("k", "2", 1));
        std::thread::sleep(Duration::from_millis(1100));
        assert!(s.set_if_absent("k", "3", 0), "an expired entry is absent");
        assert_eq!(s.get("k").as_deref(), Some("3"));
    }

    #[test]
    fn fake_host_reports_an_outage() {
        let h = FakeHost::new();
        h.store_unavailable.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(Store::new(&h).set_if_absent("k", "v", 1), Err(StoreError::Unavailable));
        assert!(h.stores.lock().is_empty());
    }
}
