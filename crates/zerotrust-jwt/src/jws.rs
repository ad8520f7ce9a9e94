//! Compact JWS (RFC 7515 §7.1), parsed strictly.
//!
//! - Exactly three parts; five parts (JWE) and the JSON serialization are refused.
//! - Every part must be canonical unpadded base64url: no padding, no whitespace, no foreign
//!   characters, no non-zero trailing bits (so a signature has exactly one encoding).
//! - The header is a JSON object whose members have the right types; a repeated member is
//!   refused (RFC 7515 §5.2 allows refusing, and refusing closes parser-differential attacks).
//! - `crit` is refused: this verifier understands no extension, so it must not claim to
//!   (RFC 7515 §4.1.11). That also refuses RFC 7797 `b64: false` tokens, which need `crit`; a
//!   `b64` or `zip` member without `crit` is refused too.
//! - `jku`, `x5u`, `jwk` and `x5c` are never used and never fetched: keys come from configuration.
//! - The algorithm comes from the key: the header's `alg` must equal the key's algorithm, and
//!   `none` is not an algorithm at all.

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64_simd::{Out, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::algorithm::Algorithm;
use crate::key::VerifyingKey;

/// Why a compact JWS was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not three dot-separated parts.
    #[error("not a compact JWS (three dot-separated parts)")]
    NotCompact,
    /// An encrypted token (JWE), which this verifier does not accept.
    #[error("an encrypted token (JWE)")]
    Encrypted,
    /// A part is not canonical unpadded base64url.
    #[error("the {0} is not canonical base64url")]
    Encoding(&'static str),
    /// The header is not a JSON object with well-typed, unique members.
    #[error("the header is not valid JSON with well-typed, unique members")]
    Header,
    /// The header names `none` or an algorithm this verifier does not support.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header carries `crit`, `b64` or `zip`: extensions this verifier does not implement.
    #[error("the header uses an extension this verifier does not implement")]
    UnsupportedExtension,
    /// The header's `alg` is not the key's algorithm.
    #[error("the token's algorithm is not the key's")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
}

/// The JOSE header members this verifier reads. Unknown members are ignored; the key-reference
/// members `jku`, `x5u`, `jwk`, `x5c` are deliberately not read at all.
#[derive(Debug, Clone, Deserialize)]
pub struct JoseHeader {
    #[serde(deserialize_with = "algorithm_name")]
    alg: Option<Algorithm>,
    kid: Option<String>,
    typ: Option<String>,
    cty: Option<String>,
    // Only their presence matters: the values are never built.
    crit: Option<IgnoredAny>,
    b64: Option<IgnoredAny>,
    zip: Option<IgnoredAny>,
    enc: Option<IgnoredAny>,
}

/// Reads `alg` without allocating: a supported algorithm, or `None` for `none` and every other
/// name. A non-string `alg` is a malformed header.
fn algorithm_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Algorithm>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<Algorithm>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an algorithm name")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Algorithm::from_name(v))
        }
    }
    d.deserialize_str(V)
}

impl JoseHeader {
    /// Decodes and parses an encoded header segment.
    fn decode(segment: &str) -> Result<Self, JwsError> {
        let bytes = decode("header", segment)?;
        serde_json::from_slice(&bytes).map_err(|_| JwsError::Header)
    }

    /// The header's algorithm, once the header is known to be a plain JWS header.
    fn checked_algorithm(&self) -> Result<Algorithm, JwsError> {
        if self.enc.is_some() {
            return Err(JwsError::Encrypted);
        }
        if self.crit.is_some() || self.b64.is_some() || self.zip.is_some() {
            return Err(JwsError::UnsupportedExtension);
        }
        self.alg.ok_or(JwsError::UnsupportedAlgorithm)
    }

    /// The `alg` member, if it names an algorithm this crate verifies.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }
    /// The `kid` member.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    /// The `typ` member.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }
    /// The `cty` member.
    pub fn cty(&self) -> Option<&str> {
        self.cty.as_deref()
    }
}

