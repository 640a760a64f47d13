//! coprocess-grpc: the coprocess middleware (the same registry, configuration, reload and
//! built-ins as the shared library) served as the gateway's gRPC plugin service
//! `coprocess.Dispatcher`, for gateways that cannot load a shared library.
//!
//! - [`server::start`] binds the listeners and serves; [`server::Server`] reloads and shuts down.
//! - [`service::DispatchService`]: the service; [`service::status_for`]: error mapping.
//! - [`host::ServerHost`]: events to a log or webhook, JSON-line logs, Redis or memory store.
//! - [`codec::RawCodec`]: `Dispatch` passes the Object's bytes through to the library.
//! - [`pb`]: the generated server and client (`pb::dispatcher_client::DispatcherClient`).

#![warn(missing_docs)]

pub mod codec;
pub mod host;
pub mod log;
pub mod options;
pub mod server;
pub mod service;

/// The generated `coprocess.Dispatcher` server and client (from proto/coprocess.proto).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/coprocess.Dispatcher.rs"));
}
