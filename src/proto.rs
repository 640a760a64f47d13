//! The wire schema (proto/coprocess.proto) as prost types: plain structs with public fields.
//!
//! Field numbers are the gateway's; `HookType` values are the gateway's hook types.

#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/coprocess.rs"));

impl HookType {
    /// The gateway's name of the hook type (as in an API definition's custom_middleware).
    pub fn name(self) -> &'static str {
        self.as_str_name()
    }
}
