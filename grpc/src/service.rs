//! The calls: `coprocess.Dispatcher/Dispatch`, `coprocess.Dispatcher/DispatchEvent` and the
//! `grpc.health.v1.Health` service, routed by path without a general-purpose router.
//!
//! Where a dispatch runs depends on what its middleware may wait on
//! ([`coprocess::Runtime::blocking`]): a dispatch that waits on nothing (`Blocking::Never`),
//! or only on the in-memory store, runs inline on the async worker that received it; one that
//! may wait on Redis or the network runs on the [`BlockingPool`], so a slow Redis or remote
//! peer never delays the others. When every pool thread is busy and its queue is full, the
//! call is refused at once with `UNAVAILABLE` (nothing ran, so a retry is safe). Events run on
//! the pool: an event handler says nothing about what it waits on.
//!
//! A failure becomes a gRPC status (see [`status_for`]); panics are caught by the library.

use crate::grpc::{self, Budget, ContentType, ResponseBody};
use crate::log::{Logger, RateLimited};
use crate::pool::BlockingPool;
use bytes::Bytes;
use coprocess::{Blocking, Code, Error, Runtime};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use prost::Message as _;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::codegen::Service as _;
use tonic::metadata::MetadataValue;
use tonic::Status;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

/// The metadata key carrying the library's negative result code on a failed call.
pub const CODE_METADATA: &str = "coprocess-code";

/// The gRPC service name of the dispatcher.
pub const SERVICE_NAME: &str = "coprocess.Dispatcher";

const DISPATCH: &str = "/coprocess.Dispatcher/Dispatch";
const DISPATCH_EVENT: &str = "/coprocess.Dispatcher/DispatchEvent";
const HEALTH: &str = "/grpc.health.v1.Health/";

/// The gRPC status for a library error. The message is the library's (it never contains
/// secrets); the library's code is in the `coprocess-code` metadata entry.
///
/// | library | meaning | gRPC |
/// |---|---|---|
/// | -2 | bytes are not an Object / not event JSON, or over the size limit | `INVALID_ARGUMENT` |
/// | -3 | no middleware or event handler under that name, or not for that hook type | `NOT_FOUND` |
/// | -4 | the middleware or event handler failed or panicked | `INTERNAL` |
/// | -5 | invalid configuration (global file, `config_data`, a section) | `FAILED_PRECONDITION` |
/// | -1 | (cannot happen over gRPC) | `INVALID_ARGUMENT` |
pub fn status_for(e: &Error) -> Status {
    let code = match e.code {
        Code::NullPointer | Code::InvalidInput => tonic::Code::InvalidArgument,
        Code::NotFound => tonic::Code::NotFound,
        Code::Middleware => tonic::Code::Internal,
        Code::Config => tonic::Code::FailedPrecondition,
    };
    let mut status = Status::new(code, e.message.clone());
    status.metadata_mut().insert(CODE_METADATA, MetadataValue::from(e.code.as_int()));
    status
}

/// What the service is configured with.
pub struct ServiceSettings {
    /// Largest request message.
    pub max_recv: usize,
    /// Largest answer.
    pub max_send: usize,
    /// From a call's headers to the end of its body.
    pub read_timeout: Duration,
    /// Whether the store can block (Redis): store-using dispatches then go to the pool.
    pub store_blocks: bool,
    /// A pool dispatch's store operations end by its arrival plus this (the Redis timeout).
    pub store_timeout: Duration,
    /// Interval of the rate-limited overload log line.
    pub log_interval: Duration,
}

/// The service implementation.
pub struct DispatchService {
    runtime: Arc<Runtime>,
    pool: BlockingPool,
    budget: Budget,
    health: HealthServer<HealthService>,
    settings: ServiceSettings,
    logger: Logger,
    refused: RateLimited,
}

impl DispatchService {
    /// A service dispatching through `runtime`, waiting dispatches on `pool`, request
    /// messages held within `budget`, health answered from `health`.
    pub fn new(
        runtime: Arc<Runtime>,
        pool: BlockingPool,
        budget: Budget,
        health: HealthService,
        settings: ServiceSettings,
        logger: Logger,
    ) -> Self {
        let refused = RateLimited::new(settings.log_interval);
        DispatchService { runtime, pool, budget, health: HealthServer::new(health), settings, logger, refused }
    }

