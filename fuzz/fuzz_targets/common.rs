//! Shared by the fuzz targets: a runtime over the built-ins with a fake host and a fixed
//! global configuration, reached through the real `ffi` boundary functions.
#![allow(dead_code)]

use coprocess::abi::{self, CoProcessMessage};
use coprocess::{ConfigSource, FakeHost, Runtime};
use std::sync::{Arc, OnceLock};

pub const GLOBAL: &str = r#"{
  "RelayEvent": {"event_name": "Relayed"},
  "LogEvent": {"level": "debug"},
  "InjectHeaders": {"add": {"X-Global": "1"}}
}"#;

pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let sections = coprocess::config::parse_sections(GLOBAL.as_bytes()).expect("valid");
        Runtime::new(coprocess::builtins::registry(), Arc::new(FakeHost::new()), ConfigSource::Fixed(sections))
    })
}

/// Dispatch through the ABI function; checks the ABI's promises on the result.
pub fn dispatch(bytes: &[u8]) {
    let mut input = CoProcessMessage { p_data: bytes.as_ptr() as *mut _, length: bytes.len() as i32 };
    if bytes.is_empty() {
        // A non-null pointer of length 0 is an empty Object.
        input.p_data = b"\0".as_ptr() as *mut _;
    }
    let mut out = CoProcessMessage { p_data: std::ptr::null_mut(), length: 0 };
    let rc = unsafe { abi::dispatch(runtime, &mut input, &mut out) };
    if rc == 0 {
        assert!(!out.p_data.is_null() && out.length >= 0);
        let answer = unsafe { std::slice::from_raw_parts(out.p_data as *const u8, out.length as usize) };
        <coprocess::Object as prost::Message>::decode(answer).expect("a successful answer decodes");
        unsafe { abi::free(out.p_data) };
    } else {
        assert!((-5..=-1).contains(&rc), "unexpected code {rc}");
        assert!(out.p_data.is_null() && out.length == 0);
        assert_ne!(rc, -4, "built-ins must not fail or panic on any input");
    }
}
