//! The server in-process (`server::start`) with tonic clients over TCP and a unix socket.

mod common;

use common::*;
use coprocess::proto::{Event, ResponseObject};
use coprocess::testing::ObjectBuilder;
use coprocess::{
    ConfigSource, Context, FakeHost, HookType, Middleware, MiddlewareError, Object, Registry, Runtime, Setup,
};
use coprocess_grpc::options::Options;
use coprocess_grpc::server::{self, Server};
use coprocess_grpc::service::CODE_METADATA;
use prost::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tonic::Code;

fn options(dir: &Path, config: &Value) -> Options {
    let file = dir.join("coprocess.json");
    std::fs::write(&file, config.to_string()).unwrap();
    Options {
        listen: Some("127.0.0.1:0".into()),
        unix: Some(dir.join("grpc.sock")),
        middleware_config: Some(file),
        log_level: coprocess::LogLevel::Error,
        ..Options::default()
    }
}

fn builtin_config() -> Value {
    let mut c = json!({
        "InjectHeaders": {"add": {"X-Added": "yes"}, "remove": ["Cookie"]},
        "InjectHeaders:resp": {"add": {"X-Resp": "r"}},
        "StaticTokenAuth": {"header": "Authorization", "strip_prefix": "Bearer ", "tokens": {"tok-1": {"rate": 5, "per": 1, "tags": ["gold"]}}},
        "UpstreamRequestSigning": {"algorithm": "hmac-sha256", "secret": "s3cret", "keyId": "up-1", "headers": ["date"]},
        "ReqHubMerchant": {"mode": "local", "public_key": "mpk", "private_key": "msk", "api": "prod-1",
                           "clients": {"cpk": {"private_key": "csk", "api": "prod-1"}}},
        "LogEvent": {"level": "info"},
        "RelayEvent": {"event_name": "Relayed"}
    });
    c.as_object_mut().unwrap().extend(hmac_config().as_object().unwrap().clone());
    c
}

/// Objects for every built-in middleware, as the gateway would send them.
fn builtin_objects() -> Vec<(&'static str, Object)> {
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis().to_string();
    let nonce = &unique_nonce();
    let token = reqhub_token("cpk", "csk", &now_ms, nonce, "/pay");
    vec![
        ("inject pre", ObjectBuilder::new(HookType::Pre, "InjectHeaders").header("Cookie", "a=1").build()),
        (
            "inject response",
            ObjectBuilder::new(HookType::Response, "InjectHeaders:resp")
                .response(ResponseObject { status_code: 200, body: "ok".into(), ..Default::default() })
                .build(),
        ),
        (
            "static token ok",
            ObjectBuilder::new(HookType::CustomKeyCheck, "StaticTokenAuth")
                .header("Authorization", "Bearer tok-1")
                .build(),
        ),
        (
            "static token bad",
            ObjectBuilder::new(HookType::CustomKeyCheck, "StaticTokenAuth")
                .header("Authorization", "Bearer nope")
                .build(),
        ),
        ("hmac ok", hmac_object(HMAC_SIGNATURE)),
        ("hmac bad", hmac_object("AAAA")),
        (
            "upstream signing",
            ObjectBuilder::new(HookType::Post, "UpstreamRequestSigning").header("Date", HMAC_DATE).build(),
        ),
        (
            "reqhub local",
            ObjectBuilder::new(HookType::Pre, "ReqHubMerchant")
                .method_url("POST", "/pay", "/pay")
                .header("ClientToken", &token)
                .header("ClientKey", "cpk")
                .header("ClientTimestamp", &now_ms)
                .header("ClientNonce", nonce)
                .header("ClientUrl", "/pay")
                .build(),
        ),
    ]
}

