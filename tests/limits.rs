//! Limits and hostile sizes: the message size limit (COPROCESS_MAX_MESSAGE_BYTES), enormous
//! headers, many repeated fields, invalid UTF-8 in string fields. Its own test binary because
//! it sets a process-wide environment variable.

use coprocess::testing::{set_header, ObjectBuilder};
use coprocess::{Code, HookType, Runtime};
use prost::Message;

fn runtime(global: &str) -> Runtime {
    coprocess::testing::runtime(coprocess::builtins::registry(), global).0
}

#[test]
fn limits_and_hostile_sizes() {
    // One test function: the environment variable is process-wide.
    std::env::set_var("COPROCESS_MAX_MESSAGE_BYTES", "2000");
    let rt = runtime(r#"{"InjectHeaders": {"add": {"X-A": "1"}}}"#);
    let small = ObjectBuilder::new(HookType::Pre, "InjectHeaders").header("H", &"x".repeat(100)).encode();
    assert!(rt.dispatch(&small).is_ok());
    let big = ObjectBuilder::new(HookType::Pre, "InjectHeaders").header("H", &"x".repeat(3000)).encode();
    let err = rt.dispatch(&big).unwrap_err();
    assert_eq!(err.code, Code::InvalidInput);
    assert!(err.message.contains("exceeds the limit of 2000 bytes"), "{}", err.message);
    let event = format!(r#"{{"message":{{"Type":"{}"}},"handler_name":"LogEvent"}}"#, "x".repeat(3000));
    assert_eq!(rt.dispatch_event(event.as_bytes()).unwrap_err().code, Code::InvalidInput);

    std::env::set_var("COPROCESS_MAX_MESSAGE_BYTES", "lots");
    let err = rt.reload().unwrap_err();
    assert_eq!(err.code, Code::Config);
    assert!(err.message.contains("COPROCESS_MAX_MESSAGE_BYTES"), "{}", err.message);
    assert!(rt.dispatch(&big).is_err(), "the last good limit stays");

    std::env::remove_var("COPROCESS_MAX_MESSAGE_BYTES");
    rt.reload().unwrap();
    // Enormous header values and many headers pass through untouched under the default limit.
    let mut b = ObjectBuilder::new(HookType::Pre, "InjectHeaders").header("Huge", &"y".repeat(4 << 20));
    for i in 0..10_000 {
        b = b.header(&format!("X-{i}"), "v");
    }
    let out = rt.dispatch(&b.encode()).unwrap();
    let out = coprocess::Object::decode(&out[..]).unwrap();
    assert_eq!(set_header(&out, "X-A"), Some("1"));
    assert_eq!(out.request.as_ref().unwrap().headers["Huge"].len(), 4 << 20);

    // Deeply repeated fields: 100k delete_headers entries.
    let mut obj = ObjectBuilder::new(HookType::Pre, "InjectHeaders").build();
    obj.request.as_mut().unwrap().delete_headers = (0..100_000).map(|i| i.to_string()).collect();
    assert!(rt.dispatch(&obj.encode_to_vec()).is_ok());

    // Invalid UTF-8 in a string field (hook_name = field 2) is not a valid Object.
    let mut bytes = ObjectBuilder::new(HookType::Pre, "InjectHeaders").encode();
    let at = bytes.windows(13).position(|w| w == b"InjectHeaders").unwrap();
    bytes[at] = 0xff;
    let err = rt.dispatch(&bytes).unwrap_err();
    assert_eq!(err.code, Code::InvalidInput);
    // A length prefix that overflows the buffer.
    assert_eq!(rt.dispatch(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a']).unwrap_err().code, Code::InvalidInput);
}
