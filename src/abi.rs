//! The exported direction of the boundary: raw pointers in, codes and malloc'd buffers out.
//!
//! Every export goes through here. Each function checks its pointers before touching them,
//! catches every panic (code -4), records a per-thread error message, and hands the work to
//! the safe [`Runtime`]. The calls out to the host's functions live in `native`. These two
//! are the only modules with `unsafe` code (the crate denies it elsewhere).

use crate::answer::Answer;
use crate::error::{Code, Error, COPROCESS_OK};
use crate::native::c_string;
use crate::runtime::Runtime;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A byte buffer crossing the ABI. `length` is authoritative; no NUL terminator is assumed.
#[repr(C)]
pub struct CoProcessMessage {
    /// The bytes (serialised `coprocess.Object`, or event JSON).
    pub p_data: *mut c_void,
    /// Their number; negative is an error (-1).
    pub length: c_int,
}

/// The ABI version this library implements, as `CoProcessAbiVersion` returns it. A host
/// refuses a library whose version it does not know.
pub const COPROCESS_ABI_VERSION: &str = "coprocess-abi/1";

/// `COPROCESS_ABI_VERSION` with its NUL terminator, for `CoProcessAbiVersion`.
static ABI_VERSION_C: [u8; COPROCESS_ABI_VERSION.len() + 1] = {
    let mut out = [0u8; COPROCESS_ABI_VERSION.len() + 1];
    let bytes = COPROCESS_ABI_VERSION.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = c_string(message);
    // try_with: during thread teardown the slot may be gone; the message is then dropped
    // rather than panicking outside the panic boundary.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|e| {
        let mut e = e.borrow_mut();
        if !e.as_bytes().is_empty() {
            *e = CString::default();
        }
    });
}

fn fail(err: Error) -> c_int {
    set_last_error(&err.message);
    err.code.as_int()
}

/// Run `f` with panics turned into -4 and errors into codes plus the per-thread message.
fn guarded(f: impl FnOnce() -> Result<(), Error>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            clear_last_error();
            COPROCESS_OK
        }
        Ok(Err(e)) => fail(e),
        Err(_) => fail(Error::new(Code::Middleware, "internal panic in coprocess (caught at the ABI boundary)")),
    }
}

/// Borrow the bytes of a message.
///
/// # Safety
/// `msg` must be null or point to a valid `CoProcessMessage` whose `p_data` (when non-null)
/// points to at least `length` readable bytes for the duration of the borrow.
unsafe fn message_bytes<'a>(msg: *const CoProcessMessage, what: &str) -> Result<&'a [u8], Error> {
    if msg.is_null() {
        return Err(Error::new(Code::NullPointer, format!("{what} is a null pointer")));
    }
    // SAFETY: non-null and, by the caller's contract, valid.
    let msg = unsafe { &*msg };
    if msg.p_data.is_null() {
        return Err(Error::new(Code::NullPointer, format!("{what}.p_data is a null pointer")));
    }
    if msg.length < 0 {
        return Err(Error::new(Code::NullPointer, format!("{what}.length is negative ({})", msg.length)));
    }
    // SAFETY: p_data is non-null and points to `length` readable bytes (caller's contract).
    Ok(unsafe { std::slice::from_raw_parts(msg.p_data as *const u8, msg.length as usize) })
}

/// Write `answer` to `input` into a malloc'd buffer the host frees with free(3): one copy,
/// straight from the input bytes and the appended edits.
fn malloc_answer(input: &[u8], answer: &Answer) -> Result<(*mut c_void, c_int), Error> {
    let n = answer.len(input);
    let len = c_int::try_from(n)
        .map_err(|_| Error::new(Code::Middleware, format!("answer of {n} bytes exceeds the ABI's int length")))?;
    // SAFETY: malloc of a non-zero size; checked for NULL below.
    let p = unsafe { libc::malloc(n.max(1)) };
    if p.is_null() {
        return Err(Error::new(Code::Middleware, "out of memory allocating the answer"));
    }
    let (head, tail) = answer.parts(input);
    // SAFETY: p is a fresh allocation of n = head.len() + tail.len() bytes that overlaps
    // neither part; the two copies fill it exactly.
    unsafe {
        std::ptr::copy_nonoverlapping(head.as_ptr(), p as *mut u8, head.len());
        std::ptr::copy_nonoverlapping(tail.as_ptr(), (p as *mut u8).add(head.len()), tail.len());
    }
    Ok((p, len))
}

