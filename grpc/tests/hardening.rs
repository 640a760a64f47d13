//! The server's limits under the failures they exist for, against the real binary as a child
//! process over real sockets (and a real redis-server): a hung Redis, stalled large requests,
//! file-descriptor exhaustion, idle and slow connections, shutdown with idle and stalled
//! connections, and requests that are not strict gRPC. Each test prints a `FIGURES` line with
//! what it measured. `COPROCESS_GRPC_BIN=/path/to/coprocess-grpc` runs them against another
//! build.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const DISPATCH: &str = "/coprocess.Dispatcher/Dispatch";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn inject_object() -> Vec<u8> {
    coprocess::testing::ObjectBuilder::new(coprocess::HookType::Pre, "InjectHeaders").encode()
}

fn injected(answer: &[u8]) -> bool {
    use prost::Message as _;
    coprocess::testing::set_header(&coprocess::Object::decode(answer).unwrap(), "X-Added") == Some("yes")
}

fn store_config() -> serde_json::Value {
    let mut c = json!({
        "InjectHeaders": {"add": {"X-Added": "yes"}},
        "HMACSignatureAuth": {"keys": {}, "store_prefix": "hmac-", "clock_skew_ms": 0, "session": {"rate": 100, "per": 1}},
    });
    c.as_object_mut().unwrap().extend(reqhub_config().as_object().unwrap().clone());
    c
}

fn put_hmac_secret(redis: &Redis) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    redis::cmd("SET").arg("coprocess:hmac-k1").arg(HMAC_SECRET).query::<()>(&mut con).unwrap();
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Inject,
    Hmac,
    ReqHub,
}

struct Sample {
    kind: Kind,
    at: Duration,
    latency: Duration,
    /// -1 passed, 401/403/503 refused by the middleware, 0 an injected answer, -100 a gRPC error.
    verdict: i32,
}

