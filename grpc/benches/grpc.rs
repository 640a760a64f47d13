//! The same HMAC-auth Object (the hmac-sha512 reference vector of
//! docs/builtins/hmac-signature-auth.md, CustomKeyCheck) dispatched in-process through `Runtime::dispatch` and through the `coprocess-grpc` binary over loopback
//! TCP and a unix socket (tonic client, one call at a time, connection reused).
//!
//!   make grpc-bench        (cargo bench -p coprocess-grpc --bench grpc)

#[path = "../tests/common.rs"]
mod common;

use common::*;
use coprocess::{ConfigSource, HookType, LogLevel, MemoryStore, Runtime};
use coprocess_grpc::host::{EventSink, ServerHost, Store};
use coprocess_grpc::log::Logger;
use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let object = hmac_object(HMAC_SIGNATURE);
    assert_eq!(object.hook_type, HookType::CustomKeyCheck as i32);
    let bytes = object.encode_to_vec();
    let check = |answer: &[u8]| {
        let o = coprocess::Object::decode(answer).unwrap();
        assert_eq!(o.metadata.get("token").map(String::as_str), Some("k1"), "the benchmark Object must authenticate");
    };

    let host =
        Arc::new(ServerHost::new(Logger::new(LogLevel::Warning), EventSink::Log, Store::Memory(MemoryStore::new())));
    let runtime = Runtime::new(
        coprocess::builtins::registry(),
        host,
        ConfigSource::Fixed(hmac_config().as_object().unwrap().clone()),
    );
    check(&runtime.dispatch(&bytes).unwrap());

    let dir = scratch("bench");
    let unix_path = dir.join("bench.sock");
    let server = ServerProcess::start(&dir, &hmac_config(), &["--unix", unix_path.to_str().unwrap()], None);
    let server_unix = unix_path;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut tcp = rt.block_on(tcp_client(server.tcp));
    let mut unix = rt.block_on(unix_client(&server_unix));
    check(&rt.block_on(dispatch(&mut tcp, bytes.clone())).unwrap());
    check(&rt.block_on(dispatch(&mut unix, bytes.clone())).unwrap());

    let mut g = c.benchmark_group("hmac_auth_dispatch");
    g.bench_function("in_process", |b| b.iter(|| runtime.dispatch(std::hint::black_box(&bytes)).unwrap()));
    // What the server asks before each dispatch (inline or on the blocking pool).
    g.bench_function("in_process_blocking", |b| b.iter(|| runtime.blocking(std::hint::black_box(&bytes))));
    g.bench_function("grpc_unix", |b| b.iter(|| rt.block_on(dispatch(&mut unix, bytes.clone())).unwrap()));
    g.bench_function("grpc_tcp", |b| b.iter(|| rt.block_on(dispatch(&mut tcp, bytes.clone())).unwrap()));
    g.finish();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
