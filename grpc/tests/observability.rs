//! Metrics (`--metrics-listen`) and trace ids, against the release binary as a child process
//! (and one in-process server for events fired inline and on the pool): the exposition counts
//! what was sent and promtool accepts it, the endpoint's bounds hold under a flood of scrapes,
//! streams refused by h2 are counted, and the trace id of a call's `traceparent` metadata (or
//! of the Object's header) reaches the middleware's log lines, the server's lines about the
//! call and the events fired during it. Each test prints a `FIGURES` line.

mod common;

use common::*;
use coprocess::testing::ObjectBuilder;
use coprocess::{Blocking, Context, HookType, Middleware, MiddlewareError, Registry, Setup};
use coprocess_grpc::codec::RawObject;
use coprocess_grpc::metrics_server::{CONTENT_TYPE, HEADER_TIMEOUT, MAX_CONNECTIONS};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const HEADER_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const HEADER_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn config() -> Value {
    let mut c = json!({
        "InjectHeaders": {"add": {"X-Added": "yes"}},
        "StaticTokenAuth": {"header": "Authorization", "tokens": {"tok-1": {"rate": 5, "per": 1}}, "reject_code": 403},
        "LogEvent": {"level": "info"},
        "RelayEvent": {"event_name": "Relayed"},
    });
    c.as_object_mut().unwrap().extend(hmac_config().as_object().unwrap().clone());
    c
}

fn inject() -> Vec<u8> {
    ObjectBuilder::new(HookType::Pre, "InjectHeaders").encode()
}

fn injected(answer: &[u8]) -> bool {
    use prost::Message as _;
    coprocess::testing::set_header(&coprocess::Object::decode(answer).unwrap(), "X-Added") == Some("yes")
}

/// A Dispatch with `traceparent` metadata when given.
async fn traced(c: &mut Client, bytes: Vec<u8>, traceparent: Option<&str>) -> Result<Vec<u8>, tonic::Status> {
    let mut req = tonic::Request::new(RawObject::from(bytes));
    if let Some(tp) = traceparent {
        req.metadata_mut().insert("traceparent", tp.parse().unwrap());
    }
    c.dispatch(req).await.map(|r| r.into_inner().0.to_vec())
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, headers, body) = http_get(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    let ct = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
    assert_eq!(ct, Some(CONTENT_TYPE));
    body
}

