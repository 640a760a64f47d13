//! coprocess: native plugin middleware for a Go API gateway, loaded in-process through a C ABI.
//!
//! The gateway serialises a `coprocess.Object` for every plugin hook; [`Runtime::dispatch`]
//! decodes it, runs the [`Middleware`] registered under the hook name and returns the
//! resulting Object. The C ABI (`include/api.h`) is a thin layer over that ([`ffi`]).
//!
//! - [`Middleware`] / [`EventHandler`]: what a plugin implements; [`Registry`] names them.
//! - [`Context`]: the read view of the Object plus recorded edits (reject, authenticate,
//!   set headers, ...).
//! - [`Host`]: the gateway's callbacks (events, logging, store); [`FakeHost`] for tests;
//!   [`Store`] the store with its contract applied.
//! - [`export_plugin!`]: build your own plugin library with your middleware.

#![warn(missing_docs)]
// Only the C boundary (`ffi`, and the exports over it) may use `unsafe`.
#![deny(unsafe_code)]

pub mod config;
pub mod context;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod host;
#[allow(unsafe_code)]
mod native;
pub mod proto;
pub mod registry;
pub mod runtime;
mod sdk;
pub mod session;
pub mod testing;
pub mod wire;

#[cfg(feature = "builtins")]
pub mod builtins;
#[cfg(feature = "exports")]
#[allow(unsafe_code)]
mod exports;

pub use config::ConfigSource;
pub use context::{Answer, ApiIdentity, Context};
pub use error::{Code, ConfigError, Error, MiddlewareError};
pub use host::{FakeHost, Host, LogLevel, MemoryStore, NativeHost, Store, StoreError};
pub use proto::{HookType, Object, SessionState};
pub use registry::{Blocking, Event, EventHandler, Middleware, Registry, Setup};
pub use runtime::Runtime;
pub use session::{SessionPatch, SessionTemplate};

impl Runtime {
    /// A runtime over `registry` with the process's host functions ([`NativeHost`]) and the
    /// global file named by `COPROCESS_CONFIG`: what an exported library uses.
    pub fn from_env(registry: Registry) -> Self {
        Runtime::new(registry, std::sync::Arc::new(NativeHost::new()), ConfigSource::Env)
    }
}