/// `Dispatch`: see the export's documentation in include/api.h.
///
/// # Safety
/// Pointers as documented for `Dispatch`.
pub unsafe fn dispatch(
    runtime: impl FnOnce() -> &'static Runtime,
    object: *mut CoProcessMessage,
    new_object: *mut CoProcessMessage,
) -> c_int {
    if !new_object.is_null() {
        // SAFETY: non-null out-parameter owned by the caller.
        unsafe {
            (*new_object).p_data = std::ptr::null_mut();
            (*new_object).length = 0;
        }
    }
    guarded(|| {
        if new_object.is_null() {
            return Err(Error::new(Code::NullPointer, "new_object is a null pointer"));
        }
        // SAFETY: caller's contract for `object`.
        let input = unsafe { message_bytes(object, "object") }?;
        let answer = runtime().dispatch_answer(input)?;
        let (p, len) = malloc_answer(input, &answer)?;
        // SAFETY: checked non-null above.
        unsafe {
            (*new_object).p_data = p;
            (*new_object).length = len;
        }
        Ok(())
    })
}

/// `CoProcessMetrics`: see the export's documentation in include/api.h.
///
/// # Safety
/// `out` is null or points to a writable `CoProcessMessage`.
pub unsafe fn metrics(runtime: impl FnOnce() -> &'static Runtime, out: *mut CoProcessMessage) -> c_int {
    guarded(|| {
        if out.is_null() {
            return Err(Error::new(Code::NullPointer, "out is a null pointer"));
        }
        let text = runtime().metrics();
        let (p, len) = malloc_answer(text.as_bytes(), &Answer::Appended(Vec::new()))?;
        // SAFETY: checked non-null above; the caller owns the struct.
        unsafe {
            (*out).p_data = p;
            (*out).length = len;
        }
        Ok(())
    })
}

/// `DispatchEvent`: see the export's documentation in include/api.h.
///
/// # Safety
/// Pointers as documented for `DispatchEvent`.
pub unsafe fn dispatch_event(runtime: impl FnOnce() -> &'static Runtime, event_json: *mut CoProcessMessage) -> c_int {
    guarded(|| {
        // SAFETY: caller's contract for `event_json`.
        let input = unsafe { message_bytes(event_json, "event_json") }?;
        runtime().dispatch_event(input)
    })
}

/// `Reload`.
pub fn reload(runtime: impl FnOnce() -> &'static Runtime) -> c_int {
    guarded(|| runtime().reload())
}

/// `CoProcessFree`.
///
/// # Safety
/// `p` is null or a buffer returned by `Dispatch` not yet freed.
pub unsafe fn free(p: *mut c_void) {
    // SAFETY: caller's contract: p came from libc::malloc in malloc_answer, or is null.
    unsafe { libc::free(p) }
}

/// `CoProcessLastError`.
pub fn last_error() -> *const c_char {
    LAST_ERROR.try_with(|e| e.borrow().as_ptr()).unwrap_or(c"".as_ptr())
}

/// `CoProcessAbiVersion`.
pub fn abi_version() -> *const c_char {
    ABI_VERSION_C.as_ptr() as *const c_char
}

