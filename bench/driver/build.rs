//! Links the driver against libcoprocess.so (`COPROCESS_LIBDIR`, default the repository's
//! target/release) and a tiny C shared library holding the copy floor, built here with `cc`.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let libdir =
        env::var("COPROCESS_LIBDIR").map(PathBuf::from).unwrap_or_else(|_| manifest.join("../../target/release"));
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(out.join("libbenchfloor.so"))
        .arg(manifest.join("floor.c"))
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "compiling floor.c failed");
    for dir in [&libdir, &out] {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    println!("cargo:rustc-link-lib=dylib=coprocess");
    println!("cargo:rustc-link-lib=dylib=benchfloor");
    // The host functions the driver defines (CoProcessLog) must be in the dynamic symbol
    // table, where the library's weak imports find them.
    println!("cargo:rustc-link-arg=-rdynamic");
    println!("cargo:rerun-if-changed=floor.c");
    println!("cargo:rerun-if-env-changed=COPROCESS_LIBDIR");
    println!("cargo:rerun-if-env-changed=CC");
}
