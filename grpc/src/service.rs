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
//!
//! Every call is counted by method and gRPC status with its duration ([`ServerMetrics`]), and
//! dispatched with its trace id ([`crate::trace`]): the `traceparent` metadata goes to
//! [`Runtime::dispatch_traced`], and the call's [`CallTrace`] is this thread's current call
//! for the time of the dispatch, inline or on the pool, so events and log lines written
//! meanwhile carry it. The server's own lines about a call (failed, refused, timed out) carry
//! it as `trace_id` too.

use crate::grpc::{self, Budget, ContentType, ResponseBody};
use crate::log::{Logger, RateLimited};
use crate::metrics::{Method, ServerMetrics};
use crate::pool::BlockingPool;
use crate::trace::{self, CallTrace, TraceId};
use bytes::Bytes;
use coprocess::{Blocking, Code, Error, Runtime};
use http::{Request, Response, StatusCode};
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
    timeouts: RateLimited,
    metrics: Arc<ServerMetrics>,
}

/// Counts a call when it ends: with the status it was answered with, or `CANCELLED` when it
/// is dropped first (the client reset the stream or the connection went away).
struct CallRecord<'a> {
    metrics: &'a ServerMetrics,
    method: Method,
    started: Instant,
    code: Option<u32>,
}

impl Drop for CallRecord<'_> {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(tonic::Code::Cancelled as u32);
        self.metrics.call(self.method, code, self.started.elapsed());
    }
}

/// The gRPC status an answer carries in its headers (a trailers-only error), else OK (a
/// unary answer's trailers are `grpc-status: 0`, a health `Watch` stream has begun).
fn answered_code(resp: &Response<ResponseBody>) -> u32 {
    match resp.headers().get("grpc-status") {
        None => tonic::Code::Ok as u32,
        Some(v) => v.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(tonic::Code::Unknown as u32),
    }
}

/// `trace_id` as a log field, when there is one.
fn with_trace(mut fields: Vec<(&str, Value)>, id: Option<TraceId>) -> Vec<(&str, Value)> {
    if let Some(id) = id {
        fields.push(("trace_id", Value::from(id.as_str())));
    }
    fields
}

impl DispatchService {
    /// A service dispatching through `runtime`, waiting dispatches on `pool`, request
    /// messages held within `budget`, health answered from `health`, calls counted in `metrics`.
    pub fn new(
        runtime: Arc<Runtime>,
        pool: BlockingPool,
        budget: Budget,
        health: HealthService,
        settings: ServiceSettings,
        logger: Logger,
        metrics: Arc<ServerMetrics>,
    ) -> Self {
        let refused = RateLimited::new(settings.log_interval);
        let timeouts = RateLimited::new(settings.log_interval);
        DispatchService {
            runtime,
            pool,
            budget,
            health: HealthServer::new(health),
            settings,
            logger,
            refused,
            timeouts,
            metrics,
        }
    }

    /// The blocking pool (its statistics, for the metrics).
    pub fn pool(&self) -> &BlockingPool {
        &self.pool
    }

    /// The request memory budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Answer one HTTP/2 request, counted in the metrics by method and status. `stop` turns
    /// true at shutdown: a call still receiving its request then ends at once with
    /// `UNAVAILABLE`; a call already dispatching finishes.
    pub async fn handle<B>(&self, req: Request<B>, stop: watch::Receiver<bool>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let method = Method::of_path(req.uri().path());
        let mut record = CallRecord { metrics: &self.metrics, method, started: Instant::now(), code: None };
        let resp = self.answer(req, stop, method).await;
        record.code = Some(answered_code(&resp));
        resp
    }