/// A parsed compact JWS: header read and checked, payload and signature decoded, nothing trusted
/// until [`verify`](CompactJws::verify) succeeds.
///
/// ```
/// use zerotrust_jwt::{Algorithm, CompactJws, JwsError, VerifyingKey};
///
/// // RFC 7515 appendix A.1's HS256 example.
/// let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\
///     eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.\
///     dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// let secret = [3u8, 35, 53, 75, 43, 15, 165, 188, 131, 126, 6, 101, 119, 123, 166, 143, 90, 179,
///     40, 230, 240, 84, 201, 40, 169, 15, 132, 178, 210, 80, 46, 191, 211, 251, 90, 146, 210, 6,
///     71, 239, 150, 138, 180, 195, 119, 98, 61, 34, 61, 46, 33, 114, 5, 46, 79, 8, 192, 205, 154,
///     245, 103, 208, 128, 163];
/// let key = VerifyingKey::hmac_secret(&secret, Algorithm::HS256).unwrap();
/// let jws = CompactJws::parse(token).unwrap();
/// assert_eq!(jws.header().typ(), Some("JWT"));
/// jws.verify(&key).unwrap();
///
/// // One flipped signature character and it no longer verifies.
/// let forged = format!("{}A", &token[..token.len() - 1]);
/// assert_eq!(CompactJws::parse(&forged).unwrap().verify(&key), Err(JwsError::BadSignature));
/// ```
#[derive(Debug)]
pub struct CompactJws<'a> {
    signing_input: &'a str,
    header: Arc<JoseHeader>,
    header_segment: &'a str,
    /// Whether the header came from the cache (so remembering it again is pointless).
    header_cached: bool,
    algorithm: Algorithm,
    payload: Vec<u8>,
    signature: Signature,
}

/// A decoded signature. Up to [`Signature::INLINE`] bytes (RSA-2048, every EC, EdDSA and HMAC
/// signature) it stays inline, so parsing allocates nothing for it; longer ones (RSA of 3072 up
/// to 8192 bits, whose check costs far more than an allocation) go to the heap.
// Inline on purpose: the common signatures need no allocation, and the value lives on the stack
// of one synchronous call.
#[allow(clippy::large_enum_variant)]
enum Signature {
    Inline {
        bytes: [u8; Signature::INLINE],
        len: usize,
    },
    Heap(Vec<u8>),
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({} bytes)", self.as_bytes().len())
    }
}

impl Signature {
    /// RSA-2048's 256 bytes.
    const INLINE: usize = 256;
    /// RSA-8192's 1,024 bytes: the longest signature verified here.
    const MAX: usize = 1024;

    fn decode(text: &str) -> Result<Self, JwsError> {
        let len = URL_SAFE_NO_PAD
            .decoded_length(text.as_bytes())
            .map_err(|_| JwsError::Encoding("signature"))?;
        // Longer than any signature verified here: refused before decoding.
        if len > Self::MAX {
            return Err(JwsError::BadSignature);
        }
        if len <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            let buf = bytes.get_mut(..len).ok_or(JwsError::BadSignature)?;
            let len = URL_SAFE_NO_PAD
                .decode(text.as_bytes(), Out::from_slice(buf))
                .map_err(|_| JwsError::Encoding("signature"))?
                .len();
            Ok(Signature::Inline { bytes, len })
        } else {
            decode("signature", text).map(Signature::Heap)
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Signature::Inline { bytes, len } => bytes.get(..*len).unwrap_or_default(),
            Signature::Heap(bytes) => bytes,
        }
    }
}

/// Canonical unpadded base64url (non-zero unused bits, padding and foreign characters refused).
fn decode(part: &'static str, text: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode_to_vec(text)
        .map_err(|_| JwsError::Encoding(part))
}

/// The parsed headers of recently verified tokens, by their encoded form.
///
/// An issuer signs every token of one key with the same header, so decoding and parsing it once
/// per key instead of once per request saves about a tenth of the work around the signature
/// check. Reads are lock-free (`ArcSwap`); only headers of tokens whose signature verified are
/// inserted, so forged tokens cannot churn it; a new header replaces the oldest slot.
pub(crate) struct HeaderCache {
    slots: ArcSwap<HeaderSlots>,
}

#[derive(Clone, Default)]
struct HeaderSlots {
    entries: Vec<(Arc<str>, Arc<JoseHeader>)>,
    next: usize,
}

impl HeaderCache {
    /// Headers kept: more than the keys an issuer publishes at once.
    const CAPACITY: usize = 16;

    pub(crate) fn new() -> Self {
        Self {
            slots: ArcSwap::from_pointee(HeaderSlots::default()),
        }
    }

    fn get(&self, segment: &str) -> Option<Arc<JoseHeader>> {
        self.slots
            .load()
            .entries
            .iter()
            .find(|(seen, _)| &**seen == segment)
            .map(|(_, header)| header.clone())
    }

