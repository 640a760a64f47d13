//! libcoprocess.so: the C ABI (include/api.h, docs/abi.md) over every built-in middleware and
//! event handler. Everything else is the `coprocess` SDK crate; a plugin library of your own
//! is a crate like this one with its own register function.

sdk::export_plugin!(sdk::builtins::register);
