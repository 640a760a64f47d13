//! The exported C ABI of the library built from this crate (feature `exports`), over the
//! built-in middleware. A crate building its own plugin library emits the same symbols with
//! [`export_plugin!`](crate::export_plugin) instead. The doc comments below land in
//! include/api.h.

use crate::ffi::{self, CoProcessMessage};
use crate::runtime::Runtime;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::from_env(crate::builtins::registry()))
}

/// Run the middleware named by the Object's hook_name.
///
/// `object` is borrowed for the call: `p_data` holds `length` bytes of a serialised
/// coprocess.Object (`p_data` NULL is -1 whatever the length; length 0 is an empty Object).
/// On success returns 0 and fills `new_object` with a malloc(3) buffer holding the serialised
/// resulting Object, which the caller releases with free(3) or CoProcessFree. On failure
/// returns a negative COPROCESS_ERR_* code, leaves `new_object` as {NULL, 0}, and
/// CoProcessLastError() tells why. A middleware rejecting the request is not a failure: it
/// sets request.return_overrides and Dispatch returns 0.
#[no_mangle]
pub unsafe extern "C" fn Dispatch(object: *mut CoProcessMessage, new_object: *mut CoProcessMessage) -> c_int {
    // SAFETY: the caller upholds the documented pointer contract.
    unsafe { ffi::dispatch(runtime, object, new_object) }
}

/// Run the event handler named by the event JSON's handler_name. `event_json` is borrowed
/// for the call (`length` bytes of UTF-8 JSON, no terminator needed). Returns 0 or a negative
/// COPROCESS_ERR_* code (see CoProcessLastError()).
#[no_mangle]
pub unsafe extern "C" fn DispatchEvent(event_json: *mut CoProcessMessage) -> c_int {
    // SAFETY: the caller upholds the documented pointer contract.
    unsafe { ffi::dispatch_event(runtime, event_json) }
}

/// Re-read the global configuration file (COPROCESS_CONFIG), drop cached per-API
/// configuration and notify every middleware. Dispatches in flight finish on the state they
/// started with. Returns 0, or COPROCESS_ERR_CONFIG (-5) keeping the last good state.
#[no_mangle]
pub extern "C" fn Reload() -> c_int {
    ffi::reload(runtime)
}

/// Release a buffer returned in Dispatch's new_object (same as free(3)). NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn CoProcessFree(p: *mut c_void) {
    // SAFETY: the caller passes a buffer from Dispatch or NULL.
    unsafe { ffi::free(p) }
}

/// The reason for this thread's last failed call ("" after a success). Owned by the library,
/// valid until this thread's next call into the library.
#[no_mangle]
pub extern "C" fn CoProcessLastError() -> *const c_char {
    ffi::last_error()
}

/// The ABI version this library implements ("coprocess-abi/1"): a static string owned by the
/// library. A host refuses a library whose version it does not know.
#[no_mangle]
pub extern "C" fn CoProcessAbiVersion() -> *const c_char {
    ffi::abi_version()
}
