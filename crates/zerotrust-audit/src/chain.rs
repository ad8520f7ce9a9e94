//! The hash chain that makes a JSON Lines audit log tamper-evident.
//!
//! Each line is one JSON object whose last member is `zerotrust`, and whose last member in turn
//! is `chain`:
//!
//! ```text
//! {"@timestamp":...,"zerotrust":{...,"chain":{"seq":41,"prev":"<64 hex>","hash":"<64 hex>"}}}
//! ```
//!
//! `hash` is the SHA-256 (or, with a [`ChainKey`], the HMAC-SHA256) of the line's bytes from the
//! first `{` up to and including the closing quote of `prev`; `prev` is the previous record's
//! `hash` (64 zeros for the first record ever), and `seq` counts records without gaps across
//! files. Editing a record changes its hash; removing one leaves a gap in `seq` and a `prev` that
//! names a missing record; inserting one breaks the link of the record after it. A plain SHA-256
//! chain can be recomputed by whoever can rewrite the whole file, so for protection against an
//! attacker with write access use a [`ChainKey`] kept away from the log host, or compare the
//! chain head with the anchors the writer logs (`zerotrust::audit` target).

use std::fmt;
use std::io;
use std::path::Path;

use aws_lc_rs::{digest, hmac};

/// The link of the first record of a new chain.
pub(crate) const GENESIS: [u8; 32] = [0; 32];

/// `,"hash":"` + 64 hex + `"}}}`: what follows the hashed part of every line.
pub(crate) const SUFFIX_LEN: usize = 9 + 64 + 4;

/// A secret key for the chain: records are then linked with HMAC-SHA256 instead of SHA-256, so
/// only a holder of the key can produce a chain that verifies.
///
/// Keep the key off the machine that writes the log (or in a secret store), and give it to
/// `zerotrust-audit verify --key-file`.
///
/// ```
/// use zerotrust_audit::ChainKey;
///
/// let key = ChainKey::hmac_sha256(b"32 bytes of secret key material!").unwrap();
/// assert!(ChainKey::hmac_sha256(b"short").is_err(), "keys under 32 bytes are refused");
/// # let _ = key;
/// ```
#[derive(Clone)]
pub struct ChainKey(hmac::Key);

impl fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChainKey(HMAC-SHA256, redacted)")
    }
}

impl ChainKey {
    /// An HMAC-SHA256 key from raw bytes: at least 32 bytes (the hash's size, as RFC 2104
    /// recommends).
    pub fn hmac_sha256(secret: &[u8]) -> io::Result<Self> {
        if secret.len() < 32 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an audit chain key needs at least 32 bytes",
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// Reads a key file: its bytes, with surrounding whitespace removed (so a key written by
    /// `openssl rand -hex 32 > key` works as is).
    pub fn from_file(path: impl AsRef<Path>) -> io::Result<Self> {
        let bytes = std::fs::read(path)?;
        Self::hmac_sha256(bytes.trim_ascii())
    }
}

/// The hash of a record's hashed part.
pub(crate) fn digest_of(key: Option<&ChainKey>, data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    match key {
        Some(key) => out.copy_from_slice(hmac::sign(&key.0, data).as_ref()),
        None => out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref()),
    }
    out
}

/// The lower-case hex digit of a nibble (`0..16`).
pub(crate) fn hex_digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0' + nibble
    } else {
        b'a' + nibble - 10
    }
}

pub(crate) fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 15));
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

pub(crate) fn parse_hex32(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = (nibble(*high)? << 4) | nibble(*low)?;
    }
    Some(out)
}

/// The running state of a chain: the next sequence number and the last hash.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub(crate) next_seq: u64,
    pub(crate) prev: [u8; 32],
    key: Option<ChainKey>,
}

impl Chain {
    pub(crate) fn new(next_seq: u64, prev: [u8; 32], key: Option<ChainKey>) -> Self {
        Self {
            next_seq,
            prev,
            key,
        }
    }

    /// Appends to `out` the record whose JSON (as [`AuditEvent::write_json`] writes it, ending
    /// in `}}`) is `record`, sealed with the chain fields and a newline.
    ///
    /// [`AuditEvent::write_json`]: crate::AuditEvent::write_json
    pub(crate) fn seal(&mut self, record: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        out.extend_from_slice(record);
        self.seal_at(out, start)
    }

