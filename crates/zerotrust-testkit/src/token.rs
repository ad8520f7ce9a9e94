use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::SigningKey;

/// Unpadded base64url.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A compact JWS from raw header and payload JSON text, signed by `sign` over the signing input.
pub fn compact(
    header_json: &str,
    payload_json: &str,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!("{}.{}", b64url(header_json), b64url(payload_json));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64url(sig))
}

/// Builds tokens with any header and any claims.
///
/// ```
/// use zerotrust_testkit::{SigningKey, TokenBuilder};
///
/// let key = SigningKey::hmac("k1", &[1u8; 32], "HS256");
/// let token = TokenBuilder::new().header("typ", "at+jwt").claim("sub", "alice").sign(&key);
/// assert_eq!(token.split('.').count(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct TokenBuilder {
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl TokenBuilder {
    /// An empty header and no claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a header member.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    /// Removes a header member.
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Sets a claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// The header JSON, with `alg` and `kid` of `key` where not set.
    pub fn header_json(&self, key: &SigningKey) -> String {
        let mut header = self.header.clone();
        header
            .entry("alg")
            .or_insert_with(|| key.alg().to_owned().into());
        header
            .entry("kid")
            .or_insert_with(|| key.kid().to_owned().into());
        Value::Object(header).to_string()
    }

    /// The claims JSON.
    pub fn claims_json(&self) -> String {
        Value::Object(self.claims.clone()).to_string()
    }

    /// Signs with `key` (its `alg` and `kid` fill the header where not set).
    pub fn sign(&self, key: &SigningKey) -> String {
        compact(&self.header_json(key), &self.claims_json(), |m| key.sign(m))
    }

    /// The token with an empty signature part and the given header `alg` (for `none` attacks).
    pub fn unsigned(&self, alg: &str) -> String {
        let mut header = self.header.clone();
        header.insert("alg".into(), alg.into());
        format!(
            "{}.{}.",
            b64url(Value::Object(header).to_string()),
            b64url(self.claims_json())
        )
    }
}
