//! Building your own plugin library: [`export_plugin!`](crate::export_plugin).

/// Emit the coprocess C ABI (`Dispatch`, `DispatchEvent`, `Reload`, `CoProcessFree`,
/// `CoProcessLastError`, `CoProcessAbiVersion`) from your own `cdylib` crate, over a registry
/// filled by the given function. Depend on `coprocess` with `default-features = false` (so
/// its own exports are not linked in twice) and, to offer the built-ins too, the `builtins`
/// feature plus a call to `coprocess::builtins::register`.
///
/// ```ignore
/// fn register(r: &mut coprocess::Registry) {
///     coprocess::builtins::register(r);
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

        /// See include/api.h.
        #[no_mangle]
        pub unsafe extern "C" fn Dispatch(
            object: *mut $crate::ffi::CoProcessMessage,
            new_object: *mut $crate::ffi::CoProcessMessage,
        ) -> ::std::ffi::c_int {
            unsafe { $crate::ffi::dispatch(__coprocess_runtime, object, new_object) }
        }

        /// See include/api.h.
        #[no_mangle]
        pub unsafe extern "C" fn DispatchEvent(event_json: *mut $crate::ffi::CoProcessMessage) -> ::std::ffi::c_int {
            unsafe { $crate::ffi::dispatch_event(__coprocess_runtime, event_json) }
        }

        /// See include/api.h.
        #[no_mangle]
        pub extern "C" fn Reload() -> ::std::ffi::c_int {
            $crate::ffi::reload(__coprocess_runtime)
        }

        /// See include/api.h.
        #[no_mangle]
        pub unsafe extern "C" fn CoProcessFree(p: *mut ::std::ffi::c_void) {
            unsafe { $crate::ffi::free(p) }
        }

        /// See include/api.h.
        #[no_mangle]
        pub extern "C" fn CoProcessLastError() -> *const ::std::ffi::c_char {
            $crate::ffi::last_error()
        }

        /// See include/api.h.
        #[no_mangle]
        pub extern "C" fn CoProcessAbiVersion() -> *const ::std::ffi::c_char {
            $crate::ffi::abi_version()
        }
    };
}