/// 20 bytes, base64: unique per call within this process (time and a counter).
fn unique_nonce() -> String {
    use base64::Engine as _;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut bytes = [0u8; 20];
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    bytes[..8].copy_from_slice(&nanos.to_le_bytes());
    bytes[8..16].copy_from_slice(&COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    bytes[16..].copy_from_slice(&std::process::id().to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Token = base64(HMAC-SHA256(key = private key + timestamp + nonce + url, message = public key)).
fn reqhub_token(public: &str, private: &str, ts: &str, nonce: &str, url: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(format!("{private}{ts}{nonce}{url}").as_bytes()).unwrap();
    mac.update(public.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// `last_updated` (now, in seconds) may differ between two runs; everything else must be identical.
fn normalise(mut o: Object) -> Object {
    if let Some(s) = o.session.as_mut() {
        s.last_updated.clear();
    }
    o
}

async fn start(dir: &Path, config: &Value) -> Server {
    server::start(options(dir, config)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_builtin_answers_as_the_library_does_on_tcp_and_unix() {
    let dir = scratch("builtins");
    let config = builtin_config();
    let srv = start(&dir, &config).await;
    let reference = Runtime::new(
        coprocess::builtins::registry(),
        Arc::new(FakeHost::new()),
        ConfigSource::Fixed(config.as_object().unwrap().clone()),
    );
    let mut tcp = tcp_client(srv.tcp.unwrap()).await;
    let mut unix = unix_client(srv.unix.as_ref().unwrap()).await;
    for (label, object) in builtin_objects() {
        let bytes = object.encode_to_vec();
        let want = normalise(Object::decode(&reference.dispatch(&bytes).unwrap()[..]).unwrap());
        // ReqHub's nonce may be used once per store: the in-process reference has its own
        // store, each transport here shares the server's, so only the first server call of it passes.
        let got_tcp = normalise(Object::decode(&dispatch(&mut tcp, bytes.clone()).await.unwrap()[..]).unwrap());
        assert_eq!(got_tcp, want, "{label} over TCP");
        let got_unix = normalise(Object::decode(&dispatch(&mut unix, bytes).await.unwrap()[..]).unwrap());
        if label == "reqhub local" {
            let o = got_unix.request.unwrap().return_overrides.unwrap();
            assert_eq!(o.response_code, 403, "the replayed nonce is refused");
            assert!(o.response_error.contains("merchant_signature_invalid"), "{}", o.response_error);
        } else {
            assert_eq!(got_unix, want, "{label} over the unix socket");
        }
    }
    // Spot checks that the answers are the real thing, not just equal.
    let objects = builtin_objects();
    let ok = Object::decode(&dispatch(&mut tcp, objects[4].1.encode_to_vec()).await.unwrap()[..]).unwrap();
    assert_eq!(ok.metadata.get("token").map(String::as_str), Some("k1"));
    assert!(ok.session.as_ref().unwrap().hmac_enabled);
    let bad = Object::decode(&dispatch(&mut tcp, objects[5].1.encode_to_vec()).await.unwrap()[..]).unwrap();
    assert_eq!(coprocess::testing::overrides(&bad).0, 401);
    let fresh = builtin_objects().pop().unwrap().1; // a new nonce
    let passed = Object::decode(&dispatch(&mut unix, fresh.encode_to_vec()).await.unwrap()[..]).unwrap();
    assert_eq!(coprocess::testing::overrides(&passed).0, -1, "{passed:?}");
    assert!(passed.metadata["reqhub"].contains("\"client_key\":\"cpk\""), "{passed:?}");
    for (event, handler) in [("AuthFailure", "LogEvent"), ("QuotaExceeded", "RelayEvent")] {
        let payload = json!({"message": {"Type": event, "Meta": {"k": "v"}, "TimeStamp": "t"}, "handler_name": handler, "spec": {"APIID": "a"}});
        tcp.dispatch_event(Event { payload: payload.to_string() }).await.unwrap();
        unix.dispatch_event(Event { payload: payload.to_string() }).await.unwrap();
    }
    srv.shutdown().await.unwrap();
    assert!(!dir.join("grpc.sock").exists(), "the socket file is removed on shutdown");
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct BoomConfig {
    panic: bool,
}

/// Fails (or panics) on every call.
struct Boom(bool);

impl Middleware for Boom {
    const NAME: &'static str = "Boom";
    const HOOKS: &'static [HookType] = &[HookType::Pre];
    type Config = BoomConfig;
    fn new(config: BoomConfig, _: &Setup<'_>) -> Result<Self, coprocess::ConfigError> {
        Ok(Boom(config.panic))
    }
    fn handle(&self, _: &mut Context<'_>) -> Result<(), MiddlewareError> {
        if self.0 {
            panic!("boom on purpose");
        }
        Err(MiddlewareError::new("failed on purpose"))
    }
}

fn status_code(s: &tonic::Status) -> (Code, i32) {
    let c = s.metadata().get(CODE_METADATA).map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    (s.code(), c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_status_codes_and_the_server_keeps_serving() {
    let dir = scratch("failures");
    let mut registry = Registry::new();
    coprocess::builtins::register(&mut registry);
    registry.middleware::<Boom>();
    let config = json!({"InjectHeaders": {"add": {"X-Added": "yes"}}, "Boom:panics": {"panic": true}});
    let srv = server::start_with(options(&dir, &config), registry).await.unwrap();
    let mut c = unix_client(srv.unix.as_ref().unwrap()).await;
    let cases: Vec<(&str, Vec<u8>, Code, i32, &str)> = vec![
        (
            "unknown hook",
            ObjectBuilder::new(HookType::Pre, "Nope").encode(),
            Code::NotFound,
            -3,
            "no middleware registered",
        ),
        (
            "wrong hook type",
            ObjectBuilder::new(HookType::Pre, "StaticTokenAuth").encode(),
            Code::NotFound,
            -3,
            "does not serve hook type",
        ),
        ("garbage", vec![0xff, 0xff, 0xff, 0x0f, 0x01], Code::InvalidArgument, -2, "not a valid coprocess.Object"),
        ("no hook name", Vec::new(), Code::NotFound, -3, "no hook_name"),
        (
            "broken config_data",
            ObjectBuilder::new(HookType::Pre, "InjectHeaders").config_data("{not json").encode(),
            Code::FailedPrecondition,
            -5,
            "invalid config_data",
        ),
        (
            "invalid section",
            ObjectBuilder::new(HookType::Pre, "InjectHeaders")
                .config_data(r#"{"InjectHeaders": {"adds": {}}}"#)
                .encode(),
            Code::FailedPrecondition,
            -5,
            "unknown field",
        ),
        (
            "middleware error",
            ObjectBuilder::new(HookType::Pre, "Boom").encode(),
            Code::Internal,
            -4,
            "failed on purpose",
        ),
        ("middleware panic", ObjectBuilder::new(HookType::Pre, "Boom:panics").encode(), Code::Internal, -4, "panicked"),
    ];
    for (label, bytes, code, lib, needle) in cases {
        let s = dispatch(&mut c, bytes).await.unwrap_err();
        assert_eq!(status_code(&s), (code, lib), "{label}: {s:?}");
        assert!(s.message().contains(needle), "{label}: {}", s.message());
    }
    let events: Vec<(&str, Code, i32)> = vec![
        ("{broken", Code::InvalidArgument, -2),
        (r#"{"message": {"Type": "X"}, "handler_name": "Nope"}"#, Code::NotFound, -3),
    ];
    for (payload, code, lib) in events {
        let s = c.dispatch_event(Event { payload: payload.into() }).await.unwrap_err();
        assert_eq!(status_code(&s), (code, lib), "{payload}: {s:?}");
    }
    // After all that, the same connection and a new one are served normally.
    let ok = ObjectBuilder::new(HookType::Pre, "InjectHeaders").encode();
    for mut client in [c, tcp_client(srv.tcp.unwrap()).await] {
        let answer = Object::decode(&dispatch(&mut client, ok.clone()).await.unwrap()[..]).unwrap();
        assert_eq!(coprocess::testing::set_header(&answer, "X-Added"), Some("yes"));
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_limits_apply_both_ways() {
    let dir = scratch("limits");
    let config = json!({"InjectHeaders": {"add": {"X-Big": "b".repeat(3000)}}, "InjectHeaders:small": {"add": {"X-Small": "s"}}});
    let mut opts = options(&dir, &config);
    opts.grpc_recv_max_size = 2048;
    opts.grpc_send_max_size = 2048;
    let srv = server::start(opts).await.unwrap();
    let mut c = tcp_client(srv.tcp.unwrap()).await;
    let big_request = ObjectBuilder::new(HookType::Pre, "InjectHeaders:small").body(&"x".repeat(4000)).encode();
    let s = dispatch(&mut c, big_request).await.unwrap_err();
    // grpc-go's code and wording for a message over the limit.
    assert_eq!(s.code(), Code::ResourceExhausted, "request over grpc_recv_max_size: {s:?}");
    assert!(s.message().contains("request message larger than max") && s.message().contains("vs. 2048)"), "{s:?}");
    let big_answer = ObjectBuilder::new(HookType::Pre, "InjectHeaders").encode();
    let s = dispatch(&mut c, big_answer).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "answer over grpc_send_max_size: {s:?}");
    assert!(s.message().contains("answer larger than max") && s.message().contains("vs. 2048)"), "{s:?}");
    let small = ObjectBuilder::new(HookType::Pre, "InjectHeaders:small").encode();
    let answer = Object::decode(&dispatch(&mut c, small).await.unwrap()[..]).unwrap();
    assert_eq!(coprocess::testing::set_header(&answer, "X-Small"), Some("s"));
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_service_reports_serving() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let dir = scratch("health");
    let srv = start(&dir, &json!({})).await;
    let mut h = HealthClient::new(unix_channel(srv.unix.as_ref().unwrap()).await);
    for service in ["", "coprocess.Dispatcher"] {
        let r = h.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service:?}");
    }
    let s = h.check(HealthCheckRequest { service: "other.Service".into() }).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_new_file_and_keeps_the_last_good_one() {
    let dir = scratch("reload");
    let srv = start(&dir, &json!({"InjectHeaders": {"add": {"X-Version": "1"}}})).await;
    let mut c = tcp_client(srv.tcp.unwrap()).await;
    let object = ObjectBuilder::new(HookType::Pre, "InjectHeaders").encode();
    let version =
        |b: Vec<u8>| coprocess::testing::set_header(&Object::decode(&b[..]).unwrap(), "X-Version").map(str::to_owned);
    assert_eq!(version(dispatch(&mut c, object.clone()).await.unwrap()).as_deref(), Some("1"));
    std::fs::write(dir.join("coprocess.json"), json!({"InjectHeaders": {"add": {"X-Version": "2"}}}).to_string())
        .unwrap();
    srv.reload().await.unwrap();
    assert_eq!(version(dispatch(&mut c, object.clone()).await.unwrap()).as_deref(), Some("2"));
    std::fs::write(dir.join("coprocess.json"), r#"{"InjectHeaders": {"add": 5}}"#).unwrap();
    let e = srv.reload().await.unwrap_err();
    assert!(e.contains("previous configuration kept"), "{e}");
    assert_eq!(version(dispatch(&mut c, object).await.unwrap()).as_deref(), Some("2"));
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_a_broken_configuration_or_a_busy_socket() {
    let dir = scratch("startup");
    std::fs::write(dir.join("bad.json"), r#"{"InjectHeaders": {"nope": 1}}"#).unwrap();
    let mut opts = options(&dir, &json!({}));
    opts.middleware_config = Some(dir.join("bad.json"));
    let e = server::start(opts).await.err().unwrap();
    assert!(e.contains("middleware configuration") && e.contains("unknown field"), "{e}");
    let mut opts = options(&dir, &json!({}));
    opts.middleware_config = Some(dir.join("missing.json"));
    let e = server::start(opts).await.err().unwrap();
    assert!(e.contains("cannot read configuration file"), "{e}");

    let first = start(&dir, &json!({})).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut opts = options(&dir, &json!({}));
    opts.listen = Some(format!("127.0.0.1:{port}"));
    let e = server::start(opts).await.err().unwrap();
    assert!(e.contains("in use"), "{e}");
    // Nothing was left serving on the TCP address of the failed start.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "a failed start left a listener behind");
    let mut opts = options(&dir, &json!({}));
    opts.tls_cert = Some(dir.join("missing-cert.pem"));
    opts.tls_key = Some(dir.join("missing-key.pem"));
    opts.unix = Some(dir.join("tls-fail.sock"));
    let e = server::start(opts).await.err().unwrap();
    assert!(e.contains("cannot read TLS certificate"), "{e}");
    assert!(!dir.join("tls-fail.sock").exists(), "a failed start left a socket file behind");
    first.shutdown().await.unwrap();
    std::fs::write(dir.join("not-a-socket"), "x").unwrap();
    let mut opts = options(&dir, &json!({}));
    opts.unix = Some(dir.join("not-a-socket"));
    let e = server::start(opts).await.err().unwrap();
    assert!(e.contains("not a socket"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_sink_receives_relayed_events() {
    let dir = scratch("webhook");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut opts = options(&dir, &json!({"RelayEvent": {"event_name": "Relayed"}}));
    opts.event_sink = format!("http://{}/events", listener.local_addr().unwrap());
    let srv = server::start(opts).await.unwrap();
    let payload = json!({"message": {"Type": "QuotaExceeded", "Meta": {"key": "abc"}, "TimeStamp": "t"}, "handler_name": "RelayEvent", "spec": {"APIID": "api-1"}}).to_string();
    let mut c = tcp_client(srv.tcp.unwrap()).await;
    c.dispatch_event(Event { payload: payload.clone() }).await.unwrap();
    let (line, body) = tokio::task::spawn_blocking(move || accept_post(&listener, "200 OK")).await.unwrap();
    assert!(line.starts_with("POST /events "), "{line}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["event"], "Relayed");
    assert_eq!(v["payload"], serde_json::from_str::<Value>(&payload).unwrap(), "the event JSON as received");
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_uses_the_prefix_and_honours_ttl() {
    let Some(redis) = Redis::or_skip() else { return };
    let url = redis.url();
    let settings = coprocess_grpc::store::RedisSettings { breaker_failures: 0, ..Default::default() };
    let logger = coprocess_grpc::log::Logger::new(coprocess::LogLevel::Error);
    let store = coprocess_grpc::host::RedisStore::connect(&url, "test:", settings, logger).unwrap();
    store.set("a", "1", 100).unwrap();
    store.set("b", "2", 0).unwrap();
    assert_eq!(store.get("a").unwrap().as_deref(), Some("1"));
    assert_eq!(store.get("missing").unwrap(), None);
    assert!(store.set_if_absent("n", "1", 100).unwrap(), "absent: stored");
    assert!(!store.set_if_absent("n", "2", 100).unwrap(), "present: not stored");
    assert_eq!(store.get("n").unwrap().as_deref(), Some("1"));
    assert!(store.set_if_absent("forever", "1", 0).unwrap());
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let ttl_a: i64 = redis::cmd("TTL").arg("test:a").query(&mut con).unwrap();
    let ttl_b: i64 = redis::cmd("TTL").arg("test:b").query(&mut con).unwrap();
    assert!((1..=100).contains(&ttl_a), "TTL {ttl_a}");
    assert_eq!(ttl_b, -1, "no TTL means no expiry");
    let ttl_n: i64 = redis::cmd("TTL").arg("test:n").query(&mut con).unwrap();
    let ttl_forever: i64 = redis::cmd("TTL").arg("test:forever").query(&mut con).unwrap();
    assert!((1..=100).contains(&ttl_n), "SET NX EX: TTL {ttl_n}");
    assert_eq!(ttl_forever, -1, "SET NX without a TTL");
    let raw: Option<String> = redis::cmd("GET").arg("a").query(&mut con).unwrap();
    assert_eq!(raw, None, "keys live under the prefix only");
    store.set("short", "x", 1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(store.get("short").unwrap(), None, "expired");
    // Every pooled connection is dropped when Redis restarts: the store reconnects.
    let port = redis.kill();
    assert!(store.get("a").is_err(), "Redis is down");
    let _again = Redis::on(port).unwrap();
    store.set("c", "3", 10).unwrap();
    assert_eq!(store.get("c").unwrap().as_deref(), Some("3"));
}
