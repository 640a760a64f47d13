//! Listeners, connections and their limits, TLS, health checking, reload and shutdown.
//!
//! Each listener has its own accept loop. A connection past `--max-connections` is closed as
//! soon as it is accepted; an accept error (`EMFILE` when the process is out of file
//! descriptors, and any other) backs off, doubling from 5 ms to 1 s, instead of retrying at
//! once; at `EMFILE`/`ENFILE` a reserved descriptor is freed to accept and close the pending
//! connections, so their clients learn at once instead of waiting in the backlog. A connection has
//! `--handshake-timeout-ms` to finish TLS and send the HTTP/2 preface, then is served by
//! hyper's HTTP/2 server with `--max-concurrent-streams` (advertised in SETTINGS) and
//! keepalive PINGs. A connection without calls for `--idle-timeout-ms` is closed with GOAWAY.
//!
//! Shutdown: every connection gets GOAWAY; one without a running call closes at once (calls
//! still receiving their request end with `UNAVAILABLE`); the others close when their running
//! calls have answered, up to `--shutdown-timeout-ms` in all.
//!
//! With `--metrics-listen`, [`crate::metrics_server`] serves [`Server::metrics_text`] on a
//! thread of its own.

use crate::grpc::{Budget, ResponseBody};
use crate::host::{EventSink, RedisStore, ServerHost, Store, Webhook};
use crate::log::{Logger, RateLimited};
use crate::metrics::{FrameScan, Gauges, ServerMetrics};
use crate::options::Options;
use crate::pool::BlockingPool;
use crate::service::{DispatchService, ServiceSettings};
use crate::store::RedisSettings;
use coprocess::{ConfigSource, LogLevel, MemoryStore, Registry, Runtime};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;
use tonic_health::server::{HealthReporter, HealthService};

/// The gRPC service name the health service reports (as well as the whole server, `""`).
pub const SERVICE_NAME: &str = crate::service::SERVICE_NAME;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A running server.
pub struct Server {
    /// The bound TCP address, if listening on TCP.
    pub tcp: Option<SocketAddr>,
    /// The unix socket path, if listening on one.
    pub unix: Option<PathBuf>,
    /// The connection limit in force.
    pub max_connections: usize,
    /// The bound metrics address, with `--metrics-listen`.
    pub metrics: Option<SocketAddr>,
    runtime: Arc<Runtime>,
    host: Arc<ServerHost>,
    logger: Logger,
    health: HealthReporter,
    shutdown: watch::Sender<bool>,
    shared: Arc<Shared>,
    scrape: Scrape,
    grace: Duration,
}

/// What a scrape reads.
#[derive(Clone)]
struct Scrape {
    shared: Arc<Shared>,
    host: Arc<ServerHost>,
    runtime: Arc<Runtime>,
}

