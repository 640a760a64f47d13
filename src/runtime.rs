//! The dispatcher: decodes the Object, finds the middleware for the hook name and its
//! configuration, runs it and builds the answer; runs event handlers; reloads.
//!
//! Shared state lives in one immutable `State` behind an `ArcSwap`. A dispatch loads it once
//! (no lock) and finishes on it even when a `Reload` swaps in a new one meanwhile. Per-API
//! configuration (`spec["config_data"]`) is parsed and its instances are built once per thread
//! and distinct value, in a thread-local cache keyed by the state's generation, so the
//! dispatch path takes no lock at all.

use crate::answer::Answer;
use crate::config::{base_name, ConfigSource, Sections};
use crate::context::Context;
use crate::error::{Code, ConfigError, Error};
use crate::host::{Host, LogLevel, NativeHost};
use crate::proto::{HookType, Object};
use crate::registry::{
    Blocking, DynMiddleware, Event, EventInstance, MiddlewareEntry, MiddlewareInstance, Registry, Setup,
};
use crate::view::Scratch;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use prost::Message;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The environment variable limiting the size of an accepted Object or event JSON.
pub const MAX_MESSAGE_ENV: &str = "COPROCESS_MAX_MESSAGE_BYTES";
/// The default limit: 64 MiB, far above any request the gateway forwards to a plugin.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// The message size limit from `COPROCESS_MAX_MESSAGE_BYTES` (unset or empty: the default).
fn max_message_bytes() -> Result<usize, String> {
    match std::env::var(MAX_MESSAGE_ENV) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{MAX_MESSAGE_ENV} must be a positive number of bytes")),
        },
        _ => Ok(DEFAULT_MAX_MESSAGE_BYTES),
    }
}

/// Per-API cache entries kept per thread before the cache is cleared.
const API_CACHE_LIMIT: usize = 256;

/// One consistent configuration: the global sections and every instance built from them.
struct State {
    generation: u64,
    max_message_bytes: usize,
    global_instances: BTreeMap<String, MiddlewareInstance>,
    default_instances: BTreeMap<&'static str, MiddlewareInstance>,
    events: BTreeMap<&'static str, EventInstance>,
}

/// A plugin library's runtime: registry, host, configuration.
pub struct Runtime {
    registry: Registry,
    host: Arc<dyn Host>,
    source: ConfigSource,
    state: ArcSwap<State>,
    /// Serialises reloads. Also holds a second reference to the current state: ArcSwap keeps
    /// only an interior pointer, which leak checkers report as "possibly lost" at exit.
    reload_lock: Mutex<Arc<State>>,
}