    /// Answer one HTTP/2 request. `stop` turns true at shutdown: a call still receiving its
    /// request then ends at once with `UNAVAILABLE`; a call already dispatching finishes.
    pub async fn handle<B>(&self, req: Request<B>, mut stop: watch::Receiver<bool>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        if req.method() != Method::POST {
            return grpc::http_error(StatusCode::METHOD_NOT_ALLOWED, &Status::unimplemented("gRPC calls are POST"));
        }
        if grpc::content_type(req.headers()) != ContentType::Grpc {
            return grpc::http_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &Status::invalid_argument("content-type must be application/grpc or application/grpc+proto"),
            );
        }
        let route = match req.uri().path() {
            DISPATCH => Route::Dispatch,
            DISPATCH_EVENT => Route::Event,
            p if p.starts_with(HEALTH) => Route::Health,
            p => return grpc::error(&Status::unimplemented(format!("unknown method {p}"))),
        };
        let arrived = Instant::now();
        let client_deadline = grpc::timeout(req.headers()).map(|t| arrived + t);
        let read_deadline = match client_deadline {
            Some(d) => d.min(arrived + self.settings.read_timeout),
            None => arrived + self.settings.read_timeout,
        };
        let (parts, mut body) = req.into_parts();
        let read = tokio::select! {
            biased;
            r = grpc::read_unary(&mut body, self.settings.max_recv, &self.budget) => r,
            _ = tokio::time::sleep_until(read_deadline.into()) => Err(Status::deadline_exceeded(
                "the request did not arrive within the server's request read timeout or the call's grpc-timeout",
            )),
            _ = stop.wait_for(|s| *s) => Err(Status::unavailable("the server is shutting down")),
        };
        drop(body);
        let message = match read {
            Ok(m) => m,
            Err(s) => {
                if s.message() == grpc::BUDGET_IN_USE {
                    self.overloaded(&s);
                }
                return grpc::error(&s);
            }
        };
        if client_deadline.is_some_and(|d| d <= Instant::now()) {
            return grpc::error(&Status::deadline_exceeded("the call's grpc-timeout passed before it could run"));
        }
        match route {
            Route::Dispatch => match self.dispatch(message.bytes.clone(), client_deadline).await {
                Ok(answer) => grpc::answer(&answer),
                Err(s) => grpc::error(&s),
            },
            Route::Event => match self.dispatch_event(&message.bytes).await {
                Ok(()) => grpc::answer(&[]),
                Err(s) => grpc::error(&s),
            },
            Route::Health => {
                let req = Request::from_parts(parts, http_body_util::Full::new(grpc::frame(&message.bytes)));
                match self.health.clone().call(req).await {
                    Ok(r) => r.map(ResponseBody::Stream),
                    Err(never) => match never {},
                }
            }
        }
    }

    fn runs_inline(&self, input: &[u8]) -> bool {
        match self.runtime.blocking(input) {
            Blocking::Never => true,
            Blocking::Store => !self.settings.store_blocks,
            Blocking::Network => false,
        }
    }

    /// Dispatch an Object: inline, or on the pool (see the module docs). On the pool, store
    /// operations end by the Redis timeout from now or the client's deadline, whichever is first.
    pub async fn dispatch(&self, input: Bytes, client_deadline: Option<Instant>) -> Result<Vec<u8>, Status> {
        let result = if self.runs_inline(&input) {
            self.runtime.dispatch(&input)
        } else {
            let runtime = self.runtime.clone();
            let own = Instant::now() + self.settings.store_timeout;
            let deadline = client_deadline.map_or(own, |d| d.min(own));
            self.on_pool("Dispatch", move || crate::store::with_call_deadline(deadline, || runtime.dispatch(&input)))
                .await?
        };
        match result {
            Ok(answer) if answer.len() > self.settings.max_send => Err(Status::resource_exhausted(format!(
                "answer larger than max ({} vs. {})",
                answer.len(),
                self.settings.max_send
            ))),
            Ok(answer) => Ok(answer),
            Err(e) => Err(self.failed("Dispatch", &e)),
        }
    }

    /// Decode and run an event on the pool.
    pub async fn dispatch_event(&self, message: &[u8]) -> Result<(), Status> {
        let event = coprocess::proto::Event::decode(message)
            .map_err(|e| Status::invalid_argument(format!("not a coprocess.Event: {e}")))?;
        let runtime = self.runtime.clone();
        let deadline = std::time::Instant::now() + self.settings.store_timeout;
        let run =
            move || crate::store::with_call_deadline(deadline, || runtime.dispatch_event(event.payload.as_bytes()));
        match self.on_pool("DispatchEvent", run).await? {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed("DispatchEvent", &e)),
        }
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        method: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Status> {
        match self.pool.try_run(f) {
            Ok(done) => done.await.map_err(|_| {
                self.logger.error("dispatch task failed", &[("method", Value::from(method))]);
                Status::internal(format!("{method}: the dispatch task failed"))
            }),
            Err(_) => {
                let (threads, queue) = self.pool.size();
                let s = Status::unavailable(format!(
                    "server busy: all {threads} blocking threads are in use and {queue} calls wait; retry later"
                ));
                self.overloaded(&s);
                Err(s)
            }
        }
    }

    fn overloaded(&self, s: &Status) {
        self.refused.log(
            &self.logger,
            coprocess::LogLevel::Warning,
            "call refused: server overloaded",
            &[("grpc_status", Value::from(format!("{:?}", s.code()))), ("error", Value::from(s.message()))],
        );
    }

    fn failed(&self, method: &str, e: &Error) -> Status {
        let status = status_for(e);
        let level = if e.code == Code::Middleware { coprocess::LogLevel::Error } else { coprocess::LogLevel::Warning };
        self.logger.log(
            level,
            "server",
            "call failed",
            &[
                ("method", Value::from(method)),
                ("code", Value::from(e.code.as_int())),
                ("grpc_status", Value::from(format!("{:?}", status.code()))),
                ("error", Value::from(e.message.as_str())),
            ],
        );
        status
    }
}

enum Route {
    Dispatch,
    Event,
    Health,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_code_has_a_status() {
        for (code, grpc) in [
            (Code::NullPointer, tonic::Code::InvalidArgument),
            (Code::InvalidInput, tonic::Code::InvalidArgument),
            (Code::NotFound, tonic::Code::NotFound),
            (Code::Middleware, tonic::Code::Internal),
            (Code::Config, tonic::Code::FailedPrecondition),
        ] {
            let s = status_for(&Error::new(code, "why"));
            assert_eq!(s.code(), grpc, "{code:?}");
            assert_eq!(s.message(), "why");
            assert_eq!(s.metadata().get(CODE_METADATA).unwrap().to_str().unwrap(), code.as_int().to_string());
        }
    }
}