impl Scrape {
    fn render(&self) -> String {
        let service = &self.shared.service;
        let (pool_threads, pool_queue_capacity) = service.pool().size();
        let pool = service.pool().stats();
        let gauges = Gauges {
            connections_open: self.shared.open.load(Ordering::Relaxed),
            connections_max: self.shared.max_connections,
            pool_threads,
            pool_busy: pool.busy(),
            pool_queued: pool.queued(),
            pool_queue_capacity,
            pool_refused: pool.refused(),
            memory_in_use: service.budget().in_use(),
            memory_limit: service.budget().limit(),
            breaker: match self.host.store() {
                Store::Redis(r) => Some(r.breaker_status()),
                Store::Memory(_) => None,
            },
            webhook: self.host.events().webhook_counts(),
        };
        let mut out = String::with_capacity(32 << 10);
        crate::metrics::render(&mut out, &self.shared.metrics, &gauges, self.host.store_operations());
        out.push_str(&self.runtime.metrics());
        out
    }
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

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = std::fs::read(cert).map_err(|e| format!("cannot read TLS certificate {}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("cannot read TLS key {}: {e}", key.display()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("TLS certificate {}: no certificate found", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS configuration: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The soft `RLIMIT_NOFILE` (open file descriptors) of this process.
pub fn open_file_limit() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given and nothing else.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if r != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return 1 << 20;
    }
    rl.rlim_cur
}

/// The connection limit for `--max-connections 0`: the open-file limit less a reserve for
/// the descriptors that are not connections (one Redis connection per blocking thread, the
/// listeners, the runtime, files, the webhook), or half the limit when it is too small for that.
pub fn auto_max_connections(nofile: u64, blocking_threads: usize) -> usize {
    let reserve = 64 + blocking_threads as u64;
    let n = if nofile > 2 * reserve { nofile - reserve } else { nofile / 2 };
    n.max(1) as usize
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
    let log_interval = Duration::from_millis(opts.error_log_interval_ms);
    let store = match &opts.redis_url {
        Some(url) => {
            let settings = RedisSettings {
                timeout: Duration::from_millis(opts.redis_timeout_ms),
                breaker_failures: opts.redis_breaker_failures,
                breaker_backoff: Duration::from_millis(opts.redis_breaker_backoff_ms),
                log_interval,
                max_idle: opts.blocking_threads,
            };
            let (url, prefix, l) = (url.clone(), opts.redis_prefix.clone(), logger.clone());
            let store = tokio::task::spawn_blocking(move || RedisStore::connect(&url, &prefix, settings, l))
                .await
                .map_err(|e| format!("Redis connect task failed: {e}"))??;
            Store::Redis(Box::new(store))
        }
        None => Store::Memory(MemoryStore::new()),
    };
    let store_blocks = store.can_block();
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

    let (health, _) = tonic_health::server::health_reporter();
    health.set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving).await;
    let metrics = Arc::new(ServerMetrics::default());
    let pool = BlockingPool::new(opts.blocking_threads, opts.blocking_queue)
        .map_err(|e| format!("cannot start the blocking threads: {e}"))?;
    let service = DispatchService::new(
        runtime.clone(),
        pool,
        Budget::new(opts.request_memory_bytes),
        HealthService::from_health_reporter(health.clone()),
        ServiceSettings {
            max_recv: opts.grpc_recv_max_size,
            max_send: opts.grpc_send_max_size,
            read_timeout: Duration::from_millis(opts.request_read_timeout_ms),
            store_blocks,
            store_timeout: Duration::from_millis(opts.redis_timeout_ms),
            log_interval,
        },
        logger.clone(),
        metrics.clone(),
    );

    // Bind every listener before serving any, so a failure leaves nothing running.
    let tcp_listener = match &opts.listen {
        Some(addr) => {
            Some(TcpListener::bind(addr.as_str()).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?)
        }
        None => None,
    };
    let tls = match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let metrics_listener = match &opts.metrics_listen {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr.as_str())
                .map_err(|e| format!("cannot listen on {addr} for the metrics: {e}"))?,
        ),
        None => None,
    };
    let unix_listener = match &opts.unix {
        Some(path) => {
            prepare_unix_path(path)?;
            Some(UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?)
        }
        None => None,
    };

    let nofile = open_file_limit();
    let auto = auto_max_connections(nofile, opts.blocking_threads);
    let max_connections = if opts.max_connections == 0 { auto } else { opts.max_connections };
    if max_connections > auto {
        logger.warn(
            "--max-connections leaves few file descriptors for anything else",
            &[("max_connections", Value::from(max_connections)), ("nofile", Value::from(nofile))],
        );
    }
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.max_concurrent_streams)
        .keep_alive_interval(
            (opts.keepalive_interval_ms > 0).then(|| Duration::from_millis(opts.keepalive_interval_ms)),
        )
        .keep_alive_timeout(Duration::from_millis(opts.keepalive_timeout_ms))
        .auto_date_header(false);
    let (shutdown, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        service,
        http2,
        tls,
        stop,
        open: AtomicUsize::new(0),
        all_closed: Notify::new(),
        max_connections,
        handshake_timeout: Duration::from_millis(opts.handshake_timeout_ms),
        idle_timeout: (opts.idle_timeout_ms > 0).then(|| Duration::from_millis(opts.idle_timeout_ms)),
        epoch: Instant::now(),
        refused_log: RateLimited::new(log_interval),
        accept_log: RateLimited::new(log_interval),
        reserve_fd: Mutex::new(std::fs::File::open("/dev/null").ok()),
        logger: logger.clone(),
        metrics,
    });
    let scrape = Scrape { shared: shared.clone(), host: host.clone(), runtime: runtime.clone() };
    let mut metrics_addr = None;
    if let Some(listener) = metrics_listener {
        metrics_addr = Some(listener.local_addr().map_err(|e| e.to_string())?);
        let scrape = scrape.clone();
        crate::metrics_server::start(listener, Arc::new(move || scrape.render()), shared.stop.clone(), logger.clone())
            .map_err(|e| format!("cannot start the metrics listener: {e}"))?;
    }

    let mut tcp = None;
    if let Some(listener) = tcp_listener {
        tcp = Some(listener.local_addr().map_err(|e| e.to_string())?);
        tokio::spawn(accept_loop(listener, shared.clone()));
    }
    let unix = opts.unix.clone();
    if let Some(listener) = unix_listener {
        tokio::spawn(accept_loop(listener, shared.clone()));
    }
    logger.info(
        "serving",
        &[
            ("tcp", tcp.map_or(Value::Null, |a| Value::from(a.to_string()))),
            ("unix", unix.as_ref().map_or(Value::Null, |p: &PathBuf| Value::from(p.display().to_string()))),
            ("metrics", metrics_addr.map_or(Value::Null, |a| Value::from(a.to_string()))),
            ("tls", Value::from(opts.tls_cert.is_some())),
            ("store", Value::from(if opts.redis_url.is_some() { "redis" } else { "memory" })),
            ("event_sink", Value::from(if opts.event_sink == "log" { "log" } else { "webhook" })),
            ("grpc_recv_max_size", Value::from(opts.grpc_recv_max_size)),
            ("grpc_send_max_size", Value::from(opts.grpc_send_max_size)),
            ("max_connections", Value::from(max_connections)),
            ("max_concurrent_streams", Value::from(opts.max_concurrent_streams)),
            ("blocking_threads", Value::from(opts.blocking_threads)),
            ("pid", Value::from(std::process::id())),
        ],
    );
    Ok(Server {
        tcp,
        unix,
        max_connections,
        metrics: metrics_addr,
        scrape,
        runtime,
        host,
        logger,
        health,
        shutdown,
        shared,
        grace: Duration::from_millis(opts.shutdown_timeout_ms),
    })
}

