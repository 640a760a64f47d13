//! coprocess-grpc: the coprocess middleware (the same registry, configuration, reload and
//! built-ins as the shared library) served as the gateway's gRPC plugin service
//! `coprocess.Dispatcher`, for gateways that cannot load a shared library.
//!
//! - [`server::start`] binds the listeners and serves; [`server::Server`] reloads and shuts down.
//! - [`service::DispatchService`]: the calls, inline or on the [`pool::BlockingPool`];
//!   [`service::status_for`]: error mapping.
//! - [`grpc`]: the gRPC protocol over hyper's HTTP/2 (strict unary requests, answers).
//! - [`host::ServerHost`]: events to a log or webhook, JSON-line logs, the [`store`] (Redis
//!   with one deadline per operation and a circuit breaker, or memory).
//! - [`metrics`]: the server's counters and gauges (`coprocess_grpc_*`), served with the
//!   library's by [`metrics_server`] on `--metrics-listen`.
//! - [`trace`]: the W3C trace id of a call, from its `traceparent` metadata, on the thread
//!   that dispatches it.
//! - [`codec::RawCodec`]: the client's pass-through codec for `Dispatch`.
//! - [`pb`]: the generated client (`pb::dispatcher_client::DispatcherClient`).
//!
//! The limits and their defaults: docs/grpc-limits.md and [`options`].

#![warn(missing_docs)]

pub mod codec;
pub mod grpc;
pub mod host;
pub mod log;
pub mod metrics;
pub mod metrics_server;
pub mod options;
pub mod pool;
pub mod server;
pub mod service;
pub mod store;
#[cfg(test)]
mod testhttp;
pub mod trace;

/// The generated `coprocess.Dispatcher` client (from proto/coprocess.proto).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/coprocess.Dispatcher.rs"));
}
