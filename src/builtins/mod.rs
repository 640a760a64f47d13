//! The built-in middleware and event handlers, one file each.

pub mod events;
pub mod hmac_auth;
pub mod inject_headers;
pub mod reqhub;
pub mod signature;
pub mod static_token;
pub mod upstream_signing;

use crate::Registry;

/// Whether `s` is a valid header name (a non-empty RFC 9110 token), shared by every built-in.
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(signature::is_tchar)
}

/// Register every built-in middleware and event handler.
pub fn register(r: &mut Registry) {
    r.middleware::<inject_headers::InjectHeaders>()
        .middleware::<static_token::StaticTokenAuth>()
        .middleware::<upstream_signing::UpstreamRequestSigning>()
        .middleware::<hmac_auth::HmacSignatureAuth>()
        .middleware::<reqhub::ReqHubMerchant>()
        .event_handler::<events::LogEvent>()
        .event_handler::<events::RelayEvent>();
}

/// A registry holding every built-in.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r);
    r
}
