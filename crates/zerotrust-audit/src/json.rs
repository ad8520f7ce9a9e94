//! A small JSON writer for the audit record: fields written straight into the output buffer,
//! in the order they are given, in the same compact form `serde_json` writes (the record's tests
//! compare the two byte for byte).
//!
//! Why not `serde_json` with derived structs: the record is written on the writer thread for
//! every request, and on a 2-core machine that thread competes with the server for CPU. The
//! derived path measured about 32,000 instructions per full-stack record (callgrind); most of it
//! is serde's generic plumbing and a byte-at-a-time escape of strings that need no escaping.

use std::io::Write as _;

/// One JSON object being written. Keys are `'static` names that need no escaping (checked in
/// debug builds); values are escaped as JSON requires.
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object at the end of `out`.
    pub(crate) fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Closes the object.
    pub(crate) fn close(self) {
        self.out.push(b'}');
    }

    /// Writes `"key":` (with the comma before it when needed) and gives the buffer for the value.
    pub(crate) fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        debug_assert!(key.bytes().all(|b| !needs_escape(b)), "key {key:?}");
        if self.empty {
            self.empty = false;
        } else {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// A nested object under `key`; close it before writing the next field of this one.
    pub(crate) fn obj(&mut self, key: &'static str) -> Obj<'_> {
        Obj::open(self.key(key))
    }

    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        string(self.key(key), value);
    }

    pub(crate) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    pub(crate) fn u64(&mut self, key: &'static str, value: u64) {
        let mut buf = itoa::Buffer::new();
        self.key(key)
            .extend_from_slice(buf.format(value).as_bytes());
    }

    pub(crate) fn i64(&mut self, key: &'static str, value: i64) {
        let mut buf = itoa::Buffer::new();
        self.key(key)
            .extend_from_slice(buf.format(value).as_bytes());
    }

    pub(crate) fn f64(&mut self, key: &'static str, value: f64) {
        float(self.key(key), value);
    }

    pub(crate) fn bool(&mut self, key: &'static str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(text);
    }

    /// A value that displays without any character JSON must escape (an IP address), as a string.
    pub(crate) fn display_plain(&mut self, key: &'static str, value: impl std::fmt::Display) {
        let out = self.key(key);
        out.push(b'"');
        let start = out.len();
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{value}");
        debug_assert!(
            out.get(start..)
                .is_some_and(|s| s.iter().all(|&b| !needs_escape(b)))
        );
        out.push(b'"');
    }

    /// An array of strings under `key`.
    pub(crate) fn strs<'s>(
        &mut self,
        key: &'static str,
        values: impl IntoIterator<Item = &'s str>,
    ) {
        let out = self.key(key);
        out.push(b'[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, value);
        }
        out.push(b']');
    }
}

/// Whether JSON needs `b` escaped inside a string: control characters, `"` and `\`.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// `value` as a JSON string, quotes included.
pub(crate) fn string(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    string_content(out, value);
    out.push(b'"');
}

/// `value` escaped for the inside of a JSON string (as `serde_json` escapes: the short forms
/// `\b \t \n \f \r \" \\`, other control characters as `\u00xx`, everything else as it is).
pub(crate) fn string_content(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    // Nearly every value needs no escaping: one scan, one copy. (A fold rather than `any`: without
    // the early exit the scan is vectorised.)
    if !bytes.iter().fold(false, |seen, &b| seen | needs_escape(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        start = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                crate::chain::hex_digit(b >> 4),
                crate::chain::hex_digit(b & 15),
            ]),
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// A number as `serde_json` writes it: the shortest form that reads back the same, `null` when
/// it is not finite.
pub(crate) fn float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        let mut buf = zmij::Buffer::new();
        out.extend_from_slice(buf.format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_serde(value: &str) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        let mut all_bytes = String::new();
        for c in 0u8..0x80 {
            all_bytes.push(char::from(c));
        }
        for value in [
            "",
            "plain",
            "quote \" and backslash \\",
            "line\nbreak\ttab\r\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "unicode é 東京 🦀",
            all_bytes.as_str(),
        ] {
            let mut out = Vec::new();
            string(&mut out, value);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                as_serde(value),
                "{value:?}"
            );
        }
    }

    #[test]
    fn numbers_write_as_serde_json_does() {
        for value in [
            0.0,
            -0.0,
            0.1,
            0.727_839_999_999_999_9,
            1.0,
            1e300,
            2.5e-8,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
        ] {
            let mut out = Vec::new();
            float(&mut out, value);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&value).unwrap(),
                "{value}"
            );
        }
    }

    #[test]
    fn objects_nest_with_commas_in_the_right_places() {
        let mut out = Vec::new();
        let mut o = Obj::open(&mut out);
        o.str("a", "x");
        {
            let mut inner = o.obj("b");
            inner.u64("n", 7);
            inner.close();
        }
        o.obj("empty").close();
        o.strs("list", ["p", "q"]);
        o.bool("t", true);
        o.i64("neg", -3);
        o.display_plain("ip", std::net::Ipv6Addr::LOCALHOST);
        o.close();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":"x","b":{"n":7},"empty":{},"list":["p","q"],"t":true,"neg":-3,"ip":"::1"}"#
        );
    }
}
