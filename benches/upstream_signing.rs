//! Dispatch cost of UpstreamRequestSigning (HMAC-SHA256, RSA-2048) next to prost decode+encode
//! alone of the same ~1 KB Object.
//!
//! Run: `cargo bench --bench upstream_signing`; medians in
//! target/criterion/upstream_signing/*/new/estimates.json.

use coprocess::proto::{MiniRequestObject, ReturnOverrides};
use coprocess::{builtins, ConfigSource, FakeHost, HookType, Host, Object, Runtime, SessionState};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use prost::Message;
use serde_json::json;
use std::sync::Arc;

/// A Post-hook Object of about 1 KB: typical client headers, a session, metadata, spec.
fn object(hook_name: &str) -> Object {
    let mut req = MiniRequestObject {
        method: "POST".into(),
        url: "/api/v1/orders/12345/items?expand=product&limit=50".into(),
        request_uri: "/shop/api/v1/orders/12345/items?expand=product&limit=50".into(),
        scheme: "https".into(),
        body: r#"{"product_id":"p-778","quantity":2}"#.into(),
        return_overrides: Some(ReturnOverrides { response_code: -1, ..Default::default() }),
        ..Default::default()
    };
    for (k, v) in [
        ("Accept", "application/json, text/plain, */*"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-GB,en;q=0.9,de;q=0.8"),
        ("Content-Type", "application/json"),
        ("Content-Length", "36"),
        ("Date", "Fri, 03 May 2024 12:00:42 GMT"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        ),
        ("X-Forwarded-For", "203.0.113.7, 198.51.100.23"),
        ("X-Request-Id", "7f9c2ba4-e88f-4a2b-b8d6-0c5d1c6e2f10"),
        ("Cookie", "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark; consent=analytics%3Dno"),
        (
            "Authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
    ] {
        req.headers.insert(k.into(), v.into());
    }
    let mut session = SessionState {
        rate: 1000.0,
        per: 60.0,
        quota_max: 100_000,
        quota_remaining: 99_000,
        org_id: "org-1".into(),
        ..Default::default()
    };
    session.tags = vec!["gold".into(), "eu-west".into()];
    session.metadata.insert("tenant".into(), "acme-corp".into());
    let mut obj = Object {
        hook_type: HookType::Post as i32,
        hook_name: hook_name.into(),
        request: Some(req),
        session: Some(session),
        ..Default::default()
    };
    obj.metadata.insert("token".into(), "5f8a1c2e9d7b4a3f".into());
    obj.spec.insert("APIID".into(), "b7c1e9f0a3d24e5f8c6b".into());
    obj.spec.insert("OrgID".into(), "org-1".into());
    obj.spec.insert("bundle_hash".into(), "d41d8cd98f00b204e9800998ecf8427e".into());
    obj
}

fn bench(c: &mut Criterion) {
    let pem =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/test_rsa2048_pkcs1.pem")).unwrap();
    let global = json!({
        "UpstreamRequestSigning:hmac": {"algorithm": "hmac-sha256", "keyId": "bench", "secret": "bench-secret-0123456789"},
        "UpstreamRequestSigning:hmaclist": {"algorithm": "hmac-sha256", "keyId": "bench", "secret": "bench-secret-0123456789",
                                            "headers": ["(request-target)", "date", "content-type", "x-request-id"]},
        "UpstreamRequestSigning:rsa": {"algorithm": "rsa-sha256", "keyId": "bench", "privateKey": pem},
    });
    let sections = global.as_object().unwrap().clone();
    let host: Arc<dyn Host> = Arc::new(FakeHost::new());
    let rt = Runtime::new(builtins::registry(), host, ConfigSource::Fixed(sections));

    let base = object("UpstreamRequestSigning:hmac").encode_to_vec();
    eprintln!("Object size: {} bytes", base.len());
    let mut g = c.benchmark_group("upstream_signing");
    g.bench_function("prost_decode_encode", |b| {
        b.iter(|| {
            let obj = Object::decode(black_box(&base[..])).unwrap();
            black_box(obj.encode_to_vec())
        })
    });
    for (id, hook) in [
        ("dispatch_hmac_sha256", "UpstreamRequestSigning:hmac"),
        ("dispatch_hmac_sha256_4_headers", "UpstreamRequestSigning:hmaclist"),
        ("dispatch_rsa_2048", "UpstreamRequestSigning:rsa"),
    ] {
        let bytes = object(hook).encode_to_vec();
        let out = Object::decode(&rt.dispatch(&bytes).unwrap()[..]).unwrap();
        assert!(out.request.unwrap().set_headers.contains_key("Authorization"), "{id} signs");
        g.bench_function(id, |b| b.iter(|| black_box(rt.dispatch(black_box(&bytes)).unwrap())));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