    fn insert(&self, segment: &str, header: &Arc<JoseHeader>) {
        if self.get(segment).is_some() {
            return;
        }
        let entry = (Arc::<str>::from(segment), header.clone());
        self.slots.rcu(|current| {
            let mut slots = HeaderSlots::clone(current);
            if slots.entries.len() < Self::CAPACITY {
                slots.entries.push(entry.clone());
            } else if let Some(slot) = slots.entries.get_mut(slots.next) {
                *slot = entry.clone();
                slots.next = (slots.next + 1) % Self::CAPACITY;
            }
            slots
        });
    }
}

impl<'a> CompactJws<'a> {
    /// Parses `token` and checks its header, without verifying the signature.
    pub fn parse(token: &'a str) -> Result<Self, JwsError> {
        Self::parse_with(token, None)
    }

    /// [`parse`](Self::parse), taking the header from `cache` when its encoded form was seen.
    pub(crate) fn parse_with(
        token: &'a str,
        cache: Option<&HeaderCache>,
    ) -> Result<Self, JwsError> {
        // memchr scans a word or a vector at a time: tokens are hundreds of bytes long.
        let bytes = token.as_bytes();
        let Some(d1) = memchr::memchr(b'.', bytes) else {
            return Err(JwsError::NotCompact);
        };
        let Some(d2) = bytes
            .get(d1 + 1..)
            .and_then(|rest| memchr::memchr(b'.', rest))
            .map(|i| d1 + 1 + i)
        else {
            return Err(JwsError::NotCompact);
        };
        let more_dots = bytes
            .get(d2 + 1..)
            .map_or(0, |rest| memchr::memchr_iter(b'.', rest).count());
        match more_dots {
            0 => {}
            // Five parts is the JWE compact form; anything else is junk.
            2 => return Err(JwsError::Encrypted),
            _ => return Err(JwsError::NotCompact),
        }
        let (Some(h), Some(p), Some(s)) =
            (token.get(..d1), token.get(d1 + 1..d2), token.get(d2 + 1..))
        else {
            return Err(JwsError::NotCompact);
        };
        if h.is_empty() {
            return Err(JwsError::NotCompact);
        }
        let (header, header_cached) = match cache.and_then(|c| c.get(h)) {
            Some(header) => (header, true),
            None => (Arc::new(JoseHeader::decode(h)?), false),
        };
        // A cached header passed these checks when it was first parsed; they are cheap enough
        // to repeat rather than to reason about.
        let algorithm = header.checked_algorithm()?;
        let payload = decode("payload", p)?;
        // Checked after the header, so `alg: none` tokens are refused for their algorithm.
        if s.is_empty() {
            return Err(JwsError::BadSignature);
        }
        let signature = Signature::decode(s)?;
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(JwsError::NotCompact)?;
        Ok(Self {
            signing_input,
            header,
            header_segment: h,
            header_cached,
            algorithm,
            payload,
            signature,
        })
    }

    /// Remembers this token's header in `cache`. Call only after the signature verified, so
    /// that only headers a trusted key signed take a place.
    pub(crate) fn remember_header(&self, cache: &HeaderCache) {
        if !self.header_cached {
            cache.insert(self.header_segment, &self.header);
        }
    }

    /// The checked header.
    pub fn header(&self) -> &JoseHeader {
        &self.header
    }