    /// Seals the record that `out` holds from `start` on (written there by
    /// [`AuditEvent::write_json`], ending in `}}`): no copy of the record.
    ///
    /// [`AuditEvent::write_json`]: crate::AuditEvent::write_json
    pub(crate) fn seal_at(&mut self, out: &mut Vec<u8>, start: usize) -> io::Result<()> {
        if !out
            .get(start..)
            .is_some_and(|record| record.ends_with(b"}}"))
        {
            out.truncate(start);
            return Err(io::Error::other(
                "audit record does not end with its zerotrust object",
            ));
        }
        out.truncate(out.len().saturating_sub(2));
        // An empty `zerotrust` object would need no comma; the record always has a schema version.
        out.extend_from_slice(br#","chain":{"seq":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.next_seq).as_bytes());
        out.extend_from_slice(br#","prev":""#);
        push_hex(out, &self.prev);
        out.push(b'"');
        let hash = digest_of(self.key.as_ref(), out.get(start..).unwrap_or_default());
        out.extend_from_slice(br#","hash":""#);
        push_hex(out, &hash);
        out.extend_from_slice(b"\"}}}\n");
        self.prev = hash;
        self.next_seq += 1;
        Ok(())
    }
}

/// A parsed line: its place in the chain and whether its own hash is right.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) seq: u64,
    pub(crate) prev: [u8; 32],
    pub(crate) hash: [u8; 32],
    pub(crate) hash_ok: bool,
}

#[derive(serde::Deserialize)]
struct LineShape {
    zerotrust: ZtShape,
}

#[derive(serde::Deserialize)]
struct ZtShape {
    chain: ChainShape,
}

#[derive(serde::Deserialize)]
struct ChainShape {
    seq: u64,
    prev: String,
    hash: String,
}

/// Parses one line (without its newline). `Err` says why the line is not a chained record.
pub(crate) fn parse_line(line: &[u8], key: Option<&ChainKey>) -> Result<Link, &'static str> {
    if line.len() < SUFFIX_LEN + 2 {
        return Err("too short to be a chained record");
    }
    let (hashed, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    if !suffix.starts_with(br#","hash":""#) || !suffix.ends_with(b"\"}}}") {
        return Err("does not end with the chain's hash");
    }
    let Some(stated) = suffix.get(9..9 + 64).and_then(parse_hex32) else {
        return Err("the chain's hash is not 64 lower-case hex digits");
    };
    // The whole line must be one JSON object with exactly one `zerotrust.chain` (a duplicate key
    // is an error for derived structs, so no second `chain` can hide behind the first).
    let shape: LineShape =
        serde_json::from_slice(line).map_err(|_| "not a JSON object with zerotrust.chain")?;
    let (Some(prev), Some(hash)) = (
        parse_hex32(shape.zerotrust.chain.prev.as_bytes()),
        parse_hex32(shape.zerotrust.chain.hash.as_bytes()),
    ) else {
        return Err("chain.prev or chain.hash is not 64 lower-case hex digits");
    };
    if hash != stated {
        return Err("chain.hash is not the last member of the line");
    }
    Ok(Link {
        seq: shape.zerotrust.chain.seq,
        prev,
        hash,
        hash_ok: digest_of(key, hashed) == stated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_line_parses_back_and_its_hash_covers_everything_before_it() {
        let mut chain = Chain::new(7, GENESIS, None);
        let mut out = Vec::new();
        chain
            .seal(br#"{"a":1,"zerotrust":{"schema_version":1}}"#, &mut out)
            .unwrap();
        let line = out.strip_suffix(b"\n").unwrap();
        let link = parse_line(line, None).unwrap();
        assert_eq!(link.seq, 7);
        assert_eq!(link.prev, GENESIS);
        assert!(link.hash_ok);
        assert_eq!(chain.prev, link.hash);
        assert_eq!(chain.next_seq, 8);

        let mut edited = line.to_vec();
        edited[5] = b'2';
        assert!(!parse_line(&edited, None).unwrap().hash_ok);
    }

    #[test]
    fn a_keyed_chain_does_not_verify_without_the_key_or_with_another() {
        let key = ChainKey::hmac_sha256(&[7u8; 32]).unwrap();
        let other = ChainKey::hmac_sha256(&[8u8; 32]).unwrap();
        let mut chain = Chain::new(0, GENESIS, Some(key.clone()));
        let mut out = Vec::new();
        chain
            .seal(br#"{"zerotrust":{"schema_version":1}}"#, &mut out)
            .unwrap();
        let line = out.strip_suffix(b"\n").unwrap();
        assert!(parse_line(line, Some(&key)).unwrap().hash_ok);
        assert!(!parse_line(line, None).unwrap().hash_ok);
        assert!(!parse_line(line, Some(&other)).unwrap().hash_ok);
    }

    #[test]
    fn a_second_chain_object_is_refused() {
        let line = br#"{"zerotrust":{"chain":{"seq":0,"prev":"00","hash":"00"},"chain":{"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"0000000000000000000000000000000000000000000000000000000000000000"}}}"#;
        assert!(parse_line(line, None).is_err());
    }
}
