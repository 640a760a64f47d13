//! Helpers shared by the integration tests and the benchmark: clients over TCP and unix
//! sockets, Objects, a scratch directory.

#![allow(dead_code)]

use coprocess_grpc::codec::RawObject;
use coprocess_grpc::pb::dispatcher_client::DispatcherClient;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Uri};

pub type Client = DispatcherClient<Channel>;

/// A client over TCP.
pub async fn tcp_client(addr: std::net::SocketAddr) -> Client {
    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().tcp_nodelay(true).connect().await.unwrap();
    DispatcherClient::new(channel).max_decoding_message_size(64 << 20)
}

/// A channel over a unix socket (the URI is a placeholder: the connector ignores it).
pub async fn unix_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

/// A client over a unix socket.
pub async fn unix_client(path: &Path) -> Client {
    DispatcherClient::new(unix_channel(path).await).max_decoding_message_size(64 << 20)
}

/// Dispatch encoded bytes.
pub async fn dispatch(client: &mut Client, bytes: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    client.dispatch(RawObject::from(bytes)).await.map(|r| r.into_inner().0.to_vec())
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coprocess-grpc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The HMAC reference vector of docs/builtins/hmac-signature-auth.md (key `c2VjcmV0`,
/// hmac-sha512 over `date: <DATE>`).
pub const HMAC_DATE: &str = "Fri, 03 May 2024 12:00:42 GMT";
pub const HMAC_SECRET: &str = "c2VjcmV0";
pub const HMAC_SIGNATURE: &str =
    "9kwBK/yrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp+A==";

/// The HMAC-auth Object the benchmark and tests send (CustomKeyCheck, the reference vector).
pub fn hmac_object(signature: &str) -> coprocess::Object {
    coprocess::testing::ObjectBuilder::new(coprocess::HookType::CustomKeyCheck, "HMACSignatureAuth")
        .method_url("GET", "/v1/items", "/v1/items")
        .header("Date", HMAC_DATE)
        .header("Authorization", &format!("Signature keyId=\"k1\",algorithm=\"hmac-sha512\",signature=\"{signature}\""))
        .header("User-Agent", "bench/1.0")
        .header("Accept", "application/json")
        .build()
}

/// Global configuration for the HMAC object: key `k1`, Date check off (the vector is fixed).
pub fn hmac_config() -> serde_json::Value {
    serde_json::json!({"HMACSignatureAuth": {"keys": {"k1": HMAC_SECRET}, "clock_skew_ms": 0, "session": {"rate": 100, "per": 1}}})
}

// ---------------------------------------------------------------------------------------------
// The real binary as a child process, and redis-server.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The server binary: `COPROCESS_GRPC_BIN` when set (to run these tests against another
/// build), else the one cargo built.
pub fn server_binary() -> String {
    std::env::var("COPROCESS_GRPC_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_coprocess-grpc").to_owned())
}

/// A running `coprocess-grpc` child; killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub tcp: std::net::SocketAddr,
    /// The metrics address (`--metrics-listen`), from the serving line.
    pub metrics: Option<std::net::SocketAddr>,
    pub pid: u32,
    /// Every stderr line after "serving".
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Start the binary with `args` (plus `--listen 127.0.0.1:0`) and the middleware config
    /// `config` written to `dir`; `nofile` sets its RLIMIT_NOFILE (soft and hard).
    pub fn start(dir: &Path, config: &serde_json::Value, args: &[&str], nofile: Option<u64>) -> Self {
        let file = dir.join(format!("server-{}.json", std::process::id() ^ rand_u32()));
        std::fs::write(&file, config.to_string()).unwrap();
        let mut cmd = Command::new(server_binary());
        cmd.args(["--listen", "127.0.0.1:0", "--middleware-config"])
            .arg(&file)
            .args(args)
            .env("COPROCESS_CONFIG", "")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit { rlim_cur: n, rlim_max: n };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start coprocess-grpc");
        let pid = child.id();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (tcp, metrics) = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("coprocess-grpc exited before serving: {:?}", child.wait()),
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if v["msg"] == "serving" {
                break (v["tcp"].as_str().unwrap().parse().unwrap(), v["metrics"].as_str().map(|a| a.parse().unwrap()));
            }
            eprintln!("server: {line}");
        };
        let kept = Arc::new(Mutex::new(Vec::new()));
        let sink = kept.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ServerProcess { child, tcp, metrics, pid, lines: kept }
    }

    fn proc_status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Resident memory in KiB.
    pub fn rss_kb(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    /// Threads.
    pub fn threads(&self) -> u64 {
        self.proc_status("Threads:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).unwrap().count()
    }

    /// utime + stime in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat(5), counted from the state (field 3) here.
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    /// Send a signal.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.pid as i32, sig);
        }
    }

    /// Wait up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Stderr lines (after "serving") that are JSON objects.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.lines.lock().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Stderr lines (after "serving") containing `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_u32() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed).wrapping_mul(2_654_435_761)
}

