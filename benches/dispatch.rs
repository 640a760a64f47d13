//! The core costs per call on a realistic ~1 KB Object: schema validation (the lazy path's
//! only full pass), prost decode, prost encode, and a whole `Runtime::dispatch` through the
//! light built-ins (InjectHeaders on Pre, StaticTokenAuth on CustomKeyCheck).
//!
//! Run: `cargo bench --bench dispatch -- --warm-up-time 1 --measurement-time 3`

use coprocess::testing::ObjectBuilder;
use coprocess::{ConfigSource, FakeHost, HookType, Object, Runtime};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use prost::Message;
use std::sync::Arc;

const CONFIG: &str = r#"{"InjectHeaders":{"add":{"X-Gateway":"coprocess","X-Api-Version":"2"},"remove":["Cookie"]},"StaticTokenAuth":{"header":"Authorization","strip_prefix":"Bearer ","tokens":{"tok-8c1f0e6a2b":{"rate":1000,"per":60,"quota_max":-1,"tags":["gold"]}}}}"#;

fn object(hook_type: HookType, hook_name: &str) -> Vec<u8> {
    let mut b = ObjectBuilder::new(hook_type, hook_name)
        .method_url("GET", "/v1/items?page=2&sort=desc", "/v1/items?page=2&sort=desc")
        .spec("APIID", "b84fe1a04e5648927971c0557971565c")
        .spec("OrgID", "5e9d9544a1dcd60001d0ed20")
        .config_data(CONFIG);
    for (k, v) in [
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-GB,en;q=0.9,de;q=0.7"),
        ("Authorization", "Bearer tok-8c1f0e6a2b"),
        ("Cookie", "session=8c1f0e6a2b; theme=dark; _ga=GA1.2.1234567890.1714737000"),
        ("Referer", "https://app.example.com/dashboard/items?page=2"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        ),
        ("X-Forwarded-For", "203.0.113.7, 10.0.0.12"),
        ("X-Request-Id", "5f0c1a7e-8d8b-4b61-9a44-3c2f1e0d9b7a"),
    ] {
        b = b.header(k, v);
    }
    b.encode()
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new(
        coprocess::builtins::registry(),
        Arc::new(FakeHost::new()),
        ConfigSource::Fixed(Default::default()),
    );
    let pre = object(HookType::Pre, "InjectHeaders");
    let auth = object(HookType::CustomKeyCheck, "StaticTokenAuth");
    eprintln!("Object size: {} bytes", pre.len());
    let decoded = Object::decode(&pre[..]).unwrap();
    let mut g = c.benchmark_group("core");
    g.bench_function("wire_validate", |b| b.iter(|| coprocess::wire::validate(black_box(&pre)).unwrap()));
    g.bench_function("prost_decode", |b| b.iter(|| Object::decode(black_box(&pre[..])).unwrap()));
    g.bench_function("prost_encode", |b| b.iter(|| black_box(&decoded).encode_to_vec()));
    g.bench_function("prost_decode_encode", |b| {
        b.iter(|| Object::decode(black_box(&pre[..])).unwrap().encode_to_vec())
    });
    g.bench_function("dispatch_inject_headers", |b| b.iter(|| rt.dispatch(black_box(&pre)).unwrap()));
    g.bench_function("dispatch_static_token", |b| b.iter(|| rt.dispatch(black_box(&auth)).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