/// A known number of passing, rejected and failing Dispatch calls, an event and a health
/// check: the server's `coprocess_grpc_calls_total` and the library's
/// `coprocess_dispatch_total` in the exposition count exactly those; promtool accepts it all.
#[test]
fn metrics_count_what_was_sent_and_promtool_accepts_them() {
    let _one = exclusive();
    let dir = scratch("metrics");
    let srv = ServerProcess::start(&dir, &config(), &["--metrics-listen", "127.0.0.1:0"], None);
    let addr = srv.metrics.expect("the serving line names the metrics address");
    let (passed, rejected, garbage, unknown) = (7, 5, 3, 2);
    runtime().block_on(async {
        let mut c = tcp_client(srv.tcp).await;
        for _ in 0..passed {
            dispatch(&mut c, inject()).await.unwrap();
        }
        let bad =
            ObjectBuilder::new(HookType::CustomKeyCheck, "StaticTokenAuth").header("Authorization", "nope").encode();
        for _ in 0..rejected {
            assert_eq!(verdict(&dispatch(&mut c, bad.clone()).await.unwrap()).0, 403);
        }
        for _ in 0..garbage {
            assert_eq!(
                dispatch(&mut c, vec![0xff, 0xff, 0xff]).await.unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
        for _ in 0..unknown {
            let nope = ObjectBuilder::new(HookType::Pre, "Nope").encode();
            assert_eq!(dispatch(&mut c, nope).await.unwrap_err().code(), tonic::Code::NotFound);
        }
        let event =
            json!({"message": {"Type": "QuotaExceeded", "Meta": {}, "TimeStamp": "t"}, "handler_name": "LogEvent"});
        c.dispatch_event(coprocess::proto::Event { payload: event.to_string() }).await.unwrap();
        let mut h2 = h2_connect(srv.tcp).await;
        let (_, code, _) =
            h2_call(&mut h2, "/grpc.health.v1.Health/Check", "application/grpc", vec![grpc_frame(&[])]).await;
        assert_eq!(code.as_deref(), Some("0"), "health: SERVING");
        let text = scrape(addr);
        let want: Vec<(&str, Vec<&str>, f64)> = vec![
            (
                "coprocess_dispatch_total",
                vec![r#"middleware="InjectHeaders""#, r#"hook="Pre""#, r#"outcome="passed""#],
                passed as f64,
            ),
            (
                "coprocess_dispatch_total",
                vec![r#"middleware="StaticTokenAuth""#, r#"hook="CustomKeyCheck""#, r#"outcome="rejected""#],
                rejected as f64,
            ),
            (
                "coprocess_dispatch_total",
                vec![r#"middleware="unregistered""#, r#"hook="Unknown""#, r#"outcome="error""#],
                garbage as f64,
            ),
            (
                "coprocess_dispatch_total",
                vec![r#"middleware="unregistered""#, r#"hook="Pre""#, r#"outcome="error""#],
                unknown as f64,
            ),
            ("coprocess_dispatch_duration_seconds_count", vec![r#"middleware="InjectHeaders""#], passed as f64),
            ("coprocess_event_total", vec![r#"handler="LogEvent""#, r#"outcome="ok""#], 1.0),
            ("coprocess_grpc_calls_total", vec![r#"method="Dispatch""#, r#"code="OK""#], (passed + rejected) as f64),
            ("coprocess_grpc_calls_total", vec![r#"method="Dispatch""#, r#"code="INVALID_ARGUMENT""#], garbage as f64),
            ("coprocess_grpc_calls_total", vec![r#"method="Dispatch""#, r#"code="NOT_FOUND""#], unknown as f64),
            ("coprocess_grpc_calls_total", vec![r#"method="DispatchEvent""#, r#"code="OK""#], 1.0),
            ("coprocess_grpc_calls_total", vec![r#"method="HealthCheck""#, r#"code="OK""#], 1.0),
            (
                "coprocess_grpc_call_duration_seconds_count",
                vec![r#"method="Dispatch""#],
                (passed + rejected + garbage + unknown) as f64,
            ),
            (
                "coprocess_grpc_call_duration_seconds_bucket",
                vec![r#"method="Dispatch""#, r#"le="+Inf""#],
                (passed + rejected + garbage + unknown) as f64,
            ),
            ("coprocess_grpc_connections_open", vec![], 2.0),
            ("coprocess_grpc_connections_accepted_total", vec![], 2.0),
            ("coprocess_grpc_pool_busy_threads", vec![], 0.0),
            ("coprocess_grpc_pool_queue_depth", vec![], 0.0),
            ("coprocess_grpc_pool_threads", vec![], 32.0),
            ("coprocess_grpc_request_memory_in_use_bytes", vec![], 0.0),
            ("coprocess_grpc_request_memory_limit_bytes", vec![], 67_108_864.0),
            ("coprocess_grpc_store_operations_total", vec![r#"op="get""#, r#"result="miss""#], 0.0),
        ];
        let mut wrong = Vec::new();
        for (name, labels, value) in &want {
            let got = metric(&text, name, labels);
            if got != Some(*value) {
                wrong.push(format!("{name}{labels:?} = {got:?}, want {value}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}\n--- exposition:\n{text}");
        for name in [
            "coprocess_grpc_os_threads",
            "coprocess_grpc_resident_memory_bytes",
            "coprocess_grpc_open_fds",
            "coprocess_grpc_max_fds",
        ] {
            assert!(metric(&text, name, &[]).is_some_and(|v| v > 0.0), "{name} in\n{text}");
        }
        // In clock ticks: a fresh process may not have used one yet.
        assert!(metric(&text, "coprocess_grpc_cpu_seconds_total", &[]).is_some_and(|v| v >= 0.0));
        assert!(!text.contains("coprocess_grpc_store_breaker_state"), "no breaker with the in-memory store");
        let checked = promtool_check(&text);
        // Only GET and HEAD /metrics.
        let (status, _, _) = http_get(addr, "GET", "/");
        assert_eq!(status, 404);
        let (status, headers, _) = http_get(addr, "POST", "/metrics");
        assert_eq!(status, 405);
        assert!(headers.iter().any(|(k, v)| k == "allow" && v == "GET, HEAD"), "{headers:?}");
        let (status, _, body) = http_get(addr, "HEAD", "/metrics");
        assert_eq!((status, body.as_str()), (200, ""));
        eprintln!(
            "FIGURES metrics: {} lines, {} bytes of exposition; counts as sent; promtool {}",
            text.lines().count(),
            text.len(),
            if checked { "accepts it" } else { "not installed" }
        );
    });
}

/// The endpoint's own bounds: while 4 connections are open a new one waits (it is not
/// accepted), idle ones are closed after the header timeout and the waiting one is answered
/// then; a flood of scrapes from many clients gets at most ten renders a second and little of
/// the server's CPU, while gRPC calls go on as before.
#[test]
fn scrapes_are_bounded_and_leave_calls_alone() {
    let _one = exclusive();
    let dir = scratch("scrape-bounds");
    let srv = ServerProcess::start(&dir, &config(), &["--metrics-listen", "127.0.0.1:0"], None);
    let addr = srv.metrics.unwrap();
    let rt = runtime();
    let mut client = rt.block_on(tcp_client(srv.tcp));

    // MAX_CONNECTIONS idle connections hold every slot (one of them kept alive after a
    // scrape, the others silent); a scrape on one more waits.
    let t0 = Instant::now();
    let mut held: Vec<TcpStream> = (1..MAX_CONNECTIONS).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200", "a kept-alive scrape");
    let mut rest = vec![0u8; 1 << 20];
    kept.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    while kept.read(&mut rest).is_ok_and(|n| n > 0) {}
    held.push(kept);
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(addr).unwrap();
    extra.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    extra.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
    assert!(extra.read(&mut [0u8; 64]).is_err(), "no answer while the slots are held");
    assert!(injected(&rt.block_on(dispatch(&mut client, inject())).unwrap()), "gRPC unaffected");
    // The idle ones are closed by the header timeout (the kept-alive one too: it applies to
    // the wait for a next request), and the waiting scrape is answered.
    for mut s in held {
        s.set_read_timeout(Some(HEADER_TIMEOUT + Duration::from_secs(3))).unwrap();
        assert_eq!(s.read(&mut [0u8; 64]).unwrap_or(usize::MAX), 0, "an idle connection is closed");
    }
    let idle_closed = t0.elapsed();
    assert!(idle_closed <= HEADER_TIMEOUT + Duration::from_secs(1), "idle connections closed after {idle_closed:?}");
    extra.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    extra.read_to_end(&mut answer).unwrap();
    let waited = t0.elapsed();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "the waiting scrape is answered");

    // Calls alone, for comparison.
    let alone = rt.block_on(calls_for(&mut client, Duration::from_secs(1)));

    // A flood: 8 scrapers in a loop for 2 s, while one client keeps calling.
    let ticks_before = srv.cpu_ticks();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = Instant::now();
    let scrapers: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut answered, mut refused) = (Vec::new(), 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(addr) else { continue };
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                    let mut body = Vec::new();
                    let _ = s.read_to_end(&mut body);
                    if body.starts_with(b"HTTP/1.1 200") {
                        answered.push(Instant::now());
                    } else {
                        refused += 1;
                    }
                }
                (answered, refused)
            })
        })
        .collect();
    let latencies = rt.block_on(calls_for(&mut client, Duration::from_secs(2)));
    let flood = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut refused) = (0, 0);
    for t in scrapers {
        let (answered, r) = t.join().unwrap();
        ok += answered.iter().filter(|&&at| at <= started + flood).count();
        refused += r;
    }
    let ticks = srv.cpu_ticks() - ticks_before;
    let summary = |l: &[Duration]| {
        format!(
            "{} calls, p50 {:?}, p99 {:?}, max {:?}",
            l.len(),
            l[l.len() / 2],
            l[l.len() * 99 / 100],
            l[l.len() - 1]
        )
    };
    eprintln!(
        "FIGURES scrape bounds: {MAX_CONNECTIONS} idle connections closed {idle_closed:?} after they opened, the scrape waiting behind them \
         answered after {waited:?}; calls alone for 1 s: {}; flood of 8 scrapers for {flood:?}: {ok} scrapes answered in it, {refused} not; \
         meanwhile {}; server CPU {ticks} ticks in the flood",
        summary(&alone),
        summary(&latencies),
    );
    // At most one render per 100 ms: the first at once, then one every 100 ms (and one more
    // for the scheduling of the threads).
    let most = 2.0 + flood.as_secs_f64() * 10.0;
    assert!(ok as f64 <= most, "{ok} renders in {flood:?}");
    assert!(ok >= 5, "scrapes were answered during the flood: {ok}");
    assert!(latencies.len() >= 50, "calls went on: {}", latencies.len());
}

/// InjectHeaders calls one after another for `time`: their latencies, sorted.
async fn calls_for(client: &mut Client, time: Duration) -> Vec<Duration> {
    let started = Instant::now();
    let mut latencies = Vec::new();
    while started.elapsed() < time {
        let t = Instant::now();
        assert!(injected(&dispatch(client, inject()).await.unwrap()));
        latencies.push(t.elapsed());
    }
    latencies.sort();
    latencies
}

/// With Redis: store operations by op and result, the breaker's state and openings, and the
/// pool's busy threads and queue while Redis hangs, as the exposition shows them.
#[test]
fn a_redis_hang_shows_in_the_store_pool_and_breaker_metrics() {
    use prost::Message as _;
    let _one = exclusive();
    let Some(redis) = Redis::or_skip() else { return };
    {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        redis::cmd("SET").arg("coprocess:hmac-k1").arg(HMAC_SECRET).query::<()>(&mut con).unwrap();
    }
    let dir = scratch("metrics-redis");
    let mut cfg = json!({"HMACSignatureAuth": {"keys": {}, "store_prefix": "hmac-", "clock_skew_ms": 0, "session": {"rate": 100, "per": 1}}});
    cfg.as_object_mut().unwrap().extend(reqhub_config().as_object().unwrap().clone());
    let args = [
        "--metrics-listen",
        "127.0.0.1:0",
        "--redis-url",
        &redis.url(),
        "--redis-timeout-ms",
        "1500",
        "--redis-breaker-failures",
        "3",
        "--redis-breaker-backoff-ms",
        "60000",
        "--blocking-threads",
        "2",
        "--blocking-queue",
        "2",
    ];
    let srv = ServerProcess::start(&dir, &cfg, &args, None);
    let addr = srv.metrics.unwrap();
    let hmac = hmac_object(HMAC_SIGNATURE).encode_to_vec();
    let rt = runtime();
    let (before, during, after) = rt.block_on(async {
        let mut c = tcp_client(srv.tcp).await;
        for _ in 0..3 {
            assert_eq!(verdict(&dispatch(&mut c, hmac.clone()).await.unwrap()).0, -1, "HMAC with the key in Redis");
        }
        let replayed = reqhub_object();
        assert_eq!(verdict(&dispatch(&mut c, replayed.clone()).await.unwrap()).0, -1);
        assert_eq!(verdict(&dispatch(&mut c, reqhub_object()).await.unwrap()).0, -1);
        assert_eq!(verdict(&dispatch(&mut c, replayed).await.unwrap()).0, 403, "the replay");
        let before = scrape(addr);
        // Redis hangs: 4 HMAC calls, 2 on the pool's threads and 2 in its queue; a fifth is refused.
        redis.pause(true);
        let mut calls = Vec::new();
        for _ in 0..4 {
            let mut c = tcp_client(srv.tcp).await;
            let bytes = hmac.clone();
            calls.push(tokio::spawn(async move { dispatch(&mut c, bytes).await }));
        }
        // Until the four are on the pool (well inside the Redis timeout), then the fifth.
        let mut during = String::new();
        let waiting = Instant::now();
        while waiting.elapsed() < Duration::from_millis(1200) {
            during = tokio::task::spawn_blocking(move || scrape(addr)).await.unwrap();
            let busy = metric(&during, "coprocess_grpc_pool_busy_threads", &[]);
            if busy == Some(2.0) && metric(&during, "coprocess_grpc_pool_queue_depth", &[]) == Some(2.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let fifth = dispatch(&mut c, hmac.clone()).await;
        for call in calls {
            // Answered within the Redis timeout: the key reads as absent, 401.
            assert_eq!(verdict(&call.await.unwrap().unwrap()).0, 401);
        }
        assert_eq!(fifth.unwrap_err().code(), tonic::Code::Unavailable, "the pool and its queue were full");
        // One more call times out or finds the breaker open; by then 3 operations have timed
        // out (the queued calls' may have found their deadline passed instead, which is not a
        // Redis failure), so the next one fails at once.
        assert_eq!(verdict(&dispatch(&mut c, hmac.clone()).await.unwrap()).0, 401);
        let t0 = Instant::now();
        assert_eq!(verdict(&dispatch(&mut c, hmac.clone()).await.unwrap()).0, 401);
        assert!(t0.elapsed() < Duration::from_millis(250), "the breaker fails it at once: {:?}", t0.elapsed());
        redis.pause(false);
        tokio::time::sleep(Duration::from_millis(150)).await;
        (before, during, scrape(addr))
    });
    let check = |text: &str, label: &str, want: &[(&str, &[&str], f64)]| {
        let wrong: Vec<String> = want
            .iter()
            .filter_map(|(name, labels, v)| {
                let got = metric(text, name, labels);
                (got != Some(*v)).then(|| format!("{label}: {name}{labels:?} = {got:?}, want {v}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}\n--- exposition:\n{text}");
    };
    let ops = "coprocess_grpc_store_operations_total";
    check(
        &before,
        "before",
        &[
            (ops, &[r#"op="get""#, r#"result="ok""#], 3.0),
            (ops, &[r#"op="set_if_absent""#, r#"result="stored""#], 2.0),
            (ops, &[r#"op="set_if_absent""#, r#"result="present""#], 1.0),
            ("coprocess_grpc_store_breaker_state", &[r#"state="closed""#], 1.0),
            ("coprocess_grpc_store_breaker_opens_total", &[], 0.0),
        ],
    );
    check(
        &during,
        "during",
        &[("coprocess_grpc_pool_busy_threads", &[], 2.0), ("coprocess_grpc_pool_queue_depth", &[], 2.0)],
    );
    check(
        &after,
        "after",
        &[
            ("coprocess_grpc_pool_refused_total", &[], 1.0),
            ("coprocess_grpc_calls_total", &[r#"method="Dispatch""#, r#"code="UNAVAILABLE""#], 1.0),
            ("coprocess_grpc_pool_busy_threads", &[], 0.0),
            ("coprocess_grpc_pool_queue_depth", &[], 0.0),
            ("coprocess_grpc_store_breaker_state", &[r#"state="open""#], 1.0),
            ("coprocess_grpc_store_breaker_state", &[r#"state="closed""#], 0.0),
            ("coprocess_grpc_store_breaker_opens_total", &[], 1.0),
            (ops, &[r#"op="get""#, r#"result="error""#], 0.0),
        ],
    );
    // Six reads failed: at least 3 timed out (which opened the breaker), at least the last
    // found the breaker open, and a queued one may have found its deadline passed.
    let get = |r: &str| metric(&after, ops, &[r#"op="get""#, &format!("result=\"{r}\"")]).unwrap_or(-1.0);
    let (timeout, deadline, open) = (get("timeout"), get("deadline"), get("breaker_open"));
    assert!(timeout >= 3.0 && open >= 1.0 && timeout + deadline + open == 6.0, "{after}");
    promtool_check(&after);
    eprintln!(
        "FIGURES metrics with Redis: during the hang {} busy, {} queued; after: get {:?}",
        metric(&during, "coprocess_grpc_pool_busy_threads", &[]).unwrap_or(-1.0),
        metric(&during, "coprocess_grpc_pool_queue_depth", &[]).unwrap_or(-1.0),
        ["ok", "timeout", "deadline", "error", "breaker_open"]
            .iter()
            .map(|r| (r, metric(&after, ops, &[r#"op="get""#, &format!("result=\"{r}\"")]).unwrap_or(0.0)))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/2 frames, for a client that ignores the advertised stream limit.

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS (END_HEADERS, not END_STREAM) of a Dispatch call, HPACK literals without indexing.
fn headers_frame(stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    for (k, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/coprocess.Dispatcher/Dispatch"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
    ] {
        block.push(0);
        block.push(k.len() as u8);
        block.extend_from_slice(k.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    frame(1, 0x4, stream, &block)
}

/// The error codes of the RST_STREAM frames `s` receives for `streams`, until all have one
/// or the time is up.
fn wait_resets(s: &mut TcpStream, streams: &[u32], limit: Duration) -> Vec<Option<u32>> {
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let until = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut codes = vec![None; streams.len()];
    while Instant::now() < until && codes.iter().any(Option::is_none) {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        let mut at = 0;
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            if buf.len() < at + 9 + len {
                break;
            }
            let (ty, id) = (buf[at + 3], u32::from_be_bytes(buf[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff);
            if let Some(i) = streams.iter().position(|&s| s == id).filter(|_| ty == 3 && len == 4) {
                codes[i] = Some(u32::from_be_bytes(buf[at + 9..at + 13].try_into().unwrap()));
            }
            at += 9 + len;
        }
        buf.drain(..at);
    }
    codes
}

/// h2 refuses a stream past `--max-concurrent-streams` by itself (RST_STREAM REFUSED_STREAM);
/// the server counts the resets it writes.
#[test]
fn streams_past_the_limit_are_counted_as_refused() {
    let _one = exclusive();
    let dir = scratch("refused-streams");
    let srv = ServerProcess::start(
        &dir,
        &config(),
        &["--metrics-listen", "127.0.0.1:0", "--max-concurrent-streams", "1"],
        None,
    );
    let addr = srv.metrics.unwrap();
    assert_eq!(metric(&scrape(addr), "coprocess_grpc_streams_refused_total", &[]), Some(0.0));
    let mut s = TcpStream::connect(srv.tcp).unwrap();
    s.write_all(&[PREFACE, &frame(4, 0, 0, &[]), &headers_frame(1), &headers_frame(3), &headers_frame(5)].concat())
        .unwrap();
    let codes = wait_resets(&mut s, &[3, 5], Duration::from_secs(5));
    assert_eq!(codes, [Some(7), Some(7)], "streams 3 and 5 refused with REFUSED_STREAM");
    let mut refused = None;
    for _ in 0..20 {
        refused = metric(&scrape(addr), "coprocess_grpc_streams_refused_total", &[]);
        if refused == Some(2.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("FIGURES refused streams: RST_STREAM codes {codes:?}; coprocess_grpc_streams_refused_total {refused:?}");
    assert_eq!(refused, Some(2.0));
}

// ---------------------------------------------------------------------------------------------
// Trace ids.

fn lines_with<'a>(lines: &'a [Value], pred: impl Fn(&Value) -> bool + 'a) -> Vec<&'a Value> {
    lines.iter().filter(|l| pred(l)).collect()
}

/// The trace id of a call's `traceparent` metadata, or else of its Object's header, is the
/// `trace_id` field of the middleware's lines (inline and on the pool), of the server's lines
/// about the call (failed, timed out), of event lines (and inside ReqHub's payload), and of an
/// event handler's lines during a `DispatchEvent`; an invalid `traceparent` gives none.
#[test]
fn trace_ids_reach_every_line_about_a_call() {
    let _one = exclusive();
    let dir = scratch("trace-lines");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cfg = config();
    cfg["ReqHubMerchant"] = json!({"mode": "remote", "public_key": "mpk", "private_key": "msk", "api": "prod-1",
        "verify_url": format!("http://{dead}/verify"), "timeout_ms": 1000});
    let srv = ServerProcess::start(&dir, &cfg, &["--log-level", "debug", "--request-read-timeout-ms", "300"], None);
    let rt = runtime();
    rt.block_on(async {
        let mut c = tcp_client(srv.tcp).await;
        // Inline: HMACSignatureAuth's debug line about a bad signature.
        let hmac = |k: &str| {
            use prost::Message as _;
            let mut o = hmac_object("AAAA");
            o.request.as_mut().unwrap().headers.insert("X-Case".into(), k.into());
            o.encode_to_vec()
        };
        traced(&mut c, hmac("metadata"), Some(TRACEPARENT)).await.unwrap();
        // The Object's own header when the metadata has none.
        let with_header = |k: &str| {
            use prost::Message as _;
            let mut o = hmac_object("AAAA");
            let h = &mut o.request.as_mut().unwrap().headers;
            h.insert("X-Case".into(), k.into());
            h.insert("traceparent".into(), HEADER_TRACEPARENT.into());
            o.encode_to_vec()
        };
        traced(&mut c, with_header("header"), None).await.unwrap();
        traced(&mut c, with_header("both"), Some(TRACEPARENT)).await.unwrap();
        // Invalid metadata: none.
        traced(&mut c, hmac("invalid"), Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")).await.unwrap();
        // The pool: ReqHub remote, its verifier down: a warning line and the event.
        let out = traced(&mut c, reqhub_object(), Some(TRACEPARENT)).await.unwrap();
        assert_eq!(verdict(&out).0, 503);
        // Server lines: a failed call (metadata; the Object's header), a timed-out one.
        traced(&mut c, vec![0xff, 0xff], Some(TRACEPARENT)).await.unwrap_err();
        let nope = ObjectBuilder::new(HookType::Pre, "Nope").header("traceparent", HEADER_TRACEPARENT).encode();
        traced(&mut c, nope, None).await.unwrap_err();
        let mut h2 = h2_connect(srv.tcp).await;
        let (_tx, body) = ChannelBody::new();
        let mut req = h2_request("/coprocess.Dispatcher/Dispatch", "application/grpc", body);
        req.headers_mut().insert("traceparent", TRACEPARENT.parse().unwrap());
        h2.ready().await.unwrap();
        let (_, code, _) = h2_outcome(h2.send_request(req).await.unwrap()).await;
        assert_eq!(code.as_deref(), Some("4"), "DEADLINE_EXCEEDED");
        // A DispatchEvent: LogEvent's line and RelayEvent's event.
        for handler in ["LogEvent", "RelayEvent"] {
            let event =
                json!({"message": {"Type": "QuotaExceeded", "Meta": {}, "TimeStamp": "t"}, "handler_name": handler});
            let mut req = tonic::Request::new(coprocess::proto::Event { payload: event.to_string() });
            req.metadata_mut().insert("traceparent", TRACEPARENT.parse().unwrap());
            c.dispatch_event(req).await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let lines = srv.json_lines();
    let id = |l: &Value| l["trace_id"].as_str().map(str::to_owned);
    // HMAC lines in the order sent: metadata, header, both, invalid.
    let hmac: Vec<_> = lines_with(&lines, |l| {
        l["source"] == "middleware" && l["msg"].as_str().is_some_and(|m| m.starts_with("HMACSignatureAuth"))
    })
    .into_iter()
    .map(id)
    .collect();
    assert_eq!(
        hmac,
        vec![Some(ID.to_owned()), Some(HEADER_ID.to_owned()), Some(ID.to_owned()), None],
        "HMACSignatureAuth's lines: {lines:#?}"
    );
    let reqhub = lines_with(&lines, |l| l["msg"].as_str().is_some_and(|m| m.contains("ReqHubMerchant: verifier")));
    assert_eq!(reqhub.len(), 1, "{lines:#?}");
    assert_eq!(id(reqhub[0]).as_deref(), Some(ID), "ReqHub's warning on the pool: {:?}", reqhub[0]);
    let events = lines_with(&lines, |l| l["source"] == "event" && l["event"] == "ReqHubVerificationUnavailable");
    assert_eq!(events.len(), 1, "{lines:#?}");
    assert_eq!(id(events[0]).as_deref(), Some(ID), "the event line: {:?}", events[0]);
    assert_eq!(events[0]["payload"]["trace_id"], ID, "ReqHub's payload");
    let failed = lines_with(&lines, |l| l["msg"] == "call failed");
    assert_eq!(
        failed.iter().map(|l| id(l)).collect::<Vec<_>>(),
        vec![Some(ID.to_owned()), Some(HEADER_ID.to_owned())],
        "{failed:#?}"
    );
    let timed_out = lines_with(&lines, |l| l["msg"] == "call timed out");
    assert_eq!(timed_out.len(), 1, "{lines:#?}");
    assert_eq!(id(timed_out[0]).as_deref(), Some(ID));
    let log_event =
        lines_with(&lines, |l| l["msg"].as_str().is_some_and(|m| m.starts_with("gateway event QuotaExceeded")));
    assert_eq!(
        log_event.iter().map(|l| id(l)).collect::<Vec<_>>(),
        vec![Some(ID.to_owned())],
        "LogEvent: {log_event:#?}"
    );
    let relayed = lines_with(&lines, |l| l["source"] == "event" && l["event"] == "Relayed");
    assert_eq!(
        relayed.iter().map(|l| id(l)).collect::<Vec<_>>(),
        vec![Some(ID.to_owned())],
        "RelayEvent: {relayed:#?}"
    );
    // No other line carries a trace id that was not sent.
    for l in &lines {
        if let Some(t) = id(l) {
            assert!(t == ID || t == HEADER_ID, "{l}");
        }
    }
    eprintln!(
        "FIGURES trace ids: {} lines with a trace id out of {}; HMAC {hmac:?}",
        lines.iter().filter(|l| id(l).is_some()).count(),
        lines.len()
    );
}

/// Fires an event from inside a dispatch; `Fire:pool` says it may wait on the network, so it
/// runs on the blocking pool, `Fire` inline on the async worker.
struct Fire {
    network: bool,
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FireConfig {
    network: bool,
}

impl Middleware for Fire {
    const NAME: &'static str = "Fire";
    const HOOKS: &'static [HookType] = &[HookType::Pre];
    type Config = FireConfig;

    fn new(config: FireConfig, _: &Setup<'_>) -> Result<Self, coprocess::ConfigError> {
        Ok(Fire { network: config.network })
    }

    fn handle(&self, ctx: &mut Context<'_>) -> Result<(), MiddlewareError> {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        ctx.host().trigger_event("Fired", &json!({"thread": thread}).to_string());
        Ok(())
    }

    fn blocking(&self) -> Blocking {
        if self.network {
            Blocking::Network
        } else {
            Blocking::Never
        }
    }
}

/// Events a middleware fires inline on an async worker and on a pool thread carry the call's
/// trace id in the webhook body; the next call on the same thread without one carries none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_fired_inline_and_on_the_pool_carry_the_trace_id() {
    let dir = scratch("trace-events");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let file = dir.join("coprocess.json");
    std::fs::write(&file, json!({"Fire": {}, "Fire:pool": {"network": true}}).to_string()).unwrap();
    let opts = coprocess_grpc::options::Options {
        listen: Some("127.0.0.1:0".into()),
        middleware_config: Some(file),
        log_level: coprocess::LogLevel::Error,
        event_sink: format!("http://{}/events", listener.local_addr().unwrap()),
        blocking_threads: 1,
        ..Default::default()
    };
    let mut registry = Registry::new();
    registry.middleware::<Fire>();
    let srv = coprocess_grpc::server::start_with(opts, registry).await.unwrap();
    let mut c = tcp_client(srv.tcp.unwrap()).await;
    let cases = [
        ("Fire", Some(TRACEPARENT), Some(ID)),
        ("Fire", None, None),
        ("Fire:pool", Some(TRACEPARENT), Some(ID)),
        ("Fire:pool", None, None),
    ];
    let collector = std::thread::spawn(move || {
        (0..cases.len())
            .map(|_| {
                let (_, body) = accept_post(&listener, "204 No Content");
                serde_json::from_str::<Value>(&body).unwrap()
            })
            .collect::<Vec<_>>()
    });
    for (hook, tp, _) in cases {
        traced(&mut c, ObjectBuilder::new(HookType::Pre, hook).encode(), tp).await.unwrap();
    }
    let bodies = tokio::task::spawn_blocking(move || collector.join().unwrap()).await.unwrap();
    let mut figures = Vec::new();
    for ((hook, _, want), body) in cases.iter().zip(&bodies) {
        let thread = body["payload"]["thread"].as_str().unwrap_or("");
        let on_pool = thread.starts_with("coprocess-blocking-");
        assert_eq!(on_pool, *hook == "Fire:pool", "{hook} ran on {thread}");
        assert_eq!(body["trace_id"].as_str(), *want, "{hook}: {body}");
        figures.push(format!("{hook} on {thread}: {:?}", body["trace_id"].as_str()));
    }
    // The webhook's counts, and what one render of the exposition costs.
    let mut text = String::new();
    for _ in 0..100 {
        text = srv.metrics_text();
        if metric(&text, "coprocess_grpc_webhook_events_total", &[r#"result="posted""#]) == Some(4.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&text, "coprocess_grpc_webhook_events_total", &[r#"result="posted""#]), Some(4.0), "{text}");
    let t0 = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(srv.metrics_text());
    }
    let render = t0.elapsed() / 100;
    eprintln!("FIGURES trace events: {figures:?}; one render of the {} byte exposition: {render:?}", text.len());
    srv.shutdown().await.unwrap();
}
