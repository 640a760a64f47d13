//! Arbitrary bytes, and arbitrary event fields in the gateway's envelope, into DispatchEvent.
#![no_main]
use coprocess::abi::{self, CoProcessMessage};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fn send(bytes: &[u8]) {
    let mut m = CoProcessMessage { p_data: bytes.as_ptr() as *mut _, length: bytes.len() as i32 };
    if bytes.is_empty() {
        m.p_data = b"\0".as_ptr() as *mut _;
    }
    let rc = unsafe { abi::dispatch_event(common::runtime, &mut m) };
    assert!((-5..=0).contains(&rc), "unexpected code {rc}");
    assert_ne!(rc, -4, "event handlers must not fail on any input");
}

fuzz_target!(|data: (&[u8], u8, String, String)| {
    let (raw, which, event_type, meta) = data;
    send(raw);
    let handler = ["LogEvent", "RelayEvent", "Nobody", ""][which as usize % 4];
    let meta = if meta.starts_with('{') { meta } else { format!("{meta:?}") };
    let json = format!(
        r#"{{"message":{{"Type":{event_type:?},"Meta":{meta},"TimeStamp":"t"}},"handler_name":"{handler}","spec":{{"APIID":"a"}}}}"#
    );
    send(json.as_bytes());
});