    async fn answer<B>(
        &self,
        req: Request<B>,
        mut stop: watch::Receiver<bool>,
        method: Method,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        if req.method() != http::Method::POST {
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
        let trace_id = TraceId::from_metadata(req.headers());
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
                    self.metrics.memory_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.overloaded(method, &s, trace_id);
                } else if s.code() == tonic::Code::DeadlineExceeded {
                    self.timed_out(method, &s, trace_id);
                }
                return grpc::error(&s);
            }
        };
        if client_deadline.is_some_and(|d| d <= Instant::now()) {
            let s = Status::deadline_exceeded("the call's grpc-timeout passed before it could run");
            self.timed_out(method, &s, trace_id);
            return grpc::error(&s);
        }
        match route {
            Route::Dispatch => {
                let call = CallTrace::dispatch(trace_id, &message.bytes);
                match self.dispatch_traced(message.bytes.clone(), client_deadline, call).await {
                    Ok(answer) => grpc::answer(&answer),
                    Err(s) => grpc::error(&s),
                }
            }
            Route::Event => match self.dispatch_event_traced(&message.bytes, CallTrace::new(trace_id)).await {
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

    /// Dispatch an Object without a trace id: [`DispatchService::dispatch_traced`].
    pub async fn dispatch(&self, input: Bytes, client_deadline: Option<Instant>) -> Result<Vec<u8>, Status> {
        let call = CallTrace::dispatch(None, &input);
        self.dispatch_traced(input, client_deadline, call).await
    }

    /// Dispatch an Object: inline, or on the pool (see the module docs), with `call` as the
    /// thread's current call meanwhile. On the pool, store operations end by the Redis timeout
    /// from now or the client's deadline, whichever is first.
    pub async fn dispatch_traced(
        &self,
        input: Bytes,
        client_deadline: Option<Instant>,
        call: CallTrace,
    ) -> Result<Vec<u8>, Status> {
        let run = {
            let call = call.clone();
            move |runtime: &Runtime, input: &Bytes| {
                let id = call.metadata_id();
                trace::with_call(call, || {
                    runtime.dispatch_traced(input, id.as_ref().map(|t| t.as_str())).map(|a| a.into_vec(input))
                })
            }
        };
        let result = if self.runs_inline(&input) {
            run(&self.runtime, &input)
        } else {
            let runtime = self.runtime.clone();
            let own = Instant::now() + self.settings.store_timeout;
            let deadline = client_deadline.map_or(own, |d| d.min(own));
            self.on_pool(
                Method::Dispatch,
                move || crate::store::with_call_deadline(deadline, || run(&runtime, &input)),
                &call,
            )
            .await?
        };
        match result {
            Ok(answer) if answer.len() > self.settings.max_send => Err(Status::resource_exhausted(format!(
                "answer larger than max ({} vs. {})",
                answer.len(),
                self.settings.max_send
            ))),
            Ok(answer) => Ok(answer),
            Err(e) => Err(self.failed(Method::Dispatch, &e, call.trace_id())),
        }
    }

    /// Decode and run an event on the pool, without a trace id.
    pub async fn dispatch_event(&self, message: &[u8]) -> Result<(), Status> {
        self.dispatch_event_traced(message, CallTrace::default()).await
    }

    /// Decode and run an event on the pool, with `call` as the pool thread's current call.
    pub async fn dispatch_event_traced(&self, message: &[u8], call: CallTrace) -> Result<(), Status> {
        let event = coprocess::proto::Event::decode(message)
            .map_err(|e| Status::invalid_argument(format!("not a coprocess.Event: {e}")))?;
        let runtime = self.runtime.clone();
        let deadline = std::time::Instant::now() + self.settings.store_timeout;
        let current = call.clone();
        let run = move || {
            trace::with_call(current, || {
                crate::store::with_call_deadline(deadline, || runtime.dispatch_event(event.payload.as_bytes()))
            })
        };
        match self.on_pool(Method::DispatchEvent, run, &call).await? {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failed(Method::DispatchEvent, &e, call.trace_id())),
        }
    }

    async fn on_pool<T: Send + 'static>(
        &self,
        method: Method,
        f: impl FnOnce() -> T + Send + 'static,
        call: &CallTrace,
    ) -> Result<T, Status> {
        match self.pool.try_run(f) {
            Ok(done) => done.await.map_err(|_| {
                self.logger.error(
                    "dispatch task failed",
                    &with_trace(vec![("method", Value::from(method.name()))], call.trace_id()),
                );
                Status::internal(format!("{}: the dispatch task failed", method.name()))
            }),
            Err(_) => {
                let (threads, queue) = self.pool.size();
                let s = Status::unavailable(format!(
                    "server busy: all {threads} blocking threads are in use and {queue} calls wait; retry later"
                ));
                self.overloaded(method, &s, call.trace_id());
                Err(s)
            }
        }
    }

    fn overloaded(&self, method: Method, s: &Status, trace_id: Option<TraceId>) {
        warn_call(&self.refused, &self.logger, "call refused: server overloaded", method, s, trace_id);
    }

    fn timed_out(&self, method: Method, s: &Status, trace_id: Option<TraceId>) {
        warn_call(&self.timeouts, &self.logger, "call timed out", method, s, trace_id);
    }

    fn failed(&self, method: Method, e: &Error, trace_id: Option<TraceId>) -> Status {
        let status = status_for(e);
        let level = if e.code == Code::Middleware { coprocess::LogLevel::Error } else { coprocess::LogLevel::Warning };
        self.logger.log(
            level,
            "server",
            "call failed",
            &with_trace(
                vec![
                    ("method", Value::from(method.name())),
                    ("code", Value::from(e.code.as_int())),
                    ("grpc_status", Value::from(format!("{:?}", status.code()))),
                    ("error", Value::from(e.message.as_str())),
                ],
                trace_id,
            ),
        );
        status
    }
}

enum Route {
    Dispatch,
    Event,
    Health,
}

/// A warning about one call through its rate limiter: the method, the gRPC status and its
/// message, the trace id.
fn warn_call(limiter: &RateLimited, logger: &Logger, msg: &str, method: Method, s: &Status, trace_id: Option<TraceId>) {
    limiter.log(
        logger,
        coprocess::LogLevel::Warning,
        msg,
        &with_trace(
            vec![
                ("method", Value::from(method.name())),
                ("grpc_status", Value::from(format!("{:?}", s.code()))),
                ("error", Value::from(s.message())),
            ],
            trace_id,
        ),
    );
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
