//! Request ids: the client's `x-request-id` when it is sane, else a fresh one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::chain::hex_digit;

/// The header carrying the request id, in both directions.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A request's id: the client's, or one made here.
#[derive(Debug, Clone)]
pub(crate) enum RequestId {
    /// A sane `x-request-id` from the client (a shared slice of the request head: no copy).
    Client(HeaderValue),
    /// 32 hex digits: a random per-process prefix and a counter.
    Generated([u8; 32]),
}

impl RequestId {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RequestId::Client(value) => value.to_str().unwrap_or_default(),
            RequestId::Generated(hex) => std::str::from_utf8(hex).unwrap_or_default(),
        }
    }

    pub(crate) fn header_value(&self) -> Option<HeaderValue> {
        match self {
            RequestId::Client(value) => Some(value.clone()),
            RequestId::Generated(hex) => HeaderValue::from_bytes(hex).ok(),
        }
    }
}

/// The request id from the request's single `x-request-id` header if it is 1 to 128 characters
/// of `A-Z a-z 0-9 - _ . : / + = @`; otherwise a new one, which replaces whatever the client sent
/// so the service sees the same id.
pub(crate) fn take_or_make(headers: &mut HeaderMap) -> RequestId {
    let mut values = headers.get_all(&X_REQUEST_ID).iter();
    if let (Some(value), None) = (values.next(), values.next())
        && acceptable(value)
    {
        return RequestId::Client(value.clone());
    }
    let id = RequestId::Generated(generate());
    if let Some(value) = id.header_value() {
        headers.insert(X_REQUEST_ID, value);
    }
    id
}

fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_REQUEST_ID_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b))
}

fn generate() -> [u8; 32] {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Unique across replicas and restarts; on the (never seen) failure of the system's random
        // source, the time of day still separates processes.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes = (nanos as u64 ^ u64::from(std::process::id())).to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut out = [0u8; 32];
    let digits = prefix.to_be_bytes().into_iter().chain(n.to_be_bytes());
    for (pair, byte) in out.chunks_exact_mut(2).zip(digits) {
        if let [high, low] = pair {
            *high = hex_digit(byte >> 4);
            *low = hex_digit(byte & 15);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(take_or_make(&mut h).as_str(), "abc-123");

        for bad in ["", "has space", "quote\"", &"x".repeat(129)] {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = take_or_make(&mut h);
            assert_eq!(id.as_str().len(), 32, "{bad:?}");
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(
                h[X_REQUEST_ID],
                id.as_str(),
                "the service sees the replacement"
            );
        }

        let mut h = HeaderMap::new();
        h.append(X_REQUEST_ID, HeaderValue::from_static("a"));
        h.append(X_REQUEST_ID, HeaderValue::from_static("b"));
        let id = take_or_make(&mut h);
        assert_eq!(id.as_str().len(), 32, "two ids: neither is believed");
        assert_eq!(h.get_all(X_REQUEST_ID).iter().count(), 1);
    }

    #[test]
    fn generated_ids_are_unique() {
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| generate()).collect();
        let one = generate();
        let text = std::str::from_utf8(&one).unwrap();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(ids.len(), 1000);
    }
}
