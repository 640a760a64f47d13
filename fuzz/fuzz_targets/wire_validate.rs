//! Differential: the allocation-free validator must accept exactly what prost's decoder
//! accepts, and the lazy readers must agree with the decoded Object.
#![no_main]
use coprocess::wire;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let decoded = coprocess::Object::decode(data);
    let valid = wire::validate(data);
    assert_eq!(valid.is_ok(), decoded.is_ok(), "validator {valid:?} vs prost {:?}", decoded.as_ref().err());
    if let Ok(obj) = decoded {
        assert_eq!(wire::last_str(data, 2), obj.hook_name);
        assert_eq!(wire::last_varint(data, 1) as i32, obj.hook_type);
        for (k, v) in &obj.spec {
            assert_eq!(wire::map_get(data, 6, k), Some(v.as_str()));
        }
    }
});