/// A redis-server child on a free loopback port; killed on drop.
pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Redis {
    /// Start one, or None when redis-server is not installed.
    pub fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        Redis::on(port)
    }

    /// Start one, or say the test is skipped (None) when redis-server is not installed.
    pub fn or_skip() -> Option<Redis> {
        let r = Redis::start();
        if r.is_none() {
            eprintln!("SKIPPED: redis-server is not installed (scripts/setup.sh installs it)");
        }
        r
    }

    /// Start one on `port`.
    pub fn on(port: u16) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Redis { child, port });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// SIGSTOP (hung) or SIGCONT.
    pub fn pause(&self, paused: bool) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, if paused { libc::SIGSTOP } else { libc::SIGCONT });
        }
    }

    /// Kill it (an outage); returns the port to restart on.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One at a time: the tests that measure time, memory or CPU of a child must not overlap.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ReqHub local-mode configuration the tests sign for (client key `cpk`).
pub fn reqhub_config() -> serde_json::Value {
    serde_json::json!({"ReqHubMerchant": {"mode": "local", "public_key": "mpk", "private_key": "msk", "api": "prod-1",
        "clients": {"cpk": {"private_key": "csk", "api": "prod-1"}}}})
}

/// A ReqHub Object signed now with a fresh nonce.
pub fn reqhub_object() -> Vec<u8> {
    use prost::Message as _;
    let h = coprocess::builtins::reqhub::client::SignedHeaders::client_now("cpk", "csk", "/pay").unwrap();
    let mut b = coprocess::testing::ObjectBuilder::new(coprocess::HookType::Pre, "ReqHubMerchant")
        .method_url("POST", "/pay", "/pay");
    for (k, v) in h.client_pairs() {
        b = b.header(k, v);
    }
    b.build().encode_to_vec()
}

/// (response code, error) of an answer; -1 when the request passes.
pub fn verdict(answer: &[u8]) -> (i32, String) {
    use prost::Message as _;
    let o = coprocess::Object::decode(answer).unwrap();
    let (code, error) = coprocess::testing::overrides(&o);
    (code, error.to_owned())
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/2 client (hyper), for requests a gRPC client would not send.

/// A request body fed from a channel; `sent` counts the bytes hyper has taken.
pub struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    pub sent: Arc<std::sync::atomic::AtomicUsize>,
}

impl ChannelBody {
    /// A body and the sender that feeds it (drop the sender to end the body).
    pub fn new() -> (tokio::sync::mpsc::Sender<bytes::Bytes>, ChannelBody) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, ChannelBody { rx, sent: Arc::default() })
    }
}

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        match self.rx.poll_recv(cx) {
            std::task::Poll::Ready(Some(b)) => {
                self.sent.fetch_add(b.len(), std::sync::atomic::Ordering::Relaxed);
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(b))))
            }
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

pub type H2 = hyper::client::conn::http2::SendRequest<ChannelBody>;

/// An HTTP/2 connection over TCP.
pub async fn h2_connect(addr: std::net::SocketAddr) -> H2 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// A POST to `path` with `content_type`.
pub fn h2_request(path: &str, content_type: &str, body: ChannelBody) -> http::Request<ChannelBody> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{path}"))
        .header("content-type", content_type)
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

/// A gRPC message frame.
pub fn grpc_frame(message: &[u8]) -> bytes::Bytes {
    let mut v = vec![0u8];
    v.extend_from_slice(&(message.len() as u32).to_be_bytes());
    v.extend_from_slice(message);
    v.into()
}

/// (HTTP status, grpc-status, grpc-message) of an answer, from its headers or trailers.
pub async fn h2_outcome(resp: http::Response<hyper::body::Incoming>) -> (u16, Option<String>, String) {
    use http_body_util::BodyExt as _;
    let status = resp.status().as_u16();
    let from = |h: &http::HeaderMap| {
        (
            h.get("grpc-status").map(|v| v.to_str().unwrap().to_owned()),
            h.get("grpc-message").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default(),
        )
    };
    let (mut code, mut message) = from(resp.headers());
    if code.is_none() {
        if let Ok(collected) = resp.into_body().collect().await {
            if let Some(t) = collected.trailers() {
                (code, message) = from(t);
            }
        }
    }
    (status, code, message)
}

/// Send a complete body of `chunks` and return the outcome.
pub async fn h2_call(
    h2: &mut H2,
    path: &str,
    content_type: &str,
    chunks: Vec<bytes::Bytes>,
) -> (u16, Option<String>, String) {
    let (tx, body) = ChannelBody::new();
    let req = h2_request(path, content_type, body);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    h2.ready().await.unwrap();
    let resp = h2.send_request(req).await.unwrap();
    h2_outcome(resp).await
}

// ---------------------------------------------------------------------------------------------
// The metrics endpoint: a raw HTTP/1.1 client and the text format.

/// One HTTP/1.1 request on a new connection (`Connection: close`): (status, headers, body).
pub fn http_get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The value of the sample `name` whose labels include every one of `labels` (`k="v"`).
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `promtool check metrics` on `text`; false (with a message) when promtool is not installed.
pub fn promtool_check(text: &str) -> bool {
    use std::io::Write as _;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIP promtool: not installed (Debian package prometheus)");
        return false;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}\n--- exposition:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[path = "../src/testhttp.rs"]
mod testhttp;
#[allow(unused_imports)]
pub use testhttp::accept_post;
