//! Listeners, TLS, health checking, reload and graceful shutdown.

use crate::host::{EventSink, RedisStore, ServerHost, Store, Webhook};
use crate::log::Logger;
use crate::options::Options;
use crate::pb::dispatcher_server::DispatcherServer;
use crate::service::DispatchService;
use coprocess::{ConfigSource, MemoryStore, Registry, Runtime};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server as TonicServer, ServerTlsConfig};
use tonic_health::server::HealthReporter;

/// The gRPC service name the health service reports (as well as the whole server, `""`).
pub const SERVICE_NAME: &str = crate::pb::dispatcher_server::SERVICE_NAME;

/// A running server.
pub struct Server {
    /// The bound TCP address, if listening on TCP.
    pub tcp: Option<SocketAddr>,
    /// The unix socket path, if listening on one.
    pub unix: Option<PathBuf>,
    runtime: Arc<Runtime>,
    host: Arc<ServerHost>,
    logger: Logger,
    health: HealthReporter,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), String>>>,
    grace: Duration,
}

fn runtime_for(opts: &Options, registry: Registry, host: Arc<ServerHost>) -> Result<Runtime, String> {
    let source = match &opts.middleware_config {
        Some(p) => ConfigSource::File(p.clone()),
        None => ConfigSource::Env,
    };
    // The library starts with an empty configuration when the file is broken; a server should
    // rather refuse to start. Reading the file first, then a reload (which validates every
    // section) catches both.
    source.load().map_err(|e| format!("middleware configuration: {e}"))?;
    let runtime = Runtime::new(registry, host, source);
    runtime.reload().map_err(|e| {
        let why = e.message.trim_start_matches("reload failed, previous configuration kept: ");
        format!("middleware configuration: {why}")
    })?;
    Ok(runtime)
}

/// Replace a stale socket file; refuse a live socket or a non-socket file.
fn prepare_unix_path(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("{} is in use by another server", path.display()));
            }
            std::fs::remove_file(path).map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))
        }
        Ok(_) => Err(format!("{} exists and is not a socket", path.display())),
    }
}

fn tls_config(cert: &Path, key: &Path) -> Result<ServerTlsConfig, String> {
    let cert = std::fs::read(cert).map_err(|e| format!("cannot read TLS certificate {}: {e}", cert.display()))?;
    let key = std::fs::read(key).map_err(|e| format!("cannot read TLS key {}: {e}", key.display()))?;
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Build the host and a runtime over every built-in, bind the listeners and start serving.
pub async fn start(opts: Options) -> Result<Server, String> {
    start_with(opts, coprocess::builtins::registry()).await
}

/// [`start`] with your own registry: a server binary offering your middleware (beside or
/// instead of the built-ins) over gRPC.
pub async fn start_with(opts: Options, registry: Registry) -> Result<Server, String> {
    opts.validate()?;
    let logger = Logger::new(opts.log_level);
    let store = match &opts.redis_url {
        Some(url) => {
            let (url, prefix, timeout) =
                (url.clone(), opts.redis_prefix.clone(), Duration::from_millis(opts.redis_timeout_ms));
            let store = tokio::task::spawn_blocking(move || RedisStore::connect(&url, &prefix, timeout))
                .await
                .map_err(|e| format!("Redis connect task failed: {e}"))??;
            Store::Redis(store)
        }
        None => Store::Memory(MemoryStore::new()),
    };
    let events = match opts.event_sink.as_str() {
        "log" => EventSink::Log,
        url => EventSink::Webhook(Webhook::start(url, Duration::from_millis(opts.event_timeout_ms), logger.clone())?),
    };
    let host = Arc::new(ServerHost::new(logger.clone(), events, store));
    let runtime = {
        let (o, h) = (opts.clone(), host.clone());
        Arc::new(
            tokio::task::spawn_blocking(move || runtime_for(&o, registry, h))
                .await
                .map_err(|e| format!("configuration task failed: {e}"))??,
        )
    };

    let service = Arc::new(DispatchService::new(runtime.clone(), logger.clone()));
    let dispatcher = DispatcherServer::from_arc(service)
        .max_decoding_message_size(opts.grpc_recv_max_size)
        .max_encoding_message_size(opts.grpc_send_max_size);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<DispatcherServer<DispatchService>>().await;

    // Bind every listener before serving any, so a failure leaves nothing running.
    let tcp_listener = match &opts.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr.as_str()).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    let mut tcp_builder = TonicServer::builder();
    if let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) {
        tcp_builder = tcp_builder.tls_config(tls_config(cert, key)?).map_err(|e| format!("TLS configuration: {e}"))?;
    }
    let unix_listener = match &opts.unix {
        Some(path) => {
            prepare_unix_path(path)?;
            Some(
                tokio::net::UnixListener::bind(path)
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?,
            )
        }
        None => None,
    };

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut tcp = None;
    if let Some(listener) = tcp_listener {
        tcp = Some(listener.local_addr().map_err(|e| e.to_string())?);
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let router = tcp_builder.add_service(health_service.clone()).add_service(dispatcher.clone());
        let (rx, stop, log) = (shutdown_rx.clone(), shutdown.clone(), logger.clone());
        tasks.push(tokio::spawn(async move {
            let r = router.serve_with_incoming_shutdown(incoming, wait_for(rx)).await;
            ended("tcp", r, &stop, &log)
        }));
    }
    let unix = opts.unix.clone();
    if let Some(listener) = unix_listener {
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let router = TonicServer::builder().add_service(health_service).add_service(dispatcher);
        let (rx, stop, log) = (shutdown_rx.clone(), shutdown.clone(), logger.clone());
        tasks.push(tokio::spawn(async move {
            let r = router.serve_with_incoming_shutdown(incoming, wait_for(rx)).await;
            ended("unix", r, &stop, &log)
        }));
    }
    logger.info(
        "serving",
        &[
            ("tcp", tcp.map_or(Value::Null, |a| Value::from(a.to_string()))),
            ("unix", unix.as_ref().map_or(Value::Null, |p: &PathBuf| Value::from(p.display().to_string()))),
            ("tls", Value::from(opts.tls_cert.is_some())),
            ("store", Value::from(if opts.redis_url.is_some() { "redis" } else { "memory" })),
            ("event_sink", Value::from(if opts.event_sink == "log" { "log" } else { "webhook" })),
            ("grpc_recv_max_size", Value::from(opts.grpc_recv_max_size)),
            ("grpc_send_max_size", Value::from(opts.grpc_send_max_size)),
            ("pid", Value::from(std::process::id())),
        ],
    );
    Ok(Server {
        tcp,
        unix,
        runtime,
        host,
        logger,
        health,
        shutdown,
        tasks,
        grace: Duration::from_millis(opts.shutdown_timeout_ms),
    })
}

