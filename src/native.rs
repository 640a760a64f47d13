//! Calls out to the host process: the gateway's functions, weakly imported through the shim in
//! csrc/host_shim.c, as safe wrappers. [`NativeHost`](crate::NativeHost) is their only caller.
//!
//! Every string passed is a fresh NUL-terminated copy that outlives the call (the host only
//! borrows it); interior NUL bytes, which C cannot carry, become U+FFFD. A string the host
//! returns (`TykGetData`) is malloc'd by the host and freed here exactly once.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

extern "C" {
    fn coprocess_shim_trigger_event(event_name: *mut c_char, payload: *mut c_char) -> c_int;
    fn coprocess_shim_log(msg: *mut c_char, level: *mut c_char) -> c_int;
    fn coprocess_shim_store_data(key: *mut c_char, value: *mut c_char, ttl: c_int) -> c_int;
    fn coprocess_shim_get_data(key: *mut c_char, present: *mut c_int) -> *mut c_char;
    fn coprocess_shim_store_data_if_absent(
        key: *mut c_char,
        value: *mut c_char,
        ttl: c_int,
        present: *mut c_int,
    ) -> c_int;
    fn coprocess_shim_has_store() -> c_int;
}

/// A C string: interior NUL bytes (which C cannot carry) become U+FFFD.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\u{FFFD}")).expect("no NUL left"))
}

/// A TTL in seconds as C's int (clamped).
fn c_ttl(ttl: i64) -> c_int {
    ttl.clamp(i64::from(c_int::MIN), i64::from(c_int::MAX)) as c_int
}

/// `TykTriggerEvent(name, payload)`; false when the host does not define it.
pub(crate) fn trigger_event(name: &str, payload: &str) -> bool {
    let (n, p) = (c_string(name), c_string(payload));
    // SAFETY: both are valid NUL-terminated strings that outlive the call; the host borrows
    // them only for the call.
    unsafe { coprocess_shim_trigger_event(n.as_ptr() as *mut c_char, p.as_ptr() as *mut c_char) != 0 }
}

/// `CoProcessLog(message, level)`; false when the host does not define it.
pub(crate) fn log(message: &str, level: &str) -> bool {
    let (m, l) = (c_string(message), c_string(level));
    // SAFETY: as in trigger_event.
    unsafe { coprocess_shim_log(m.as_ptr() as *mut c_char, l.as_ptr() as *mut c_char) != 0 }
}

/// `TykStoreData(key, value, ttl)`; false when the host does not define it.
pub(crate) fn store_data(key: &str, value: &str, ttl: i64) -> bool {
    let (k, v) = (c_string(key), c_string(value));
    // SAFETY: as in trigger_event.
    unsafe { coprocess_shim_store_data(k.as_ptr() as *mut c_char, v.as_ptr() as *mut c_char, c_ttl(ttl)) != 0 }
}

/// `TykGetData(key)`: `None` when the host does not define it, else the value as the host
/// returned it (`None` inside for NULL; invalid UTF-8 replaced).
pub(crate) fn get_data(key: &str) -> Option<Option<String>> {
    let k = c_string(key);
    let mut present: c_int = 0;
    // SAFETY: `k` is a valid C string for the call; `present` is a valid out-pointer.
    let value = unsafe { coprocess_shim_get_data(k.as_ptr() as *mut c_char, &mut present) };
    if present == 0 {
        return None;
    }
    if value.is_null() {
        return Some(None);
    }
    // SAFETY: the host returned a malloc'd NUL-terminated string whose ownership passed to us.
    let owned = unsafe { CStr::from_ptr(value) }.to_string_lossy().into_owned();
    // SAFETY: ownership of the host's malloc'd buffer passed to us; freed once, here.
    unsafe { libc::free(value as *mut c_void) };
    Some(Some(owned))
}

/// `CoProcessStoreDataIfAbsent(key, value, ttl)`: `None` when the host does not define it,
/// else the host's answer (1 stored, 0 already present, negative: the store is unavailable).
pub(crate) fn store_data_if_absent(key: &str, value: &str, ttl: i64) -> Option<c_int> {
    let (k, v) = (c_string(key), c_string(value));
    let mut present: c_int = 0;
    // SAFETY: as in trigger_event; `present` is a valid out-pointer.
    let rc = unsafe {
        coprocess_shim_store_data_if_absent(
            k.as_ptr() as *mut c_char,
            v.as_ptr() as *mut c_char,
            c_ttl(ttl),
            &mut present,
        )
    };
    (present != 0).then_some(rc)
}

/// Whether the host defines `TykGetData` or `TykStoreData` (a store of its own).
pub(crate) fn has_store() -> bool {
    // SAFETY: reads two symbol addresses, no arguments.
    unsafe { coprocess_shim_has_store() != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_strings_survive_interior_nul() {
        assert_eq!(c_string("a\0b").to_str().unwrap(), "a\u{FFFD}b");
    }

    #[test]
    fn ttls_are_clamped_to_c_int() {
        assert_eq!(c_ttl(i64::MAX), c_int::MAX);
        assert_eq!(c_ttl(-5), -5);
    }
}
