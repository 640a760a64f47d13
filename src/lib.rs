//! coprocess: native plugin middleware for a Go API gateway, loaded in-process through a C ABI.
//!
//! The gateway serialises a `coprocess.Object` for every plugin hook; [`Runtime::dispatch`]
//! decodes it, runs the [`Middleware`] registered under the hook name and returns the
//! resulting Object. The C ABI (`include/api.h`, docs/abi.md) is a thin layer over that
//! ([`abi`], [`export_plugin!`]); this crate is the SDK, and the library itself is the thin
//! `coprocess-cdylib` crate (cdylib/) that exports the ABI over the built-ins.
//!
//! - [`Middleware`] / [`EventHandler`]: what a plugin implements; [`Registry`] names them.
//! - [`Context`]: the read view of the Object plus recorded edits (reject, authenticate,
//!   set headers, ...).
//! - [`Host`]: the gateway's callbacks (events, logging, store); [`FakeHost`] for tests;
//!   [`Store`] the store with its contract applied.
//! - [`export_plugin!`]: build your own plugin library with your middleware.

#![warn(missing_docs)]
// Only the C boundary (`abi` for the exports, `native` for the calls out) may use `unsafe`.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod abi;
pub mod answer;
pub mod calendar;
pub mod config;
pub mod context;
pub mod error;
pub mod host;
#[allow(unsafe_code)]
mod native;
pub mod proto;
pub mod registry;
pub mod runtime;
pub mod schema;
pub mod session;
pub mod testing;
pub mod view;
pub mod wire;

#[cfg(feature = "builtins")]
pub mod builtins;

pub use answer::Answer;
pub use config::ConfigSource;
pub use context::Context;
pub use error::{Code, ConfigError, Error, MiddlewareError};
pub use host::{FakeHost, Host, LogLevel, MemoryStore, NativeHost, Store, StoreError};
pub use proto::{HookType, Object, SessionState};
pub use registry::{Blocking, Event, EventHandler, Middleware, Registry, Setup};
pub use runtime::Runtime;
pub use session::{SessionPatch, SessionTemplate};
pub use view::{ApiIdentity, ObjectView, Scratch};