/// Failure 1: a hung Redis (SIGSTOP for 3 s) under 80 clients, 72 of them using Redis (more
/// than a pool of blocking threads shared by every call would have). InjectHeaders never waits
/// on Redis and must stay fast; HMAC (secret from Redis) and ReqHub (nonce in Redis) must each be
/// answered within the Redis timeout plus a margin, fail closed while Redis hangs, and pass
/// again after it resumes; the failures must not log a line each.
#[test]
fn a_hung_redis_delays_only_the_calls_that_use_it() {
    let _one = exclusive();
    let Some(redis) = Redis::or_skip() else { return };
    put_hmac_secret(&redis);
    let dir = scratch("hang");
    let timeout_ms = 500u64;
    let srv = ServerProcess::start(
        &dir,
        &store_config(),
        &["--redis-url", &redis.url(), "--redis-timeout-ms", &timeout_ms.to_string()],
        None,
    );
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let (hang_from, hang_until) = (Duration::from_millis(1500), Duration::from_millis(4500));
    let end = Duration::from_millis(7500);
    let rt = runtime();
    rt.block_on(async {
        let start = Instant::now();
        let mut clients = Vec::new();
        for i in 0..80 {
            let kind = match i {
                0..8 => Kind::Inject,
                _ if i % 2 == 0 => Kind::Hmac,
                _ => Kind::ReqHub,
            };
            let mut c = tcp_client(srv.tcp).await;
            let samples = samples.clone();
            clients.push(tokio::spawn(async move {
                while start.elapsed() < end {
                    let bytes = match kind {
                        Kind::Inject => inject_object(),
                        Kind::Hmac => {
                            use prost::Message as _;
                            hmac_object(HMAC_SIGNATURE).encode_to_vec()
                        }
                        Kind::ReqHub => reqhub_object(),
                    };
                    let at = start.elapsed();
                    let t0 = Instant::now();
                    let r = dispatch(&mut c, bytes).await;
                    let latency = t0.elapsed();
                    let verdict = match (&r, kind) {
                        (Err(_), _) => -100,
                        (Ok(a), Kind::Inject) => {
                            if injected(a) {
                                0
                            } else {
                                -100
                            }
                        }
                        (Ok(a), _) => verdict(a).0,
                    };
                    samples.lock().unwrap().push(Sample { kind, at, latency, verdict });
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        tokio::time::sleep_until((start + hang_from).into()).await;
        redis.pause(true);
        tokio::time::sleep_until((start + hang_until).into()).await;
        redis.pause(false);
        for c in clients {
            c.await.unwrap();
        }
    });
    let samples = samples.lock().unwrap();
    let max = |k: Kind, f: &dyn Fn(&Sample) -> bool| {
        samples.iter().filter(|s| s.kind == k && f(s)).map(|s| s.latency).max().unwrap_or_default()
    };
    let count = |k: Kind, f: &dyn Fn(&Sample) -> bool| samples.iter().filter(|s| s.kind == k && f(s)).count();
    // Calls that started once the hang was under way and ended before Redis resumed.
    let in_hang =
        |s: &Sample| s.at >= hang_from + Duration::from_millis(timeout_ms + 100) && s.at + s.latency < hang_until;
    let before = |s: &Sample| s.at + s.latency < hang_from;
    let last_second = |s: &Sample| s.at >= end - Duration::from_secs(1);
    let error_lines = srv.lines.lock().unwrap().iter().filter(|l| l.contains("\"level\":\"error\"")).count();
    eprintln!(
        "FIGURES hang: calls {}, InjectHeaders max {:?}, HMAC max {:?}, ReqHub max {:?}, gRPC errors {}, \
         in the hang HMAC 401 {} / passed {}, ReqHub 503 {} / passed {}, last second passes HMAC {} ReqHub {}, \
         error log lines {}",
        samples.len(),
        max(Kind::Inject, &|_| true),
        max(Kind::Hmac, &|_| true),
        max(Kind::ReqHub, &|_| true),
        samples.iter().filter(|s| s.verdict == -100).count(),
        count(Kind::Hmac, &|s| in_hang(s) && s.verdict == 401),
        count(Kind::Hmac, &|s| in_hang(s) && s.verdict == -1),
        count(Kind::ReqHub, &|s| in_hang(s) && s.verdict == 503),
        count(Kind::ReqHub, &|s| in_hang(s) && s.verdict == -1),
        count(Kind::Hmac, &|s| last_second(s) && s.verdict == -1),
        count(Kind::ReqHub, &|s| last_second(s) && s.verdict == -1),
        error_lines,
    );
    assert_eq!(samples.iter().filter(|s| s.verdict == -100).count(), 0, "every call is answered");
    assert!(max(Kind::Inject, &|_| true) <= Duration::from_millis(250), "InjectHeaders waited behind Redis");
    let bound = Duration::from_millis(timeout_ms + 750);
    assert!(max(Kind::Hmac, &|_| true) <= bound, "an HMAC call took longer than the Redis timeout");
    assert!(max(Kind::ReqHub, &|_| true) <= bound, "a ReqHub call took longer than the Redis timeout");
    assert_eq!(count(Kind::Hmac, &|s| before(s) && s.verdict != -1), 0, "before the hang HMAC passes");
    assert_eq!(count(Kind::ReqHub, &|s| before(s) && s.verdict != -1), 0, "before the hang ReqHub passes");
    assert_eq!(count(Kind::Hmac, &|s| in_hang(s) && s.verdict == -1), 0, "HMAC fails closed");
    assert_eq!(count(Kind::ReqHub, &|s| in_hang(s) && s.verdict == -1), 0, "ReqHub fails closed");
    assert!(count(Kind::ReqHub, &|s| in_hang(s) && s.verdict == 503) > 0);
    assert!(count(Kind::Hmac, &|s| last_second(s) && s.verdict == -1) > 0, "HMAC recovered");
    assert!(count(Kind::ReqHub, &|s| last_second(s) && s.verdict == -1) > 0, "ReqHub recovered");
    assert!(error_lines <= 4, "{error_lines} error lines for one outage");
}

/// Failure 2: 50 streams on one connection each send 3.99 MB of a 4 MB message and stall.
/// The request memory budget (64 MiB by default) bounds what the server holds.
#[test]
fn stalled_large_requests_stay_within_the_memory_budget() {
    let _one = exclusive();
    let dir = scratch("stalled");
    let srv = ServerProcess::start(&dir, &json!({"InjectHeaders": {"add": {"X-Added": "yes"}}}), &[], None);
    static ZEROS: [u8; 65_536] = [0; 65_536];
    let rss_start = srv.rss_kb();
    let rt = runtime();
    let (peak, accepted, refused, small_call) = rt.block_on(async {
        let h2 = h2_connect(srv.tcp).await;
        let mut sent = Vec::new();
        type Answers = Arc<Mutex<Vec<(u16, Option<String>)>>>;
        let answered: Answers = Arc::default();
        let mut keep = Vec::new();
        for _ in 0..50 {
            let (tx, body) = ChannelBody::new();
            sent.push(body.sent.clone());
            let mut h = h2.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                if h.ready().await.is_err() {
                    return;
                }
                if let Ok(resp) = h.send_request(h2_request(DISPATCH, "application/grpc", body)).await {
                    let (http, code, _) = h2_outcome(resp).await;
                    answered.lock().unwrap().push((http, code));
                }
            });
            let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
            keep.push(hold_tx);
            tokio::spawn(async move {
                let mut prefix = vec![0u8];
                prefix.extend_from_slice(&4_000_000u32.to_be_bytes());
                if tx.send(prefix.into()).await.is_err() {
                    return;
                }
                let mut left = 3_990_000usize;
                while left > 0 {
                    let n = left.min(ZEROS.len());
                    if tx.send(Bytes::from_static(&ZEROS[..n])).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                // Stall with the body open.
                let _ = hold_rx.await;
                drop(tx);
            });
        }
        let total = || sent.iter().map(|s| s.load(Ordering::Relaxed)).sum::<usize>();
        let mut peak = 0;
        let mut last = (0usize, Instant::now());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(srv.rss_kb());
            let t = total();
            if t != last.0 {
                last = (t, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(1500) {
                break;
            }
        }
        // The server still answers a small call meanwhile.
        let mut c = tcp_client(srv.tcp).await;
        let t0 = Instant::now();
        let ok = injected(&dispatch(&mut c, inject_object()).await.unwrap());
        let small_call = (ok, t0.elapsed());
        peak = peak.max(srv.rss_kb());
        let refused = answered.lock().unwrap().iter().filter(|(_, c)| c.as_deref() == Some("8")).count();
        drop(keep);
        (peak, total(), refused, small_call)
    });
    eprintln!(
        "FIGURES stalled: RSS at start {} KiB, peak {} KiB, request bytes taken by the server {}, \
         streams refused RESOURCE_EXHAUSTED {}, small call meanwhile {:?}",
        rss_start, peak, accepted, refused, small_call
    );
    assert!(small_call.0, "the small call was answered");
    assert!(peak <= 128 * 1024, "RSS peaked at {peak} KiB with 50 stalled 4 MB requests");
}

/// `n` connections (those the kernel completes within a second each), with the HTTP/2
/// preface and SETTINGS sent when `preface`.
fn stalled_connections(addr: std::net::SocketAddr, n: usize, preface: bool) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            if preface {
                let _ = s.write_all(&[PREFACE, SETTINGS].concat());
            }
            Some(s)
        })
        .collect()
}

/// Failure 3: with RLIMIT_NOFILE 256 and 400 idle connections held open, the accept loop must
/// not spin (the process's CPU time stays low) and a new client is answered once the held
/// connections are gone: with the default connection limit (below the descriptor limit), and
/// with a limit above it, where accept itself fails with EMFILE.
fn out_of_file_descriptors(args: &[&str], label: &str) {
    let dir = scratch("fds");
    let srv = ServerProcess::start(&dir, &json!({"InjectHeaders": {"add": {"X-Added": "yes"}}}), args, Some(256));
    let held = stalled_connections(srv.tcp, 400, true);
    let connected = held.len();
    std::thread::sleep(Duration::from_millis(500));
    let (t0, at) = (srv.cpu_ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let ticks = srv.cpu_ticks() - t0;
    let wall = at.elapsed();
    let rt = runtime();
    let while_held = rt.block_on(async {
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", srv.tcp)).unwrap().connect().await;
            match ch {
                Ok(ch) => dispatch(&mut Client::new(ch), inject_object()).await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        (r.map(|r| r.is_ok()).unwrap_or(false), t.elapsed())
    });
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let after = rt.block_on(async {
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = tcp_client(srv.tcp).await;
            dispatch(&mut c, inject_object()).await
        })
        .await;
        (matches!(r, Ok(Ok(ref a)) if injected(a)), t.elapsed())
    });
    eprintln!(
        "FIGURES fds ({label}): CPU {ticks} ticks in {wall:?} with {connected} connections held (limit 256 fds), \
         a new client while held: answered {} after {:?}; after they closed: answered {} after {:?}",
        while_held.0, while_held.1, after.0, after.1
    );
    assert!(ticks <= 40, "the server used {ticks} ticks of CPU in {wall:?} while idle");
    assert!(while_held.1 < Duration::from_secs(3), "a new client hung while the limit was reached");
    assert!(after.0, "a new client is answered once descriptors are free ({:?})", after.1);
}

#[test]
fn out_of_file_descriptors_the_accept_loop_stays_idle() {
    let _one = exclusive();
    out_of_file_descriptors(&[], "default connection limit");
}

#[test]
fn out_of_file_descriptors_accept_errors_back_off() {
    let _one = exclusive();
    out_of_file_descriptors(&["--max-connections", "100000"], "connection limit above the descriptor limit");
}

/// The server's first SETTINGS frame, as (identifier, value) pairs.
fn server_settings(addr: std::net::SocketAddr) -> Vec<(u16, u32)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[PREFACE, SETTINGS].concat()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        if head[3] == 4 && head[4] & 1 == 0 {
            return payload
                .chunks(6)
                .map(|c| (u16::from_be_bytes([c[0], c[1]]), u32::from_be_bytes([c[2], c[3], c[4], c[5]])))
                .collect();
        }
    }
}

