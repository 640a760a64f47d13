//! Checks proto/coprocess.proto's `coprocess.Dispatcher` against what the server serves
//! (src/service.rs routes `Dispatch` and `DispatchEvent` by path) and generates the client.
//!
//! The proto is compiled with protox (no protoc needed) and the service is read from its
//! descriptor, so a method added to or renamed in the proto fails this build instead of being
//! served silently wrong. The client is generated with tonic-build's manual builder because
//! each method picks its codec: `Dispatch` passes the Object's bytes through untouched,
//! `DispatchEvent` uses prost with the library's own `Event`/`EventReply` types.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let proto_dir = manifest.join("../proto");
    let proto = proto_dir.join("coprocess.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [&proto_dir]).expect("proto/coprocess.proto does not compile");

    let file = fds.file.iter().find(|f| f.package() == "coprocess").expect("package coprocess");
    let service = file.service.iter().find(|s| s.name() == "Dispatcher").expect("service coprocess.Dispatcher");

    let mut builder = tonic_build::manual::Service::builder().name("Dispatcher").package("coprocess");
    for m in &service.method {
        assert!(!m.client_streaming() && !m.server_streaming(), "method {} must be unary", m.name());
        let (name, input, output, codec) = match (m.name(), m.input_type(), m.output_type()) {
            ("Dispatch", ".coprocess.Object", ".coprocess.Object") => {
                ("dispatch", "crate::codec::RawObject", "crate::codec::RawObject", "crate::codec::RawCodec")
            }
            ("DispatchEvent", ".coprocess.Event", ".coprocess.EventReply") => {
                ("dispatch_event", "coprocess::proto::Event", "coprocess::proto::EventReply", "tonic_prost::ProstCodec")
            }
            (name, i, o) => panic!("coprocess.Dispatcher/{name}({i}) returns ({o}) is not served by this build"),
        };
        builder = builder.method(
            tonic_build::manual::Method::builder()
                .name(name)
                .route_name(m.name())
                .input_type(input)
                .output_type(output)
                .codec_path(codec)
                .build(),
        );
    }
    assert_eq!(service.method.len(), 2, "coprocess.Dispatcher has Dispatch and DispatchEvent");
    tonic_build::manual::Builder::new().build_server(false).build_transport(true).compile(&[builder.build()]);
}