/// What every connection shares.
struct Shared {
    service: DispatchService,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
    open: AtomicUsize,
    all_closed: Notify,
    max_connections: usize,
    handshake_timeout: Duration,
    idle_timeout: Option<Duration>,
    epoch: Instant,
    refused_log: RateLimited,
    accept_log: RateLimited,
    reserve_fd: Mutex<Option<std::fs::File>>,
    logger: Logger,
    metrics: Arc<ServerMetrics>,
}

/// A listener the accept loop can poll.
trait Accept: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    const TLS: bool;
    fn poll_accept_io(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>>;
}

impl Accept for TcpListener {
    type Io = tokio::net::TcpStream;
    const TLS: bool = true;
    fn poll_accept_io(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        self.poll_accept(cx).map_ok(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        })
    }
}

impl Accept for UnixListener {
    type Io = tokio::net::UnixStream;
    const TLS: bool = false;
    fn poll_accept_io(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Io>> {
        self.poll_accept(cx).map_ok(|(s, _)| s)
    }
}

/// Errors of one pending connection (it went away before accept): accept the next at once.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::ECONNRESET) | Some(libc::EPROTO) | Some(libc::EPERM)
    )
}

async fn accept_loop<L: Accept>(listener: L, shared: Arc<Shared>) {
    const MIN_BACKOFF: Duration = Duration::from_millis(5);
    let mut stop = shared.stop.clone();
    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = std::future::poll_fn(|cx| listener.poll_accept_io(cx)) => r,
        };
        match accepted {
            Ok(io) => {
                backoff = MIN_BACKOFF;
                if shared.open.load(Ordering::Acquire) >= shared.max_connections {
                    drop(io);
                    shared.metrics.connections_refused_limit.fetch_add(1, Ordering::Relaxed);
                    shared.refused_log.log(
                        &shared.logger,
                        LogLevel::Warning,
                        "connection refused: connection limit reached",
                        &[("max_connections", Value::from(shared.max_connections))],
                    );
                    continue;
                }
                shared.open.fetch_add(1, Ordering::AcqRel);
                shared.metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
                let s = shared.clone();
                tokio::spawn(async move {
                    serve_connection::<L>(io, &s).await;
                    if s.open.fetch_sub(1, Ordering::AcqRel) == 1 {
                        s.all_closed.notify_waiters();
                    }
                });
            }
            Err(e) if per_connection(&e) => {}
            Err(e) => {
                let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
                let refused = if out_of_fds { refuse_pending_with_reserve(&listener, &shared) } else { 0 };
                shared.accept_log.log(
                    &shared.logger,
                    LogLevel::Error,
                    "accept failed; backing off",
                    &[("error", Value::from(e.to_string())), ("backoff_ms", Value::from(backoff.as_millis() as u64))],
                );
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                // Refusing pending connections worked: look again soon. Nothing to refuse (or
                // another error): wait longer each time.
                backoff = if refused > 0 { MIN_BACKOFF } else { (backoff * 2).min(Duration::from_secs(1)) };
            }
        }
    }
}