/// A listener's end: an error stops the whole server (the others shut down gracefully).
fn ended(
    which: &str,
    r: Result<(), tonic::transport::Error>,
    stop: &watch::Sender<bool>,
    logger: &Logger,
) -> Result<(), String> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => {
            logger.error(
                "listener failed, shutting down",
                &[("listener", Value::from(which)), ("error", Value::from(e.to_string()))],
            );
            let _ = stop.send(true);
            Err(format!("{which} listener: {e}"))
        }
    }
}

impl Server {
    /// The runtime (shared with the service).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Reload the middleware configuration (what SIGHUP does). On error the previous
    /// configuration stays in force; the error is logged and returned.
    pub async fn reload(&self) -> Result<(), String> {
        let rt = self.runtime.clone();
        let r =
            tokio::task::spawn_blocking(move || rt.reload()).await.map_err(|e| format!("reload task failed: {e}"))?;
        match r {
            Ok(()) => {
                self.logger.info("configuration reloaded", &[]);
                Ok(())
            }
            Err(e) => {
                let why = e.message.trim_start_matches("reload failed, previous configuration kept: ");
                self.logger.error("reload failed, previous configuration kept", &[("error", Value::from(why))]);
                Err(e.message)
            }
        }
    }

    /// Resolves when the server stops by itself (a listener failed).
    pub async fn stopped(&self) {
        wait_for(self.shutdown.subscribe()).await
    }

    /// Graceful shutdown: report NOT_SERVING, stop accepting, let in-flight calls finish (up
    /// to the shutdown timeout), remove the unix socket, flush queued webhook events.
    pub async fn shutdown(self) -> Result<(), String> {
        self.logger.info("shutting down", &[]);
        self.health.set_not_serving::<DispatcherServer<DispatchService>>().await;
        self.health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        let _ = self.shutdown.send(true);
        let mut errors = Vec::new();
        let deadline = tokio::time::Instant::now() + self.grace;
        for task in self.tasks {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(e),
                Ok(Err(e)) => errors.push(format!("listener task: {e}")),
                Err(_) => {
                    self.logger.warn("shutdown timeout reached with calls in flight", &[]);
                    break;
                }
            }
        }
        if let Some(path) = &self.unix {
            let _ = std::fs::remove_file(path);
        }
        let host = self.host.clone();
        let _ = tokio::task::spawn_blocking(move || host.events().close(Duration::from_secs(5))).await;
        self.logger.info("stopped", &[]);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