fn config_error(e: &ConfigError) -> Error {
    Error::new(Code::Config, format!("invalid configuration: {}", e.0))
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

impl Runtime {
    /// A runtime over `registry`. The global configuration is read from `source` now; a
    /// missing or broken file leaves an empty global configuration and logs the error
    /// through the host at level error.
    pub fn new(registry: Registry, host: Arc<dyn Host>, source: ConfigSource) -> Self {
        let loaded =
            source.load().and_then(|sections| build_state(&registry, &*host, &sections, true)).and_then(with_limit);
        let state = loaded.unwrap_or_else(|e| {
            host.log(LogLevel::Error, &format!("coprocess: {e}; running with an empty global configuration"));
            let mut empty =
                build_state(&registry, &*host, &Sections::new(), false).expect("empty configuration always builds");
            empty.max_message_bytes = max_message_bytes().unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
            empty
        });
        let state = Arc::new(state);
        Runtime { registry, host, source, state: ArcSwap::new(state.clone()), reload_lock: Mutex::new(state) }
    }

    /// A runtime over `registry` with the process's host functions ([`NativeHost`]) and the
    /// global file named by `COPROCESS_CONFIG`: what an exported library uses.
    pub fn from_env(registry: Registry) -> Self {
        Runtime::new(registry, Arc::new(NativeHost::new()), ConfigSource::Env)
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The host.
    pub fn host(&self) -> &dyn Host {
        &*self.host
    }

    /// Re-read the global configuration, validate every section, drop cached per-API
    /// configuration and notify every middleware, atomically with respect to dispatches.
    /// On error the last good state stays in force (code -5).
    pub fn reload(&self) -> Result<(), Error> {
        let mut current = self.reload_lock.lock();
        let state = self
            .source
            .load()
            .and_then(|sections| build_state(&self.registry, &*self.host, &sections, true))
            .and_then(with_limit)
            .map_err(|e| Error::new(Code::Config, format!("reload failed, previous configuration kept: {e}")))?;
        let state = Arc::new(state);
        self.state.store(state.clone());
        *current = state;
        for entry in self.registry.middleware.values() {
            (entry.on_reload)();
        }
        Ok(())
    }

    fn check_size(state: &State, len: usize) -> Result<(), Error> {
        let max = state.max_message_bytes;
        if len > max {
            return Err(Error::new(
                Code::InvalidInput,
                format!("message of {len} bytes exceeds the limit of {max} bytes ({MAX_MESSAGE_ENV})"),
            ));
        }
        Ok(())
    }

    /// Dispatch one serialised Object; returns the serialised answer.
    pub fn dispatch(&self, input: &[u8]) -> Result<Vec<u8>, Error> {
        self.dispatch_answer(input).map(|a| a.into_vec(input))
    }

    /// [`Runtime::dispatch`] without copying the input into the answer: on the additive path
    /// the [`Answer`] holds only the appended edits, so a caller copies the whole answer once,
    /// into its own buffer (the C ABI writes it straight into the malloc'd buffer it returns).
    pub fn dispatch_answer(&self, input: &[u8]) -> Result<Answer, Error> {
        let state = self.state.load();
        Self::check_size(&state, input.len())?;
        let scratch = Scratch::new();
        let ctx = Context::from_bytes(input, &scratch, &*self.host)
            .map_err(|e| Error::new(Code::InvalidInput, format!("bytes are not a valid coprocess.Object: {e}")))?;
        Ok(self.run(ctx, &state)?.finish())
    }

    /// Dispatch a decoded Object (encoded, dispatched, the answer decoded): for in-process
    /// callers and tests.
    pub fn dispatch_object(&self, object: &Object) -> Result<Object, Error> {
        let answer = self.dispatch(&object.encode_to_vec())?;
        Ok(Object::decode(&answer[..]).expect("an answer decodes"))
    }

    fn lookup(&self, ctx: &Context<'_>) -> Result<(&MiddlewareEntry, &'static str), Error> {
        let hook_name = ctx.hook_name();
        if hook_name.is_empty() {
            return Err(Error::new(Code::NotFound, "the Object has no hook_name"));
        }
        let (name, entry) = self.registry.middleware.get_key_value(base_name(hook_name)).ok_or_else(|| {
            Error::new(Code::NotFound, format!("no middleware registered under {:?}", base_name(hook_name)))
        })?;
        let raw = ctx.hook_type_raw();
        let hook_type = HookType::try_from(raw).ok();
        match hook_type {
            Some(t) if entry.hooks.contains(&t) => Ok((entry, name)),
            _ => Err(Error::new(
                Code::NotFound,
                format!(
                    "middleware {name:?} does not serve hook type {}",
                    hook_type.map_or_else(|| raw.to_string(), |t| t.name().to_string())
                ),
            )),
        }
    }

    /// The configured instance that serves `ctx`'s hook: per-API `config_data` first, then the
    /// global sections (see docs/configuration.md).
    fn resolve<'s>(&self, ctx: &Context<'_>, state: &'s State) -> Result<Resolved<'s>, Error> {
        let (entry, name) = self.lookup(ctx)?;
        let hook_name = ctx.hook_name();
        if let Some(config_data) = ctx.spec_bytes("config_data").filter(|s| !s.is_empty()) {
            if let Some(instance) = per_api_instance(state, config_data, hook_name, name, entry, &*self.host)? {
                return Ok(Resolved::PerApi(instance));
            }
        }
        let global = [hook_name, name]
            .iter()
            .find_map(|s| state.global_instances.get(*s))
            .unwrap_or_else(|| &state.default_instances[name]);
        match global {
            Ok(instance) => Ok(Resolved::Global(instance)),
            Err(e) => Err(config_error(e)),
        }
    }

    fn run<'o>(&'o self, mut ctx: Context<'o>, state: &State) -> Result<Context<'o>, Error> {
        let resolved = self.resolve(&ctx, state)?;
        let instance = resolved.instance();
        let hook_name = ctx.hook_name();
        match catch_unwind(AssertUnwindSafe(|| instance.handle(&mut ctx))) {
            Ok(Ok(())) => Ok(ctx),
            Ok(Err(e)) => Err(Error::new(Code::Middleware, format!("middleware {hook_name:?} failed: {e}"))),
            Err(p) => {
                Err(Error::new(Code::Middleware, format!("middleware {hook_name:?} panicked: {}", panic_text(&*p))))
            }
        }
    }

    /// What the middleware a dispatch of `input` would run may wait on ([`Blocking`]). Input
    /// that a dispatch refuses before running any middleware (invalid bytes, an unknown hook,
    /// a broken configuration) is [`Blocking::Never`]: its dispatch fails at once.
    pub fn blocking(&self, input: &[u8]) -> Blocking {
        let state = self.state.load();
        if Self::check_size(&state, input.len()).is_err() {
            return Blocking::Never;
        }
        let scratch = Scratch::new();
        let Ok(ctx) = Context::from_bytes(input, &scratch, &*self.host) else {
            return Blocking::Never;
        };
        match catch_unwind(AssertUnwindSafe(|| self.resolve(&ctx, &state).map(|r| r.instance().blocking()))) {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => Blocking::Never,
            Err(_) => Blocking::Network,
        }
    }

    /// Run the event handler named in the gateway's event JSON.
    pub fn dispatch_event(&self, json: &[u8]) -> Result<(), Error> {
        let state = self.state.load();
        Self::check_size(&state, json.len())?;
        let raw = std::str::from_utf8(json)
            .map_err(|e| Error::new(Code::InvalidInput, format!("event JSON is not UTF-8: {e}")))?;
        let envelope: Envelope = serde_json::from_str(raw).map_err(|e| {
            Error::new(
                Code::InvalidInput,
                format!("not valid event JSON: {}", crate::error::redact_quoted_values(&e.to_string())),
            )
        })?;
        let handler_name = envelope.handler_name.as_str();
        let instance = match state.events.get(handler_name) {
            Some(Ok(h)) => h.clone(),
            Some(Err(e)) => return Err(config_error(e)),
            None => {
                return Err(Error::new(Code::NotFound, format!("no event handler registered under {handler_name:?}")))
            }
        };
        let str_of = |k: &str| envelope.spec.get(k).and_then(Value::as_str).unwrap_or("");
        let event = Event {
            raw,
            event_type: &envelope.message.event_type,
            meta: &envelope.message.meta,
            timestamp: &envelope.message.timestamp,
            handler_name,
            api_id: str_of("APIID"),
            org_id: str_of("OrgID"),
        };
        match catch_unwind(AssertUnwindSafe(|| instance.handle(&event, &*self.host))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(Code::Middleware, format!("event handler {handler_name:?} failed: {e}"))),
            Err(p) => Err(Error::new(
                Code::Middleware,
                format!("event handler {handler_name:?} panicked: {}", panic_text(&*p)),
            )),
        }
    }
}

/// A resolved middleware instance: built for this API's `config_data` (per thread), or one
/// of the state's global instances.
enum Resolved<'s> {
    PerApi(Arc<dyn DynMiddleware>),
    Global(&'s Arc<dyn DynMiddleware>),
}

impl Resolved<'_> {
    fn instance(&self) -> &dyn DynMiddleware {
        match self {
            Resolved::PerApi(i) => &**i,
            Resolved::Global(i) => &***i,
        }
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    message: EventMessage,
    handler_name: String,
    #[serde(default)]
    spec: Value,
}

#[derive(serde::Deserialize)]
struct EventMessage {
    #[serde(rename = "Type")]
    event_type: String,
    #[serde(rename = "Meta", default)]
    meta: Value,
    #[serde(rename = "TimeStamp", default)]
    timestamp: String,
}

fn with_limit(mut state: State) -> Result<State, String> {
    state.max_message_bytes = max_message_bytes()?;
    Ok(state)
}

/// Build a state from global sections. With `strict`, an unknown or invalid section is an
/// error; otherwise it is kept as a failing instance.
fn build_state(registry: &Registry, host: &dyn Host, sections: &Sections, strict: bool) -> Result<State, String> {
    let mut global_instances = BTreeMap::new();
    for (section, value) in sections {
        let base = base_name(section);
        let known_event = registry.events.contains_key(section.as_str());
        match registry.middleware.get(base) {
            Some(entry) => {
                let built = (entry.build)(Some(value), &Setup { section, host });
                if strict {
                    if let Err(e) = &built {
                        return Err(e.0.clone());
                    }
                }
                global_instances.insert(section.clone(), built);
            }
            None if known_event => {}
            None if strict => {
                return Err(format!("section {section:?} names no registered middleware or event handler"))
            }
            None => {}
        }
    }
    let mut default_instances = BTreeMap::new();
    for (name, entry) in &registry.middleware {
        default_instances.insert(*name, (entry.build)(None, &Setup { section: name, host }));
    }
    let mut events = BTreeMap::new();
    for (name, entry) in &registry.events {
        let built = (entry.build)(sections.get(*name), name);
        if strict && sections.contains_key(*name) {
            if let Err(e) = &built {
                return Err(e.0.clone());
            }
        }
        events.insert(*name, built);
    }
    Ok(State {
        generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
        max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        global_instances,
        default_instances,
        events,
    })
}

struct ApiEntry {
    sections: Result<Sections, String>,
    /// By hook name: `None` when config_data has no section for it (the global one applies).
    instances: BTreeMap<String, Option<MiddlewareInstance>>,
}

#[derive(Default)]
struct ApiCache {
    generation: u64,
    /// By `config_data` (its bytes: a UTF-8 string, compared as bytes).
    entries: BTreeMap<Vec<u8>, ApiEntry>,
}

thread_local! {
    static API_CACHE: RefCell<ApiCache> = RefCell::new(ApiCache::default());
}

/// The instance configured by the per-API `config_data`, or `None` when it has no section for
/// this hook (the global configuration applies).
fn per_api_instance(
    state: &State,
    config_data: &[u8],
    hook_name: &str,
    name: &'static str,
    entry: &MiddlewareEntry,
    host: &dyn Host,
) -> Result<Option<Arc<dyn DynMiddleware>>, Error> {
    API_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.generation != state.generation || cache.entries.len() >= API_CACHE_LIMIT {
            cache.entries.clear();
            cache.generation = state.generation;
        }
        if !cache.entries.contains_key(config_data) {
            let sections = crate::config::parse_sections(config_data);
            cache.entries.insert(config_data.to_owned(), ApiEntry { sections, instances: BTreeMap::new() });
        }
        let api = cache.entries.get_mut(config_data).expect("inserted above");
        if let Some(found) = api.instances.get(hook_name) {
            return match found {
                None => Ok(None),
                Some(Ok(instance)) => Ok(Some(instance.clone())),
                Some(Err(e)) => Err(config_error(e)),
            };
        }
        let sections = match &api.sections {
            Ok(s) => s,
            Err(e) => return Err(Error::new(Code::Config, format!("invalid config_data: {e}"))),
        };
        let found = [hook_name, name].into_iter().find_map(|s| sections.get(s).map(|v| (s, v)));
        let built = found.map(|(section, value)| (entry.build)(Some(value), &Setup { section, host }));
        api.instances.insert(hook_name.to_owned(), built);
        match &api.instances[hook_name] {
            None => Ok(None),
            Some(Ok(instance)) => Ok(Some(instance.clone())),
            Some(Err(e)) => Err(config_error(e)),
        }
    })
}