/// Failure 2's first half: the stream limit is advertised in SETTINGS (256 by default).
#[test]
fn the_stream_limit_is_advertised() {
    let _one = exclusive();
    let dir = scratch("settings");
    let srv = ServerProcess::start(&dir, &json!({}), &[], None);
    let settings = server_settings(srv.tcp);
    eprintln!("FIGURES settings: {settings:?}");
    assert!(settings.contains(&(3, 256)), "SETTINGS_MAX_CONCURRENT_STREAMS 256 in {settings:?}");
}

/// With a hung Redis, a pool of 2 threads and a queue of 2: 4 store calls wait their timeout,
/// the others are refused at once with UNAVAILABLE, and InjectHeaders is unaffected.
#[test]
fn a_full_blocking_pool_refuses_at_once() {
    let _one = exclusive();
    let Some(redis) = Redis::or_skip() else { return };
    put_hmac_secret(&redis);
    let dir = scratch("pool");
    let srv = ServerProcess::start(
        &dir,
        &store_config(),
        &[
            "--redis-url",
            &redis.url(),
            "--redis-timeout-ms",
            "1000",
            "--blocking-threads",
            "2",
            "--blocking-queue",
            "2",
        ],
        None,
    );
    let rt = runtime();
    let (outcomes, inject) = rt.block_on(async {
        use prost::Message as _;
        let mut clients = Vec::new();
        for _ in 0..10 {
            clients.push(tcp_client(srv.tcp).await);
        }
        let mut c = tcp_client(srv.tcp).await;
        redis.pause(true);
        let calls: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    let t = Instant::now();
                    let r = dispatch(&mut c, hmac_object(HMAC_SIGNATURE).encode_to_vec()).await;
                    (r.map(|a| verdict(&a).0).map_err(|s| s.code()), t.elapsed())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        let inject = (injected(&dispatch(&mut c, inject_object()).await.unwrap()), t.elapsed());
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.unwrap());
        }
        (outcomes, inject)
    });
    redis.pause(false);
    let waited: Vec<_> = outcomes.iter().filter(|o| o.0 == Ok(401)).collect();
    let refused: Vec<_> = outcomes.iter().filter(|o| o.0 == Err(tonic::Code::Unavailable)).collect();
    eprintln!(
        "FIGURES pool: {} waited (401) up to {:?}, {} refused UNAVAILABLE up to {:?}, InjectHeaders meanwhile {:?}",
        waited.len(),
        waited.iter().map(|o| o.1).max(),
        refused.len(),
        refused.iter().map(|o| o.1).max(),
        inject
    );
    assert_eq!(waited.len() + refused.len(), 10, "{outcomes:?}");
    assert!(waited.len() <= 4, "2 threads and 2 queued: {outcomes:?}");
    assert!(refused.iter().all(|o| o.1 <= Duration::from_millis(250)), "refusals are prompt: {outcomes:?}");
    assert!(inject.0 && inject.1 <= Duration::from_millis(250), "{inject:?}");
}

