//! `--metrics-listen`: `GET /metrics` over HTTP/1.1, the Prometheus text format 0.0.4.
//!
//! Kept apart from the gRPC listeners so that no number of scrapes can take anything from
//! the calls: one thread of its own running a single-threaded async runtime (not the gRPC
//! async workers), its own connection count (not `--max-connections`), and fixed bounds:
//! - at most [`MAX_CONNECTIONS`] connections; while they are open the listener is not
//!   accepting, so more wait in the kernel's listen backlog (costing the process nothing)
//!   until one closes;
//! - a request's headers within [`HEADER_TIMEOUT`] (also the most a kept-alive connection
//!   waits for its next request), at most 8 KiB of them; a connection lives at most
//!   [`CONNECTION_LIFETIME`], then it is closed (Prometheus reconnects for its next scrape);
//! - at most one exposition rendered per [`MIN_RENDER_INTERVAL`]: a scrape sooner waits for
//!   it, so a flood of scrapes costs at most 10 renders a second;
//! - `GET`/`HEAD /metrics` only: another path is 404, another method 405.

use crate::log::Logger;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use serde_json::Value;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// A request's headers must arrive within this (and the next request of a kept-alive connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed this long after it was accepted.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// The shortest time between two renders of the exposition.
pub const MIN_RENDER_INTERVAL: Duration = Duration::from_millis(100);

/// The Content-Type of the Prometheus text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What renders the exposition.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `listener` on a thread of its own until `stop` turns true.
pub fn start(
    listener: std::net::TcpListener,
    render: Render,
    stop: watch::Receiver<bool>,
    logger: Logger,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("coprocess-metrics".into()).spawn(move || {
        runtime.block_on(serve(listener, render, stop, logger));
    })
}

struct State {
    render: Render,
    /// When the last render may be followed by the next.
    next_render: Mutex<Instant>,
    open: AtomicUsize,
    freed: Notify,
}

async fn serve(listener: std::net::TcpListener, render: Render, mut stop: watch::Receiver<bool>, logger: Logger) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            logger.error("metrics listener failed", &[("error", Value::from(e.to_string()))]);
            return;
        }
    };
    let state = Arc::new(State {
        render,
        next_render: Mutex::new(Instant::now()),
        open: AtomicUsize::new(0),
        freed: Notify::new(),
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(8192).keep_alive(true);
    loop {
        // At the limit: accept nothing until a connection closes.
        loop {
            let freed = state.freed.notified();
            if state.open.load(Ordering::Relaxed) < MAX_CONNECTIONS {
                break;
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = freed => {}
            }
        }
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(_) => {
                // Out of descriptors or another accept error: try again a little later.
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        state.open.fetch_add(1, Ordering::Relaxed);
        let (state, http1, mut stop) = (state.clone(), http1.clone(), stop.clone());
        tokio::spawn(async move {
            let svc_state = state.clone();
            let svc = hyper::service::service_fn(move |req| answer(svc_state.clone(), req));
            let conn = http1.serve_connection(TokioIo::new(tcp), svc);
            tokio::select! {
                _ = conn => {}
                _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            state.open.fetch_sub(1, Ordering::Relaxed);
            state.freed.notify_one();
        });
    }
}

fn plain(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn answer(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD only\n");
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    // Take the next render slot (concurrent scrapes queue for theirs).
    loop {
        let at = {
            let mut next = state.next_render.lock();
            let now = Instant::now();
            if *next <= now {
                *next = now + MIN_RENDER_INTERVAL;
                break;
            }
            *next
        };
        tokio::time::sleep_until(at.into()).await;
    }
    let text = (state.render)();
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(CONTENT_TYPE));
    Ok(r)
}
