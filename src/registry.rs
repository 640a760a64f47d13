//! Middleware and event handlers, and the registry that names them.
//!
//! A middleware type is configured once per distinct configuration section (its `new`) and
//! then handles any number of requests concurrently (its `handle`), like a filter factory
//! that serves many requests.

use crate::context::Context;
use crate::error::{ConfigError, MiddlewareError};
use crate::host::Host;
use crate::proto::HookType;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a middleware gets when it is configured.
pub struct Setup<'a> {
    /// The name of the configuration section used (`Name` or `Name:instance`), or the
    /// middleware's name when no section exists.
    pub section: &'a str,
    /// The host callbacks (for example to fetch a certificate from the store).
    pub host: &'a dyn Host,
}

/// What a middleware instance may wait on while it handles a request. A host that runs
/// dispatches on an event loop (the gRPC server) runs [`Blocking::Never`] dispatches inline
/// and the others on a bounded pool of threads, so a slow store or network peer cannot stall
/// dispatches that wait on nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Blocking {
    /// Only computation: no host store call, no network.
    Never,
    /// Host store calls (`TykGetData`, `TykStoreData`, `CoProcessStoreDataIfAbsent`).
    Store,
    /// Network calls of its own, or anything else that may wait without bound.
    Network,
}

/// A request middleware: registered under [`Middleware::NAME`], serving [`Middleware::HOOKS`].
pub trait Middleware: Send + Sync + Sized + 'static {
    /// The name an API definition uses as hook name (`NAME` or `NAME:instance`).
    const NAME: &'static str;
    /// The hook types this middleware serves; a dispatch of any other is refused (-3).
    const HOOKS: &'static [HookType];
    /// The configuration section, deserialised from JSON. Use
    /// `#[serde(deny_unknown_fields, default)]` so unknown keys are an error and absent keys
    /// take defaults. `Default` is used when no section exists.
    type Config: DeserializeOwned + Default;

    /// Build an instance for one configuration. An error makes dispatches with that
    /// configuration fail with -5 (and `Reload` of a global file containing it fail with -5).
    fn new(config: Self::Config, setup: &Setup<'_>) -> Result<Self, ConfigError>;

    /// Handle one call. Reject requests through `ctx`; return an error only when the
    /// middleware itself failed (-4).
    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError>;

    /// What this instance may wait on (see [`Blocking`]). The default, [`Blocking::Network`],
    /// is right for a middleware that does not say; a middleware that calls neither the store
    /// nor the network returns [`Blocking::Never`].
    fn blocking(&self) -> Blocking {
        Blocking::Network
    }

    /// Called after every successful `Reload`, when instances built from the old
    /// configuration have been dropped. Drop any process-wide caches here.
    fn on_reload() {}
}

/// An event as the gateway sends it to `DispatchEvent`.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The event JSON exactly as received.
    pub raw: &'a str,
    /// `message.Type`, the gateway's event name (e.g. `AuthFailure`).
    pub event_type: &'a str,
    /// `message.Meta`.
    pub meta: &'a Value,
    /// `message.TimeStamp`.
    pub timestamp: &'a str,
    /// `handler_name`.
    pub handler_name: &'a str,
    /// `spec.APIID` ("" when absent).
    pub api_id: &'a str,
    /// `spec.OrgID` ("" when absent).
    pub org_id: &'a str,
}

/// An event handler: registered under [`EventHandler::NAME`], configured from the global
/// file's section of that name.
pub trait EventHandler: Send + Sync + Sized + 'static {
    /// The `handler_name` the gateway sends.
    const NAME: &'static str;
    /// The configuration section (see [`Middleware::Config`]).
    type Config: DeserializeOwned + Default;
    /// Build the handler for a configuration; an error makes its events fail with -5.
    fn new(config: Self::Config) -> Result<Self, ConfigError>;
    /// Handle one event; an error is -4.
    fn handle(&self, event: &Event<'_>, host: &dyn Host) -> Result<(), MiddlewareError>;
}