/// Emit the coprocess C ABI (`Dispatch`, `DispatchEvent`, `Reload`, `CoProcessFree`,
/// `CoProcessLastError`, `CoProcessAbiVersion`, `CoProcessMetrics`) from a `cdylib` crate, over a registry filled by
/// the given function. This macro is the one definition of the exported functions: the
/// library built from this repository (cdylib/) uses it too, and include/api.h is generated from
/// the items between the `exports` markers below (`make header`).
///
/// ```ignore
/// fn register(r: &mut coprocess::Registry) {
///     coprocess::builtins::register(r); // optional: the built-ins beside your middleware
///     r.middleware::<MyMiddleware>();
/// }
/// coprocess::export_plugin!(register);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($register:path) => {
        #[doc(hidden)]
        fn __coprocess_runtime() -> &'static $crate::Runtime {
            static RUNTIME: ::std::sync::OnceLock<$crate::Runtime> = ::std::sync::OnceLock::new();
            RUNTIME.get_or_init(|| {
                let mut registry = $crate::Registry::new();
                $register(&mut registry);
                $crate::Runtime::from_env(registry)
            })
        }

        // exports: begin
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
        pub unsafe extern "C" fn Dispatch(
            object: *mut $crate::abi::CoProcessMessage,
            new_object: *mut $crate::abi::CoProcessMessage,
        ) -> ::std::ffi::c_int {
            // SAFETY: the caller upholds the documented pointer contract.
            unsafe { $crate::abi::dispatch(__coprocess_runtime, object, new_object) }
        }

        /// Run the event handler named by the event JSON's handler_name. `event_json` is borrowed
        /// for the call (`length` bytes of UTF-8 JSON, no terminator needed). Returns 0 or a negative
        /// COPROCESS_ERR_* code (see CoProcessLastError()).
        #[no_mangle]
        pub unsafe extern "C" fn DispatchEvent(event_json: *mut $crate::abi::CoProcessMessage) -> ::std::ffi::c_int {
            // SAFETY: the caller upholds the documented pointer contract.
            unsafe { $crate::abi::dispatch_event(__coprocess_runtime, event_json) }
        }

        /// Re-read the global configuration file (COPROCESS_CONFIG), drop cached per-API
        /// configuration and notify every middleware. Dispatches in flight finish on the state they
        /// started with. Returns 0, or COPROCESS_ERR_CONFIG (-5) keeping the last good state.
        #[no_mangle]
        pub extern "C" fn Reload() -> ::std::ffi::c_int {
            $crate::abi::reload(__coprocess_runtime)
        }

        /// Release a buffer returned in Dispatch's new_object (same as free(3)). NULL is ignored.
        #[no_mangle]
        pub unsafe extern "C" fn CoProcessFree(p: *mut ::std::ffi::c_void) {
            // SAFETY: the caller passes a buffer from Dispatch or NULL.
            unsafe { $crate::abi::free(p) }
        }

        /// The reason for this thread's last failed call ("" after a success). Owned by the library,
        /// valid until this thread's next call into the library.
        #[no_mangle]
        pub extern "C" fn CoProcessLastError() -> *const ::std::ffi::c_char {
            $crate::abi::last_error()
        }

        /// The ABI version this library implements (COPROCESS_ABI_VERSION): a static string owned by the
        /// library. A host refuses a library whose version it does not know.
        #[no_mangle]
        pub extern "C" fn CoProcessAbiVersion() -> *const ::std::ffi::c_char {
            $crate::abi::abi_version()
        }
        /// Write the library's metrics into `out`: the Prometheus text exposition format
        /// (version 0.0.4) in a malloc(3) buffer of `length` bytes (no NUL terminator), which the
        /// caller releases with free(3) or CoProcessFree. Dispatches by middleware, hook type and
        /// outcome, their durations, events, reloads and the configuration cache
        /// (docs/operations.md). Returns 0, or COPROCESS_ERR_NULL when `out` is NULL.
        #[no_mangle]
        pub unsafe extern "C" fn CoProcessMetrics(out: *mut $crate::abi::CoProcessMessage) -> ::std::ffi::c_int {
            // SAFETY: the caller upholds the documented pointer contract.
            unsafe { $crate::abi::metrics(__coprocess_runtime, out) }
        }
        // exports: end
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn abi_version_matches_constant() {
        // SAFETY: static NUL-terminated string.
        let s = unsafe { CStr::from_ptr(abi_version()) };
        assert_eq!(s.to_str().unwrap(), COPROCESS_ABI_VERSION);
    }

    #[test]
    fn null_and_negative_inputs_are_rejected_before_use() {
        // SAFETY: null is explicitly allowed.
        assert!(matches!(unsafe { message_bytes(std::ptr::null(), "x") }, Err(e) if e.code == Code::NullPointer));
        let mut b = [0u8; 4];
        let m = CoProcessMessage { p_data: b.as_mut_ptr() as *mut c_void, length: -3 };
        // SAFETY: valid message struct.
        let r = unsafe { message_bytes(&m, "object") };
        assert!(matches!(r, Err(e) if e.message.contains("negative")));
    }
}