/// Out of descriptors: free the reserved one and use it to accept and close every pending
/// connection (each close frees the descriptor for the next), so their clients learn at once
/// instead of waiting in the backlog; then reserve a descriptor again. The number refused.
fn refuse_pending_with_reserve<L: Accept>(listener: &L, shared: &Shared) -> usize {
    let mut reserve = shared.reserve_fd.lock();
    if reserve.take().is_none() {
        *reserve = std::fs::File::open("/dev/null").ok();
        return 0;
    }
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut refused = 0;
    while refused < 4096 {
        match listener.poll_accept_io(&mut cx) {
            Poll::Ready(Ok(io)) => {
                drop(io);
                refused += 1;
            }
            Poll::Ready(Err(e)) if per_connection(&e) => {}
            _ => break,
        }
    }
    *reserve = std::fs::File::open("/dev/null").ok();
    shared.metrics.connections_refused_fds.fetch_add(refused as u64, Ordering::Relaxed);
    if refused > 0 {
        shared.refused_log.log(
            &shared.logger,
            LogLevel::Warning,
            "connections refused: out of file descriptors",
            &[("refused", Value::from(refused)), ("max_connections", Value::from(shared.max_connections))],
        );
    }
    refused
}

/// The bytes read while checking the preface, served again before the rest of the stream;
/// the frames written are scanned for refused streams (for the metrics).
struct Rewind<T> {
    prefix: Option<&'static [u8]>,
    inner: T,
    scan: FrameScan,
    metrics: Arc<ServerMetrics>,
}

