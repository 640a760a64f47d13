//! The built-in middleware and event handlers, one file each.

pub mod cavage;
pub mod events;
pub mod hmac_auth;
pub mod inject_headers;
pub mod reqhub;
pub mod static_token;
pub mod upstream_signing;

use crate::Registry;
use std::time::Duration;

/// Whether `s` is a valid header name (a non-empty RFC 9110 token), shared by every built-in.
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(cavage::is_tchar)
}

/// The session's `id_extractor_deadline` for an auth built-in's `id_extractor_ttl_s`: now plus
/// the TTL in unix seconds, `None` when the TTL is 0 (the template's value stays). While the
/// deadline is in the future the gateway's ID extractor answers from the stored session
/// without calling the plugin.
pub(crate) fn id_extractor_deadline(now: Duration, ttl_s: u64) -> Option<i64> {
    (ttl_s > 0).then(|| i64::try_from(now.as_secs().saturating_add(ttl_s)).unwrap_or(i64::MAX))
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