/// When the peer closes `s` (read gives 0 or an error), within `limit`; None if still open.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 4096];
    while t.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(t.elapsed()),
        }
    }
    None
}

/// Failure 4: silent TCP, a preface trickled at one byte per 100 ms, an idle HTTP/2
/// connection and a stalled request body are each ended by their timeout.
#[test]
fn idle_and_slow_connections_are_closed() {
    let _one = exclusive();
    let dir = scratch("idle");
    let srv = ServerProcess::start(
        &dir,
        &json!({"InjectHeaders": {"add": {"X-Added": "yes"}}}),
        &["--handshake-timeout-ms", "500", "--idle-timeout-ms", "1000", "--request-read-timeout-ms", "1000"],
        None,
    );
    let limit = Duration::from_secs(5);
    let mut silent = TcpStream::connect(srv.tcp).unwrap();
    let silent_closed = closed_within(&mut silent, limit);

    let mut trickle = TcpStream::connect(srv.tcp).unwrap();
    trickle.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let t = Instant::now();
    let mut trickle_closed = None;
    for (i, b) in PREFACE.iter().cycle().enumerate() {
        if t.elapsed() > limit {
            break;
        }
        if i < PREFACE.len() && trickle.write_all(&[*b]).is_err() {
            trickle_closed = Some(t.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match trickle.read(&mut buf) {
            Ok(0) => {
                trickle_closed = Some(t.elapsed());
                break;
            }
            Err(e) if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                trickle_closed = Some(t.elapsed());
                break;
            }
            _ => {}
        }
    }

    let rt = runtime();
    let (idle_closed, stalled) = rt.block_on(async {
        // An HTTP/2 connection that made one call, then nothing.
        let tcp = tokio::net::TcpStream::connect(srv.tcp).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, ChannelBody>(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let (_, code, _) = h2_call(&mut send, DISPATCH, "application/grpc", vec![grpc_frame(&inject_object())]).await;
        assert_eq!(code.as_deref(), Some("0"));
        let t = Instant::now();
        let idle_closed = tokio::time::timeout(limit, conn).await.ok().map(|_| t.elapsed());

        // A request whose body stops after 100 of 1000 bytes.
        let mut h2 = h2_connect(srv.tcp).await;
        let (tx, body) = ChannelBody::new();
        let mut partial = vec![0u8];
        partial.extend_from_slice(&1000u32.to_be_bytes());
        partial.extend_from_slice(&[0u8; 100]);
        tx.send(partial.into()).await.unwrap();
        let t = Instant::now();
        h2.ready().await.unwrap();
        let outcome = tokio::time::timeout(limit, async {
            let resp = h2.send_request(h2_request(DISPATCH, "application/grpc", body)).await.unwrap();
            h2_outcome(resp).await
        })
        .await;
        drop(tx);
        (idle_closed, outcome.ok().map(|o| (o.1, t.elapsed())))
    });
    eprintln!(
        "FIGURES idle: silent TCP closed after {silent_closed:?}, trickled preface after {trickle_closed:?}, \
         idle HTTP/2 after {idle_closed:?}, stalled body answered {stalled:?} (None: still open after {limit:?})"
    );
    let within = |d: Option<Duration>, lo: u64, hi: u64| {
        d.is_some_and(|d| d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi))
    };
    assert!(within(silent_closed, 400, 2500), "silent connection: {silent_closed:?}");
    assert!(within(trickle_closed, 400, 2500), "trickled preface: {trickle_closed:?}");
    assert!(within(idle_closed, 900, 3500), "idle HTTP/2 connection: {idle_closed:?}");
    let (code, took) = stalled.expect("the stalled request was answered");
    assert_eq!(code.as_deref(), Some("4"), "DEADLINE_EXCEEDED");
    assert!(took >= Duration::from_millis(900) && took <= Duration::from_millis(3500), "{took:?}");

    // Keepalive: a peer past the preface that never answers PINGs, with no idle timeout.
    let srv = ServerProcess::start(
        &dir,
        &json!({}),
        &["--idle-timeout-ms", "0", "--keepalive-interval-ms", "300", "--keepalive-timeout-ms", "300"],
        None,
    );
    let mut mute = stalled_connections(srv.tcp, 1, true).pop().unwrap();
    let mute_closed = closed_within(&mut mute, limit);
    eprintln!("FIGURES keepalive: a peer that never answers PINGs closed after {mute_closed:?}");
    assert!(within(mute_closed, 500, 3000), "unanswered keepalive: {mute_closed:?}");
}

/// Failure 5: SIGTERM with 50 idle raw connections (half of them past the preface), one idle
/// gRPC connection and one stalled request, and no call running: exit 0 at once.
#[test]
fn sigterm_closes_idle_and_stalled_connections_at_once() {
    let _one = exclusive();
    let dir = scratch("sigterm");
    let mut srv = ServerProcess::start(&dir, &json!({"InjectHeaders": {"add": {"X-Added": "yes"}}}), &[], None);
    let mut raw = stalled_connections(srv.tcp, 25, false);
    raw.extend(stalled_connections(srv.tcp, 25, true));
    let rt = runtime();
    let (took, status) = rt.block_on(async {
        let mut c = tcp_client(srv.tcp).await;
        assert!(injected(&dispatch(&mut c, inject_object()).await.unwrap()));
        let mut h2 = h2_connect(srv.tcp).await;
        let (tx, body) = ChannelBody::new();
        let mut partial = vec![0u8];
        partial.extend_from_slice(&1000u32.to_be_bytes());
        partial.extend_from_slice(&[0u8; 100]);
        tx.send(partial.into()).await.unwrap();
        h2.ready().await.unwrap();
        let stalled = tokio::spawn(h2.send_request(h2_request(DISPATCH, "application/grpc", body)));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        srv.signal(libc::SIGTERM);
        let status = tokio::task::block_in_place(|| srv.wait_exit(Duration::from_secs(12)));
        let took = t.elapsed();
        drop((tx, stalled, c));
        (took, status)
    });
    eprintln!("FIGURES sigterm idle: exit {status:?} after {took:?} with 50 raw, 1 idle gRPC, 1 stalled stream");
    assert!(status.is_some_and(|s| s.success()), "exit status {status:?}");
    assert!(took <= Duration::from_secs(2), "SIGTERM took {took:?}");
    drop(raw);
}

/// SIGTERM still waits for a call that is running: an HMAC call waiting on a hung Redis is
/// answered (401, fail closed) and the server exits after it.
#[test]
fn sigterm_waits_for_running_calls() {
    let _one = exclusive();
    let Some(redis) = Redis::or_skip() else { return };
    put_hmac_secret(&redis);
    let dir = scratch("sigterm-running");
    let mut srv =
        ServerProcess::start(&dir, &store_config(), &["--redis-url", &redis.url(), "--redis-timeout-ms", "1500"], None);
    let rt = runtime();
    let (call, exit_after, status) = rt.block_on(async {
        use prost::Message as _;
        let mut c = tcp_client(srv.tcp).await;
        redis.pause(true);
        let t = Instant::now();
        let call = tokio::spawn(async move {
            let r = dispatch(&mut c, hmac_object(HMAC_SIGNATURE).encode_to_vec()).await;
            (r.map(|a| verdict(&a).0), t.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        srv.signal(libc::SIGTERM);
        let status = tokio::task::block_in_place(|| srv.wait_exit(Duration::from_secs(12)));
        let exit_after = t.elapsed();
        (call.await.unwrap(), exit_after, status)
    });
    redis.pause(false);
    eprintln!("FIGURES sigterm running: call {call:?}, exit {status:?} after {exit_after:?}");
    assert_eq!(call.0.as_ref().ok(), Some(&401), "the running call was answered, failing closed");
    assert!(status.is_some_and(|s| s.success()));
    assert!(exit_after >= call.1, "exited before the running call answered");
    assert!(exit_after <= Duration::from_millis(1500 + 1500), "{exit_after:?}");
}

/// Failure 6: only application/grpc content types; a unary call with other than one message
/// is an error; unknown methods and non-POST requests are refused.
#[test]
fn requests_that_are_not_strict_grpc_are_refused() {
    let _one = exclusive();
    let dir = scratch("strict");
    let srv = ServerProcess::start(&dir, &json!({"InjectHeaders": {"add": {"X-Added": "yes"}}}), &[], None);
    let rt = runtime();
    let results = rt.block_on(async {
        let mut h2 = h2_connect(srv.tcp).await;
        let one = grpc_frame(&inject_object());
        let two = Bytes::from([one.to_vec(), one.to_vec()].concat());
        let cases: Vec<(&str, &str, &str, Vec<Bytes>)> = vec![
            ("valid", DISPATCH, "application/grpc", vec![one.clone()]),
            ("valid +proto", DISPATCH, "application/grpc+proto", vec![one.clone()]),
            ("json content type", DISPATCH, "application/json", vec![one.clone()]),
            ("grpc+json content type", DISPATCH, "application/grpc+json", vec![one.clone()]),
            ("two messages in one frame", DISPATCH, "application/grpc", vec![two]),
            ("two messages in two frames", DISPATCH, "application/grpc", vec![one.clone(), one.clone()]),
            ("no message", DISPATCH, "application/grpc", vec![]),
            ("cut short", DISPATCH, "application/grpc", vec![one.slice(..one.len() - 1)]),
            ("unknown method", "/coprocess.Dispatcher/Nope", "application/grpc", vec![one.clone()]),
        ];
        let mut out = Vec::new();
        for (label, path, ct, chunks) in cases {
            out.push((label, h2_call(&mut h2, path, ct, chunks).await));
        }
        out
    });
    for (label, r) in &results {
        eprintln!("FIGURES strict: {label}: HTTP {} grpc-status {:?} {:?}", r.0, r.1, r.2);
    }
    let get = |label: &str| results.iter().find(|(l, _)| *l == label).unwrap().1.clone();
    assert_eq!((get("valid").0, get("valid").1.as_deref()), (200, Some("0")));
    assert_eq!((get("valid +proto").0, get("valid +proto").1.as_deref()), (200, Some("0")));
    assert_eq!(get("json content type").0, 415);
    assert_eq!(get("grpc+json content type").0, 415);
    for label in ["two messages in one frame", "two messages in two frames", "no message", "cut short"] {
        assert_eq!((get(label).0, get(label).1.as_deref()), (200, Some("13")), "{label}: INTERNAL");
    }
    assert_eq!(get("unknown method").1.as_deref(), Some("12"), "UNIMPLEMENTED");
}
