//! The exported direction of the boundary: raw pointers in, codes and malloc'd buffers out.
//!
//! Every export goes through here. Each function checks its pointers before touching them,
//! catches every panic (code -4), records a per-thread error message, and hands the work to
//! the safe [`Runtime`]. The calls out to the host's functions live in `native`. These two
//! are the only modules with `unsafe` code (the crate denies it elsewhere).

use crate::context::Answer;
use crate::error::{Code, Error};
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

/// Success.
pub const COPROCESS_OK: c_int = 0;
/// A null pointer or a negative length was passed.
pub const COPROCESS_ERR_NULL: c_int = -1;
/// The bytes are not a valid Object, or not valid event JSON.
pub const COPROCESS_ERR_INVALID: c_int = -2;
/// No middleware or event handler is registered under that name, or not for that hook type.
pub const COPROCESS_ERR_NOT_FOUND: c_int = -3;
/// The middleware or event handler returned an error or panicked.
pub const COPROCESS_ERR_MIDDLEWARE: c_int = -4;
/// Invalid configuration (global file, config_data, or a section of either).
pub const COPROCESS_ERR_CONFIG: c_int = -5;

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

/// Write `answer` into a malloc'd buffer the host frees with free(3): one copy, straight from
/// the input bytes and the appended edits.
fn malloc_answer(answer: &Answer<'_>) -> Result<(*mut c_void, c_int), Error> {
    let n = answer.len();
    let len = c_int::try_from(n)
        .map_err(|_| Error::new(Code::Middleware, format!("answer of {n} bytes exceeds the ABI's int length")))?;
    // SAFETY: malloc of a non-zero size; checked for NULL below.
    let p = unsafe { libc::malloc(n.max(1)) };
    if p.is_null() {
        return Err(Error::new(Code::Middleware, "out of memory allocating the answer"));
    }
    let (head, tail) = answer.parts();
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
        let (p, len) = malloc_answer(&answer)?;
        // SAFETY: checked non-null above.
        unsafe {
            (*new_object).p_data = p;
            (*new_object).length = len;
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