    /// The algorithm the header names (one this verifier supports).
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The decoded payload. Untrusted until [`verify`](CompactJws::verify) succeeds.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The decoded payload, taken out. Untrusted until verified.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// Takes the decoded payload out, leaving an empty one; the signature can still be verified
    /// (it covers the encoded form). Untrusted until verified.
    pub(crate) fn take_payload(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.payload)
    }

    /// Verifies the signature with `key`. The header's algorithm must be the key's.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), JwsError> {
        if key.algorithm() != self.algorithm {
            return Err(JwsError::AlgorithmMismatch);
        }
        if key.verify(self.signing_input.as_bytes(), self.signature.as_bytes()) {
            Ok(())
        } else {
            Err(JwsError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode_to_string(s)
    }

    #[test]
    fn header_cache_serves_seen_headers_and_keeps_the_newest() {
        let cache = HeaderCache::new();
        let header = |i: usize| enc(&format!(r#"{{"alg":"ES256","kid":"k{i}"}}"#));
        let token = |i: usize| format!("{}.{}.c2ln", header(i), enc("{}"));
        let first = token(0);
        let jws = CompactJws::parse_with(&first, Some(&cache)).unwrap();
        assert!(
            cache.get(&header(0)).is_none(),
            "nothing cached before remember"
        );
        jws.remember_header(&cache);
        let again = CompactJws::parse_with(&first, Some(&cache)).unwrap();
        assert!(
            Arc::ptr_eq(&again.header, &jws.header),
            "served from the cache"
        );
        assert_eq!(again.header().kid(), Some("k0"));
        // A full cache replaces its oldest entry first.
        for i in 1..=HeaderCache::CAPACITY {
            let t = token(i);
            CompactJws::parse_with(&t, Some(&cache))
                .unwrap()
                .remember_header(&cache);
        }
        assert!(cache.get(&header(0)).is_none());
        assert!(cache.get(&header(1)).is_some());
        assert!(cache.get(&header(HeaderCache::CAPACITY)).is_some());
    }

    #[test]
    fn signatures_of_every_size_decode_inline_or_on_the_heap() {
        let header = enc(r#"{"alg":"RS256"}"#);
        for len in [0usize, 1, 64, 255, 256, 257, 512, 1024] {
            let sig: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let t = format!(
                "{header}.{}.{}",
                enc("{}"),
                URL_SAFE_NO_PAD.encode_to_string(&sig)
            );
            match CompactJws::parse(&t) {
                Ok(jws) => assert_eq!(jws.signature.as_bytes(), sig, "{len}"),
                // An empty signature part is refused as a bad signature.
                Err(e) => assert!(len == 0 && e == JwsError::BadSignature, "{len}: {e}"),
            }
        }
        let long = URL_SAFE_NO_PAD.encode_to_string([1u8; 1025]);
        let t = format!("{header}.{}.{long}", enc("{}"));
        assert_eq!(CompactJws::parse(&t).err(), Some(JwsError::BadSignature));
        // Non-zero unused bits: refused inline and on the heap alike.
        for good in [
            URL_SAFE_NO_PAD.encode_to_string([1u8; 100]),
            URL_SAFE_NO_PAD.encode_to_string([1u8; 700]),
        ] {
            let bad = format!("{}B", &good[..good.len() - 1]);
            assert_ne!(bad, good);
            let t = format!("{header}.{}.{bad}", enc("{}"));
            assert_eq!(
                CompactJws::parse(&t).err(),
                Some(JwsError::Encoding("signature"))
            );
        }
    }

    #[test]
    fn none_is_not_an_algorithm_in_any_casing() {
        for alg in ["none", "None", "NONE", "nOnE"] {
            let t = format!(
                "{}.{}.c2ln",
                enc(&format!(r#"{{"alg":"{alg}"}}"#)),
                enc("{}")
            );
            assert_eq!(
                CompactJws::parse(&t).err(),
                Some(JwsError::UnsupportedAlgorithm)
            );
        }
    }

    #[test]
    fn repeated_header_member_is_refused() {
        let t = format!(
            "{}.{}.c2ln",
            enc(r#"{"alg":"RS256","alg":"HS256"}"#),
            enc("{}")
        );
        assert_eq!(CompactJws::parse(&t).err(), Some(JwsError::Header));
    }

    #[test]
    fn wrongly_typed_header_member_is_refused() {
        let t = format!("{}.{}.c2ln", enc(r#"{"alg":"RS256","kid":7}"#), enc("{}"));
        assert_eq!(CompactJws::parse(&t).err(), Some(JwsError::Header));
    }

    #[test]
    fn crit_b64_and_zip_are_refused() {
        for h in [
            r#"{"alg":"RS256","crit":["exp"]}"#,
            r#"{"alg":"RS256","b64":false}"#,
            r#"{"alg":"RS256","zip":"DEF"}"#,
        ] {
            let t = format!("{}.{}.c2ln", enc(h), enc("{}"));
            assert_eq!(
                CompactJws::parse(&t).err(),
                Some(JwsError::UnsupportedExtension)
            );
        }
    }

    #[test]
    fn jwe_and_junk_shapes_are_refused() {
        assert_eq!(
            CompactJws::parse("a.b.c.d.e").err(),
            Some(JwsError::Encrypted)
        );
        assert_eq!(CompactJws::parse("a.b").err(), Some(JwsError::NotCompact));
        assert_eq!(
            CompactJws::parse("a.b.c.d").err(),
            Some(JwsError::NotCompact)
        );
        assert_eq!(CompactJws::parse("").err(), Some(JwsError::NotCompact));
        let padded = format!("{}=.{}.c2ln", enc(r#"{"alg":"RS256"}"#), enc("{}"));
        assert_eq!(
            CompactJws::parse(&padded).err(),
            Some(JwsError::Encoding("header"))
        );
    }
}
