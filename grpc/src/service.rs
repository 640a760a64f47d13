//! The `coprocess.Dispatcher` service over a [`coprocess::Runtime`].
//!
//! Each call runs the (synchronous) library call on tokio's blocking pool, so a middleware
//! that waits on the network (ReqHubMerchant's remote verification) or on Redis never stalls
//! the threads that drive connections. A failure becomes a gRPC status (see [`status_for`]);
//! panics are caught by the library, and a task failure outside it is an `INTERNAL` status,
//! never a crash.

use crate::codec::RawObject;
use crate::log::Logger;
use crate::pb::dispatcher_server::Dispatcher;
use coprocess::proto::{Event, EventReply};
use coprocess::{Code, Error, Runtime};
use serde_json::Value;
use std::sync::Arc;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

/// The metadata key carrying the library's negative result code on a failed call.
pub const CODE_METADATA: &str = "coprocess-code";

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

/// The service implementation.
pub struct DispatchService {
    runtime: Arc<Runtime>,
    logger: Logger,
}

impl DispatchService {
    /// A service dispatching through `runtime`.
    pub fn new(runtime: Arc<Runtime>, logger: Logger) -> Self {
        DispatchService { runtime, logger }
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

    fn task_failed(&self, method: &str, e: tokio::task::JoinError) -> Status {
        self.logger
            .error("dispatch task failed", &[("method", Value::from(method)), ("error", Value::from(e.to_string()))]);
        Status::internal(format!("{method}: the dispatch task failed"))
    }
}

#[tonic::async_trait]
impl Dispatcher for DispatchService {
    async fn dispatch(&self, request: Request<RawObject>) -> Result<Response<RawObject>, Status> {
        let input = request.into_inner().0;
        let runtime = self.runtime.clone();
        match tokio::task::spawn_blocking(move || runtime.dispatch(&input)).await {
            Ok(Ok(answer)) => Ok(Response::new(RawObject::from(answer))),
            Ok(Err(e)) => Err(self.failed("Dispatch", &e)),
            Err(e) => Err(self.task_failed("Dispatch", e)),
        }
    }

    async fn dispatch_event(&self, request: Request<Event>) -> Result<Response<EventReply>, Status> {
        let payload = request.into_inner().payload;
        let runtime = self.runtime.clone();
        match tokio::task::spawn_blocking(move || runtime.dispatch_event(payload.as_bytes())).await {
            Ok(Ok(())) => Ok(Response::new(EventReply {})),
            Ok(Err(e)) => Err(self.failed("DispatchEvent", &e)),
            Err(e) => Err(self.task_failed("DispatchEvent", e)),
        }
    }
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
