//! One full `Runtime::dispatch` of a realistic ~1 KB CustomKeyCheck Object through
//! HMACSignatureAuth, next to prost decode + encode alone of the same bytes (the floor any
//! decode-mutate-encode plugin pays).
//!
//! Run: `cargo bench --bench hmac_auth -- --warm-up-time 1 --measurement-time 3`

use coprocess::proto::{MiniRequestObject, ReturnOverrides};
use coprocess::{ConfigSource, HookType, Host, LogLevel, MemoryStore, Object, Runtime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use prost::Message;
use std::sync::Arc;

const DATE: &str = "Fri, 03 May 2024 12:00:42 GMT";
/// The reference vector (key `c2VjcmV0`, hmac-sha512 over `date: <DATE>`), query-escaped.
const SIG: &str = "9kwBK%2FyrjbSHJDI7INAhBmhHLTHRDkIe2uRWHEP8bgQFQvfXRksm6t2MHeLUyk9oosWDZyC17AbGeP8EFqrp%2BA%3D%3D";

/// A host like a gateway whose log level filters out debug lines: logs are dropped (a
/// `FakeHost` would record every refusal's debug line and grow without bound here).
#[derive(Default)]
struct QuietHost {
    store: MemoryStore,
}

impl Host for QuietHost {
    fn trigger_event(&self, _name: &str, _payload: &str) {}
    fn log(&self, _level: LogLevel, message: &str) {
        black_box(message);
    }
    fn store_data(&self, key: &str, value: &str, ttl: i64) {
        self.store.set(key, value, ttl)
    }
    fn get_data(&self, key: &str) -> Option<String> {
        self.store.get(key)
    }
}

fn object(signature: &str) -> Object {
    let headers = [
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-GB,en;q=0.9,de;q=0.7"),
        (
            "Authorization",
            &format!("Signature keyId=\"client-42\",algorithm=\"hmac-sha512\",signature=\"{signature}\""),
        ),
        ("Connection", "keep-alive"),
        ("Cookie", "session=8c1f0e6a2b; theme=dark; _ga=GA1.2.1234567890.1714737000"),
        ("Date", DATE),
        ("Referer", "https://app.example.com/dashboard/items?page=2"),
        ("Sec-Fetch-Dest", "empty"),
        ("Sec-Fetch-Mode", "cors"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        ),
        ("X-Forwarded-For", "203.0.113.7, 10.0.0.12"),
        ("X-Request-Id", "5f0c1a7e-8d8b-4b61-9a44-3c2f1e0d9b7a"),
    ];
    let mut req = MiniRequestObject {
        method: "GET".into(),
        url: "/v1/items?page=2&sort=desc".into(),
        request_uri: "/v1/items?page=2&sort=desc".into(),
        scheme: "https".into(),
        return_overrides: Some(ReturnOverrides { response_code: -1, ..Default::default() }),
        ..Default::default()
    };
    for (k, v) in headers {
        req.headers.insert(k.into(), v.into());
    }
    let mut obj = Object {
        hook_type: HookType::CustomKeyCheck as i32,
        hook_name: "HMACSignatureAuth".into(),
        request: Some(req),
        ..Default::default()
    };
    obj.spec.insert("APIID".into(), "b84fe1a04e5648927971c0557971565c".into());
    obj.spec.insert("OrgID".into(), "5e9d9544a1dcd60001d0ed20".into());
    obj.spec.insert("bundle_hash".into(), "".into());
    obj.spec.insert(
        "config_data".into(),
        r#"{"HMACSignatureAuth":{"keys":{"client-42":"c2VjcmV0"},"allowed_algorithms":["hmac-sha256","hmac-sha512"],"session":{"rate":1000,"per":60,"quota_max":-1,"tags":["hmac"],"access_rights":{"b84fe1a04e5648927971c0557971565c":{"api_id":"b84fe1a04e5648927971c0557971565c","versions":["Default"]}}}}}"#.into(),
    );
    obj
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(
        coprocess::builtins::registry(),
        Arc::new(QuietHost::default()),
        ConfigSource::Fixed(Default::default()),
    );
    let good = object(SIG).encode_to_vec();
    let bad = object(&SIG.replacen('9', "8", 1)).encode_to_vec();
    eprintln!("Object size: {} bytes", good.len());
    // Make sure the benchmark measures what it claims.
    let out = Object::decode(&rt.dispatch(&good).unwrap()[..]).unwrap();
    assert!(out.session.as_ref().is_some_and(|s| s.hmac_enabled) && out.metadata["token"] == "client-42");
    let out = Object::decode(&rt.dispatch(&bad).unwrap()[..]).unwrap();
    assert_eq!(out.request.unwrap().return_overrides.unwrap().response_code, 401);

    let mut g = c.benchmark_group("hmac_auth");
    g.bench_function("prost_decode_encode", |b| {
        b.iter(|| {
            let o = Object::decode(black_box(&good[..])).unwrap();
            black_box(o.encode_to_vec())
        })
    });
    g.bench_function("dispatch_authenticated", |b| b.iter(|| black_box(rt.dispatch(black_box(&good)).unwrap())));
    g.bench_function("dispatch_rejected", |b| b.iter(|| black_box(rt.dispatch(black_box(&bad)).unwrap())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
