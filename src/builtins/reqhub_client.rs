//! The ReqHub signing formula and a client-side helper that produces the five client headers.
//!
//! Both sides of a ReqHub request carry the same five-header set, once for the client
//! (`ClientToken`, `ClientKey`, `ClientTimestamp`, `ClientNonce`, `ClientUrl`) and once for the
//! merchant (`Merchant...`). The token is
//! `base64(HMAC-SHA256(key = privateKey + timestamp + nonce + url, message = publicKey))`,
//! where the four key parts are concatenated as text, the timestamp is the UNIX time in
//! milliseconds (13 digits) and the nonce is the base64 of 20 random bytes.
//!
//! ```
//! use coprocess::builtins::reqhub::client::SignedHeaders;
//! // A client signs its request to /v1/items with its key pair, now, and a fresh nonce:
//! let headers = SignedHeaders::client_now("client-public-key", "client-private-key", "/v1/items").unwrap();
//! for (name, value) in headers.client_pairs() {
//!     // request.header(name, value)
//!     assert!(!value.is_empty(), "{name}");
//! }
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// The number of random bytes in a nonce.
pub const NONCE_BYTES: usize = 20;

/// The client header names, in the order of [`SignedHeaders::client_pairs`].
pub const CLIENT_HEADERS: [&str; 5] = ["ClientToken", "ClientKey", "ClientTimestamp", "ClientNonce", "ClientUrl"];

/// The merchant header names, in the order of [`SignedHeaders::merchant_pairs`].
pub const MERCHANT_HEADERS: [&str; 5] =
    ["MerchantToken", "MerchantKey", "MerchantTimestamp", "MerchantNonce", "MerchantUrl"];

/// The raw HMAC-SHA256 of the ReqHub token formula (see the module documentation).
pub fn token_bytes(public_key: &str, private_key: &str, timestamp: &str, nonce: &str, url: &str) -> [u8; 32] {
    let mut key = Vec::with_capacity(private_key.len() + timestamp.len() + nonce.len() + url.len());
    key.extend_from_slice(private_key.as_bytes());
    key.extend_from_slice(timestamp.as_bytes());
    key.extend_from_slice(nonce.as_bytes());
    key.extend_from_slice(url.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(public_key.as_bytes());
    // Best effort: do not leave the derived key in freed memory longer than needed.
    key.iter_mut().for_each(|b| *b = 0);
    mac.finalize().into_bytes().into()
}

/// The ReqHub token: base64 of [`token_bytes`].
pub fn token(public_key: &str, private_key: &str, timestamp: &str, nonce: &str, url: &str) -> String {
    STANDARD.encode(token_bytes(public_key, private_key, timestamp, nonce, url))
}

/// The nonce text for 20 bytes: their standard base64 (28 characters).
pub fn encode_nonce(bytes: &[u8; NONCE_BYTES]) -> String {
    STANDARD.encode(bytes)
}

/// A fresh nonce: 20 bytes from the operating system's cryptographic random source, as base64.
pub fn random_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; NONCE_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(encode_nonce(&bytes))
}

/// Milliseconds since the UNIX epoch by the system clock (0 if the clock is before 1970).
pub fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One signed header set: the five values of either the client or the merchant side.
/// Holds no secret (the token is a MAC, the key the public key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `...Token`: the base64 HMAC.
    pub token: String,
    /// `...Key`: the public key.
    pub key: String,
    /// `...Timestamp`: UNIX milliseconds as decimal text.
    pub timestamp: String,
    /// `...Nonce`: base64 of 20 random bytes.
    pub nonce: String,
    /// `...Url`: the request path (and query) exactly as requested.
    pub url: String,
}

impl SignedHeaders {
    /// Sign with a key pair for `url` at `timestamp_ms` with the given nonce text.
    pub fn sign(public_key: &str, private_key: &str, url: &str, timestamp_ms: u64, nonce: &str) -> Self {
        let timestamp = timestamp_ms.to_string();
        SignedHeaders {
            token: token(public_key, private_key, &timestamp, nonce, url),
            key: public_key.to_owned(),
            timestamp,
            nonce: nonce.to_owned(),
            url: url.to_owned(),
        }
    }

    /// Sign with 20 given nonce bytes (for instance from your own random source).
    pub fn sign_with_nonce_bytes(
        public_key: &str,
        private_key: &str,
        url: &str,
        timestamp_ms: u64,
        nonce: &[u8; NONCE_BYTES],
    ) -> Self {
        Self::sign(public_key, private_key, url, timestamp_ms, &encode_nonce(nonce))
    }

    /// Sign for `url` now, with a fresh nonce from the OS random source.
    pub fn client_now(public_key: &str, private_key: &str, url: &str) -> Result<Self, getrandom::Error> {
        Ok(Self::sign(public_key, private_key, url, unix_millis(), &random_nonce()?))
    }

    fn pairs(&self, names: [&'static str; 5]) -> [(&'static str, &str); 5] {
        [
            (names[0], self.token.as_str()),
            (names[1], self.key.as_str()),
            (names[2], self.timestamp.as_str()),
            (names[3], self.nonce.as_str()),
            (names[4], self.url.as_str()),
        ]
    }

    /// The five client headers (`ClientToken`, `ClientKey`, `ClientTimestamp`, `ClientNonce`,
    /// `ClientUrl`) as (name, value) pairs.
    pub fn client_pairs(&self) -> [(&'static str, &str); 5] {
        self.pairs(CLIENT_HEADERS)
    }

    /// The five merchant headers (`MerchantToken`, ...) as (name, value) pairs.
    pub fn merchant_pairs(&self) -> [(&'static str, &str); 5] {
        self.pairs(MERCHANT_HEADERS)
    }
}

/// The five client headers for a key pair, URL, time and nonce bytes: the client-side helper.
pub fn client_headers(
    public_key: &str,
    private_key: &str,
    url: &str,
    timestamp_ms: u64,
    nonce: &[u8; NONCE_BYTES],
) -> [(&'static str, String); 5] {
    let h = SignedHeaders::sign_with_nonce_bytes(public_key, private_key, url, timestamp_ms, nonce);
    h.client_pairs().map(|(k, v)| (k, v.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_28_base64_chars_and_differ() {
        let a = random_nonce().unwrap();
        let b = random_nonce().unwrap();
        assert_eq!(a.len(), 28);
        assert_eq!(STANDARD.decode(&a).unwrap().len(), NONCE_BYTES);
        assert_ne!(a, b);
    }

    #[test]
    fn pairs_use_the_right_names_and_values() {
        let h = SignedHeaders::sign("pk", "sk", "/x", 1714737642000, "n");
        let c = h.client_pairs();
        assert_eq!(c[0], ("ClientToken", h.token.as_str()));
        assert_eq!(c[2], ("ClientTimestamp", "1714737642000"));
        assert_eq!(h.merchant_pairs()[4], ("MerchantUrl", "/x"));
        // Every key part matters.
        let base = token("pk", "sk", "1", "n", "/x");
        for other in [
            token("pk2", "sk", "1", "n", "/x"),
            token("pk", "sk2", "1", "n", "/x"),
            token("pk", "sk", "2", "n", "/x"),
            token("pk", "sk", "1", "m", "/x"),
            token("pk", "sk", "1", "n", "/y"),
        ] {
            assert_ne!(base, other);
        }
    }
}