/// A configured middleware instance, type-erased.
pub(crate) trait DynMiddleware: Send + Sync {
    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError>;
    fn blocking(&self) -> Blocking;
}

impl<T: Middleware> DynMiddleware for T {
    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        Middleware::handle(self, ctx)
    }

    fn blocking(&self) -> Blocking {
        Middleware::blocking(self)
    }
}

/// A configured event handler instance, type-erased.
pub(crate) trait DynEventHandler: Send + Sync {
    fn handle(&self, event: &Event<'_>, host: &dyn Host) -> Result<(), MiddlewareError>;
}

impl<T: EventHandler> DynEventHandler for T {
    fn handle(&self, event: &Event<'_>, host: &dyn Host) -> Result<(), MiddlewareError> {
        EventHandler::handle(self, event, host)
    }
}

pub(crate) type MiddlewareInstance = Result<Arc<dyn DynMiddleware>, ConfigError>;
pub(crate) type EventInstance = Result<Arc<dyn DynEventHandler>, ConfigError>;

fn parse_section<C: DeserializeOwned + Default>(section: &str, value: Option<&Value>) -> Result<C, ConfigError> {
    match value {
        None => Ok(C::default()),
        Some(v) => C::deserialize(v).map_err(|e| ConfigError::from_serde(section, &e)),
    }
}

pub(crate) struct MiddlewareEntry {
    /// Its position in the registry's name order (its metrics slot), set by the runtime.
    pub(crate) index: usize,
    pub(crate) hooks: &'static [HookType],
    pub(crate) build: fn(Option<&Value>, &Setup<'_>) -> MiddlewareInstance,
    pub(crate) on_reload: fn(),
}

pub(crate) struct EventEntry {
    pub(crate) build: fn(Option<&Value>, &str) -> EventInstance,
}

fn build_middleware<T: Middleware>(value: Option<&Value>, setup: &Setup<'_>) -> MiddlewareInstance {
    let config = parse_section::<T::Config>(setup.section, value)?;
    let instance = T::new(config, setup).map_err(|e| ConfigError(format!("section \"{}\": {}", setup.section, e.0)))?;
    Ok(Arc::new(instance))
}

fn build_event<T: EventHandler>(value: Option<&Value>, section: &str) -> EventInstance {
    let config = parse_section::<T::Config>(section, value)?;
    let instance = T::new(config).map_err(|e| ConfigError(format!("section \"{section}\": {}", e.0)))?;
    Ok(Arc::new(instance))
}

/// The middleware and event handlers a plugin library offers, by name.
#[derive(Default)]
pub struct Registry {
    pub(crate) middleware: BTreeMap<&'static str, MiddlewareEntry>,
    pub(crate) events: BTreeMap<&'static str, EventEntry>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register middleware `T` under `T::NAME`, replacing any earlier registration of it.
    pub fn middleware<T: Middleware>(&mut self) -> &mut Self {
        assert!(!T::NAME.is_empty() && !T::NAME.contains(':'), "middleware name must be non-empty and contain no ':'");
        self.middleware.insert(
            T::NAME,
            MiddlewareEntry { index: 0, hooks: T::HOOKS, build: build_middleware::<T>, on_reload: T::on_reload },
        );
        self
    }

    /// Register event handler `T` under `T::NAME`, replacing any earlier registration of it.
    pub fn event_handler<T: EventHandler>(&mut self) -> &mut Self {
        self.events.insert(T::NAME, EventEntry { build: build_event::<T> });
        self
    }

    /// The registered middleware names, sorted (the map's order).
    pub fn middleware_names(&self) -> Vec<&'static str> {
        self.middleware.keys().copied().collect()
    }

    /// The registered event handler names, sorted (the map's order).
    pub fn event_handler_names(&self) -> Vec<&'static str> {
        self.events.keys().copied().collect()
    }
}
