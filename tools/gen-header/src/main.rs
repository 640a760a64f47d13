//! Writes include/api.h (`make header`): cbindgen over the SDK's boundary sources.
//!
//! - src/abi.rs: `CoProcessMessage`, and the exported functions, which are defined once, in
//!   the `export_plugin!` macro; the items between its `// exports: begin` and
//!   `// exports: end` markers are handed to cbindgen with `$crate` read as `crate`;
//! - src/error.rs: the `COPROCESS_*` result codes;
//! - the ABI version from [`coprocess::abi::COPROCESS_ABI_VERSION`] (cbindgen does not emit
//!   string constants), as `#define COPROCESS_ABI_VERSION`.
//!
//! Usage: `coprocess-gen-header [OUTPUT]` (default include/api.h under the repository root).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const BEGIN: &str = "// exports: begin";
const END: &str = "// exports: end";

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| root.join("include/api.h"));
    match generate(&root, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coprocess-gen-header: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The exported functions as plain items: the macro's `exports` region, `$crate` as `crate`.
fn exported_items(abi_rs: &str) -> Result<String, String> {
    let start = abi_rs.find(BEGIN).ok_or("src/abi.rs has no `// exports: begin` marker")? + BEGIN.len();
    let end = abi_rs[start..].find(END).ok_or("src/abi.rs has no `// exports: end` marker")? + start;
    let items = abi_rs[start..end].replace("$crate::", "crate::");
    if items.contains('$') {
        return Err("the exports region uses a macro variable other than $crate".into());
    }
    Ok(items)
}

fn generate(root: &Path, out: &Path) -> Result<(), String> {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).map_err(|e| format!("cannot read {p}: {e}"));
    let exports = exported_items(&read("src/abi.rs")?)?;
    let scratch = std::env::temp_dir().join(format!("coprocess-gen-header-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let exports_rs = scratch.join("exports.rs");
    std::fs::write(&exports_rs, exports).map_err(|e| format!("cannot write {}: {e}", exports_rs.display()))?;

    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).map_err(|e| format!("cbindgen.toml: {e}"))?;
    let version = format!(
        "/* The ABI version this header describes: CoProcessAbiVersion() of a library implementing it\n \
         * returns this string. */\n#define COPROCESS_ABI_VERSION \"{}\"\n",
        coprocess::abi::COPROCESS_ABI_VERSION
    );
    config.after_includes = Some(version + config.after_includes.as_deref().unwrap_or(""));
    let result = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/abi.rs"))
        .with_src(root.join("src/error.rs"))
        .with_src(&exports_rs)
        .generate()
        .map_err(|e| format!("cbindgen: {e}"));
    let _ = std::fs::remove_dir_all(&scratch);
    let bindings = result?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    bindings.write_to_file(out);
    Ok(())
}
