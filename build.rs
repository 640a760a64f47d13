//! Generates the protobuf types (prost, from proto/ through protox: no protoc needed), the C
//! header include/api.h (cbindgen) and compiles the weak-import shim for the host functions.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());

    generate_protos(&manifest);
    compile_shim(&manifest);
    generate_header(&manifest, &out);
}

fn generate_protos(manifest: &Path) {
    let proto = manifest.join("proto/coprocess.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = protox::compile([&proto], [manifest.join("proto")]).expect("proto/ does not compile");
    let mut config = prost_build::Config::new();
    // BTreeMap for every map field: deterministic encoding, and no interior pointers (hashbrown
    // keeps one) that make leak checkers report live global state as "possibly lost".
    config.btree_map(["."]);
    // Session templates in configuration are JSON objects with SessionState's snake_case field
    // names; unknown keys are a configuration error.
    for message in ["SessionState", "AccessDefinition", "AccessSpec", "BasicAuthData", "JWTData", "Monitor"] {
        config.type_attribute(
            format!(".coprocess.{message}"),
            "#[derive(serde::Deserialize)] #[serde(deny_unknown_fields, default)]",
        );
    }
    config.compile_fds(fds).expect("prost code generation failed");
}

fn compile_shim(manifest: &Path) {
    let shim = manifest.join("csrc/host_shim.c");
    println!("cargo:rerun-if-changed={}", shim.display());
    cc::Build::new().file(&shim).flag_if_supported("-fvisibility=hidden").warnings(true).compile("coprocess_host_shim");
}

fn generate_header(manifest: &Path, out: &Path) {
    for f in ["src", "cbindgen.toml"] {
        println!("cargo:rerun-if-changed={}", manifest.join(f).display());
    }
    let config = cbindgen::Config::from_file(manifest.join("cbindgen.toml")).expect("cbindgen.toml");
    // Only the boundary files: public constants elsewhere in the crate are not ABI.
    let bindings = cbindgen::Builder::new()
        .with_src(manifest.join("src/ffi.rs"))
        .with_src(manifest.join("src/exports.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate include/api.h");
    let generated = out.join("api.h");
    bindings.write_to_file(&generated);
    // The committed header is kept in sync by every build; `make check-header` (part of the
    // test command) fails when a fresh build changes the committed file.
    let text = std::fs::read(&generated).unwrap();
    let committed = manifest.join("include/api.h");
    if std::fs::read(&committed).ok().as_deref() != Some(&text[..]) {
        std::fs::create_dir_all(manifest.join("include")).unwrap();
        std::fs::write(&committed, &text).unwrap();
    }
}