impl<T> Rewind<T> {
    fn wrote(&mut self, bytes: &[u8]) {
        let refused = self.scan.scan(bytes);
        if refused > 0 {
            self.metrics.streams_refused.fetch_add(refused, Ordering::Relaxed);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(p) = self.prefix.take() {
            let n = p.len().min(buf.remaining());
            buf.put_slice(&p[..n]);
            if n < p.len() {
                self.prefix = Some(&p[n..]);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(&buf[..n]);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = r {
            for b in bufs {
                let take = n.min(b.len());
                self.wrote(&b[..take]);
                n -= take;
                if n == 0 {
                    break;
                }
            }
        }
        r
    }
    /// No: h2 then copies DATA frames under 1024 bytes into its buffer (instead of under 256
    /// with vectored writes), so a small answer's frames leave in one write (see
    /// [`crate::grpc::SMALL_ANSWER`]). Large frames are written from their own buffers either way.
    fn is_write_vectored(&self) -> bool {
        false
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn read_preface<T: AsyncRead + Unpin>(mut io: T, metrics: &Arc<ServerMetrics>) -> io::Result<Rewind<T>> {
    let mut got = [0u8; 24];
    io.read_exact(&mut got).await?;
    if &got != PREFACE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/2 connection preface"));
    }
    Ok(Rewind { prefix: Some(PREFACE), inner: io, scan: FrameScan::default(), metrics: metrics.clone() })
}

/// TLS (on TCP when configured) and the preface within the handshake timeout, then HTTP/2.
async fn serve_connection<L: Accept>(io: L::Io, shared: &Arc<Shared>) {
    match (&shared.tls, L::TLS) {
        (Some(acceptor), true) => {
            let handshake = async {
                let tls = acceptor.accept(io).await?;
                read_preface(tls, &shared.metrics).await
            };
            serve_after(handshake, shared).await
        }
        _ => serve_after(read_preface(io, &shared.metrics), shared).await,
    }
}

/// HTTP/2 on the connection `handshake` yields, unless it fails or outlasts the handshake
/// timeout (counted as a failed handshake) or the server stops first.
async fn serve_after<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    handshake: impl Future<Output = io::Result<T>>,
    shared: &Arc<Shared>,
) {
    let mut stop = shared.stop.clone();
    let io = tokio::select! {
        r = handshake => r.ok(),
        _ = tokio::time::sleep(shared.handshake_timeout) => None,
        _ = stop.wait_for(|s| *s) => return,
    };
    match io {
        Some(io) => serve_http2(io, shared).await,
        None => {
            shared.metrics.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Per-connection call tracking: calls whose handler is running, and when the last ended.
struct ConnState {
    active: AtomicUsize,
    last_active_ms: AtomicU64,
    quiet: Notify,
}

struct ActiveCall {
    state: Arc<ConnState>,
    epoch: Instant,
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.state.last_active_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Release);
        if self.state.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.quiet.notify_one();
        }
    }
}

#[derive(Clone)]
struct ConnService {
    shared: Arc<Shared>,
    state: Arc<ConnState>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = hyper::Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.state.active.fetch_add(1, Ordering::AcqRel);
        let shared = self.shared.clone();
        let active = ActiveCall { state: self.state.clone(), epoch: shared.epoch };
        Box::pin(async move {
            let answer = shared.service.handle(req, shared.stop.clone()).await;
            drop(active);
            Ok(answer)
        })
    }
}

/// How long a closing connection keeps being driven after its last call answered, so the
/// answer and the GOAWAY are written before the socket closes.
const FLUSH_GRACE: Duration = Duration::from_millis(20);

async fn serve_http2<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: T, shared: &Arc<Shared>) {
    let state =
        Arc::new(ConnState { active: AtomicUsize::new(0), last_active_ms: AtomicU64::new(0), quiet: Notify::new() });
    state.last_active_ms.store(shared.epoch.elapsed().as_millis() as u64, Ordering::Release);
    let svc = ConnService { shared: shared.clone(), state: state.clone() };
    let conn = shared.http2.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut stop = shared.stop.clone();
    let mut closing = false;
    let idle = shared.idle_timeout;
    let far = Duration::from_secs(86_400 * 365);
    let idle_timer = tokio::time::sleep(idle.unwrap_or(far));
    tokio::pin!(idle_timer);
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.wait_for(|s| *s), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut idle_timer, if !closing && idle.is_some() => {
                let idle = idle.unwrap_or(far);
                let last = Duration::from_millis(state.last_active_ms.load(Ordering::Acquire));
                let now = shared.epoch.elapsed();
                if state.active.load(Ordering::Acquire) == 0 && now >= last + idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    let next = if state.active.load(Ordering::Acquire) == 0 { last + idle } else { now + idle };
                    idle_timer.as_mut().reset(tokio::time::Instant::from_std(shared.epoch + next));
                }
            }
            _ = state.quiet.notified(), if closing => {}
        }
        if closing && state.active.load(Ordering::Acquire) == 0 {
            let _ = tokio::time::timeout(FLUSH_GRACE, conn.as_mut()).await;
            return;
        }
    }
}

impl Server {
    /// The runtime (shared with the service).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Open connections now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }

    /// The exposition `--metrics-listen` serves: the server's metrics (`coprocess_grpc_*`)
    /// followed by the library's (`coprocess_*`), Prometheus text format 0.0.4.
    pub fn metrics_text(&self) -> String {
        self.scrape.render()
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

    /// Resolves when the server has been told to stop.
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Graceful shutdown: report NOT_SERVING, stop accepting, close idle and stalled
    /// connections at once, let running calls finish (up to the shutdown timeout), remove the
    /// unix socket, flush queued webhook events.
    pub async fn shutdown(self) -> Result<(), String> {
        self.logger.info("shutting down", &[]);
        self.health.set_service_status(SERVICE_NAME, tonic_health::ServingStatus::NotServing).await;
        self.health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        loop {
            let notified = self.shared.all_closed.notified();
            if self.shared.open.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.logger.warn(
                    "shutdown timeout reached with calls running",
                    &[("connections", Value::from(self.shared.open.load(Ordering::Acquire)))],
                );
                break;
            }
        }
        if let Some(path) = &self.unix {
            let _ = std::fs::remove_file(path);
        }
        let host = self.host.clone();
        let _ = tokio::task::spawn_blocking(move || host.events().close(Duration::from_secs(5))).await;
        self.logger.info("stopped", &[]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_leaves_a_reserve() {
        assert_eq!(auto_max_connections(1024, 32), 1024 - 96);
        assert_eq!(auto_max_connections(150, 32), 75, "too small for the reserve: half");
        assert_eq!(auto_max_connections(1, 32), 1);
        assert!(open_file_limit() > 0);
    }
}
