//! ReqHubMerchant local-mode verification through the real dispatcher, next to a plain prost
//! decode + encode of the same Object (the baseline every native hook pays at least).
//!
//! Run: `cargo bench --bench reqhub`. Every iteration gets a freshly signed request (new nonce,
//! current timestamp) built outside the timed section, so the measured dispatch is the full
//! pass path: header reads, timestamp/nonce checks, client look-up, HMAC-SHA256, constant-time
//! compare, store get + set, metadata edit and the appended answer. The host store here is a
//! no-op (the gateway's store is Redis behind cgo; its cost is the host's, not the library's).

use coprocess::builtins::reqhub::client::SignedHeaders;
use coprocess::proto::{MiniRequestObject, ReturnOverrides};
use coprocess::{ConfigSource, HookType, Host, LogLevel, Object, Runtime};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct BenchHost {
    stores: AtomicU64,
}

impl Host for BenchHost {
    fn trigger_event(&self, _: &str, _: &str) {}
    fn log(&self, _: LogLevel, _: &str) {}
    fn store_data(&self, _: &str, _: &str, _: i64) {
        self.stores.fetch_add(1, Ordering::Relaxed);
    }
    fn get_data(&self, _: &str) -> Option<String> {
        None
    }
}

const CONFIG: &str = r#"{"ReqHubMerchant": {"mode": "local", "api": "prod-1",
  "clients": {"K+mE4RjP4ZqDgq7mxfydILlmXQe9CYFPCgkjYaeW6/e1/vyRUOD0/p7IQY1jNq3boD7HJlABUUdtOzydsCCrgw==": {"private_key": "c2VjcmV0LWNsaWVudC1wcml2YXRlLWtleS1mb3ItYmVuY2htYXJrcw==", "api": "prod-1"},
              "other-client": {"private_key": "other-private", "api": "prod-2"}}}}"#;
const CLIENT_PUB: &str = "K+mE4RjP4ZqDgq7mxfydILlmXQe9CYFPCgkjYaeW6/e1/vyRUOD0/p7IQY1jNq3boD7HJlABUUdtOzydsCCrgw==";
const CLIENT_PRIV: &str = "c2VjcmV0LWNsaWVudC1wcml2YXRlLWtleS1mb3ItYmVuY2htYXJrcw==";
const URI: &str = "/v1/weather/forecast?city=Lisbon&days=5";

/// A Pre-hook Object like the gateway sends (about 1.2 KB), signed with a fresh nonce now.
fn request(token_override: Option<&str>) -> Vec<u8> {
    let h = SignedHeaders::client_now(CLIENT_PUB, CLIENT_PRIV, URI).unwrap();
    let mut req = MiniRequestObject {
        method: "GET".into(),
        url: URI.into(),
        request_uri: URI.into(),
        scheme: "https".into(),
        return_overrides: Some(ReturnOverrides { response_code: -1, ..Default::default() }),
        ..Default::default()
    };
    for (k, v) in [
        ("Host", "api.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        ),
        ("Accept", "application/json, text/plain, */*"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-GB,en;q=0.9"),
        ("X-Request-Id", "6f1c2a9e-8f4b-4c1d-9a7e-2b3c4d5e6f70"),
        ("X-Forwarded-For", "203.0.113.7, 198.51.100.2"),
    ] {
        req.headers.insert(k.into(), v.into());
    }
    for (k, v) in h.client_pairs() {
        req.headers.insert(k.into(), token_override.filter(|_| k == "ClientToken").unwrap_or(v).into());
    }
    let mut obj = Object {
        hook_type: HookType::Pre as i32,
        hook_name: "ReqHubMerchant".into(),
        request: Some(req),
        ..Default::default()
    };
    obj.spec.insert("APIID".into(), "3f1e2d4c5b6a79880a1b2c3d4e5f6a7b".into());
    obj.spec.insert("OrgID".into(), "5e9d9544a1dcd60001d0ed20".into());
    obj.spec.insert("bundle_hash".into(), "d41d8cd98f00b204e9800998ecf8427e".into());
    obj.spec.insert("config_data".into(), CONFIG.into());
    obj.encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let host = Arc::new(BenchHost::default());
    let rt = Runtime::new(coprocess::builtins::registry(), host.clone(), ConfigSource::Fixed(Default::default()));
    // Sanity: the benchmarked request passes, the forged one is denied.
    let pass = Object::decode(&rt.dispatch(&request(None)).unwrap()[..]).unwrap();
    assert_eq!(pass.request.unwrap().return_overrides.unwrap().response_code, -1, "benchmark request must pass");
    let forged = request(Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    let denied = Object::decode(&rt.dispatch(&forged).unwrap()[..]).unwrap();
    assert_eq!(denied.request.unwrap().return_overrides.unwrap().response_code, 403);
    eprintln!("Object size: {} bytes", request(None).len());

    let mut g = c.benchmark_group("reqhub_local");
    g.bench_function("baseline_prost_decode_encode", |b| {
        b.iter_batched(
            || request(None),
            |bytes| black_box(Object::decode(&bytes[..]).unwrap().encode_to_vec()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("dispatch_verify_pass", |b| {
        b.iter_batched(|| request(None), |bytes| black_box(rt.dispatch(&bytes).unwrap()), BatchSize::SmallInput)
    });
    g.bench_function("dispatch_verify_denied_bad_signature", |b| b.iter(|| black_box(rt.dispatch(&forged).unwrap())));
    g.finish();
    assert!(host.stores.load(Ordering::Relaxed) > 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
