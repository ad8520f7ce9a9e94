//! One pass over the verified payload: the registered claims read with their exact JSON types,
//! every repeated claim name refused, everything else skipped without allocating.
//!
//! A claim of the wrong type is an error, never "absent": `"exp": "1700000000"` or
//! `"iss": ["a", "b"]` refuse the token.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a payload's claims were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClaimsError {
    #[error("the payload is not a JSON object")]
    NotAnObject,
    #[error("claim {0} appears more than once")]
    Duplicate(String),
    #[error("claim {0} has the wrong type")]
    WrongType(&'static str),
}

/// A string that borrows from the payload when it has no escapes.
struct CowStr<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CowStrVisitor)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = CowStr<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Owned(v)))
    }
}

/// The strings of a claim that is a string or an array of strings (`aud`, `scp`), or always an
/// array (`amr`), borrowed from the payload where they have no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Strings<'de> {
    /// A single string (`"aud": "api"`): no `Vec` for the most common form.
    One(Cow<'de, str>),
    /// An array of strings.
    Many(Vec<Cow<'de, str>>),
}

impl<'de> Strings<'de> {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            Strings::One(s) => (Some(s.as_ref()), [].iter()),
            Strings::Many(v) => (None, v.iter()),
        };
        one.into_iter().chain(many.map(AsRef::as_ref))
    }

    pub(crate) fn into_owned(self) -> Vec<String> {
        match self {
            Strings::One(s) => vec![s.into_owned()],
            Strings::Many(v) => v.into_iter().map(Cow::into_owned).collect(),
        }
    }
}

/// Reads the elements of a JSON array of strings.
fn read_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<Cow<'de, str>>, A::Error> {
    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
    while let Some(CowStr(s)) = seq.next_element::<CowStr<'de>>()? {
        out.push(s);
    }
    Ok(out)
}

/// A JSON string or an array of JSON strings.
struct StringOrArray<'de>(Strings<'de>);

impl<'de> de::Deserialize<'de> for StringOrArray<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrArray<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StringOrArray(Strings::One(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrArray(Strings::One(Cow::Owned(v.to_owned()))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                read_seq(seq).map(|v| StringOrArray(Strings::Many(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON array of JSON strings.
struct StringArray<'de>(Strings<'de>);

impl<'de> de::Deserialize<'de> for StringArray<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringArray<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                read_seq(seq).map(|v| StringArray(Strings::Many(v)))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds, fractions allowed and floored.
struct NumericDate(i64);

impl<'de> de::Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // Finite and inside i64: ±9.2e18 seconds is far beyond any real date.
                if v.is_finite() && v.abs() < 9.0e18 {
                    #[allow(clippy::cast_possible_truncation)]
                    Ok(NumericDate(v.floor() as i64))
                } else {
                    Err(E::custom("out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object, kept as is.
struct Object(serde_json::Value);

impl<'de> de::Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if v.is_object() {
            Ok(Object(v))
        } else {
            Err(de::Error::custom("not an object"))
        }
    }
}

/// Every top-level claim name, for the repeated-name check and required-claim checks.
///
/// Kept on the stack for the common payload (at most [`Names::INLINE`] names, none with escapes);
/// the rest spill into a `Vec`. A registered claim name can only repeat a registered one, and the
/// visitor notes that with one bit per name, so only the other names are compared pairwise, and
/// only a payload with a repeated or escaped name, or very many names, is sorted.
#[derive(Debug)]
pub(crate) struct Names<'de> {
    inline: [&'de str; Names::INLINE],
    len: usize,
    /// Bit `i` set: `inline[i]` is not one of the registered claims the visitor reads.
    others: u32,
    /// Names that did not fit in `inline`: escaped ones and those past the first `INLINE`.
    spill: Vec<Cow<'de, str>>,
}

impl PartialEq for Names<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Default for Names<'_> {
    fn default() -> Self {
        Self {
            inline: [""; Names::INLINE],
            len: 0,
            others: 0,
            spill: Vec::new(),
        }
    }
}

impl<'de> Names<'de> {
    /// The bits of `others`.
    const INLINE: usize = 32;

    #[inline]
    fn push(&mut self, name: Cow<'de, str>, registered: bool) {
        if let Cow::Borrowed(n) = name
            && let Some(slot) = self.inline.get_mut(self.len)
        {
            *slot = n;
            if !registered {
                self.others |= 1 << self.len;
            }
            self.len += 1;
            return;
        }
        self.spill.push(name);
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let inline = self.inline.get(..self.len).unwrap_or_default();
        inline
            .iter()
            .copied()
            .chain(self.spill.iter().map(AsRef::as_ref))
    }

    /// Whether two of the inline names that are not registered claims are equal.
    fn others_repeat(&self) -> bool {
        let mut seen = 0u32;
        let mut rest = self.others;
        while rest != 0 {
            let i = rest.trailing_zeros();
            rest &= rest - 1;
            let name = self.inline.get(i as usize).copied().unwrap_or_default();
            let mut earlier = seen;
            while earlier != 0 {
                let j = earlier.trailing_zeros();
                earlier &= earlier - 1;
                if self.inline.get(j as usize).copied() == Some(name) {
                    return true;
                }
            }
            seen |= 1 << i;
        }
        false
    }

    /// The first repeated name in sorted order, if any. `registered_repeat`: the visitor saw a
    /// registered claim twice.
    fn repeated(&self, registered_repeat: bool) -> Option<&str> {
        if !registered_repeat && self.spill.is_empty() && !self.others_repeat() {
            return None;
        }
        let mut sorted: Vec<&str> = self.iter().collect();
        sorted.sort_unstable();
        sorted
            .windows(2)
            .find(|w| w.first() == w.get(1))
            .and_then(|w| w.first().copied())
    }
}

/// The claims the verifier reads, borrowed from the payload where they have no escapes.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Claims<'de> {
    pub(crate) iss: Option<Cow<'de, str>>,
    pub(crate) sub: Option<Cow<'de, str>>,
    pub(crate) aud: Option<Strings<'de>>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) auth_time: Option<i64>,
    pub(crate) jti: Option<Cow<'de, str>>,
    pub(crate) client_id: Option<Cow<'de, str>>,
    pub(crate) acr: Option<Cow<'de, str>>,
    pub(crate) amr: Option<Strings<'de>>,
    pub(crate) scope: Option<Cow<'de, str>>,
    pub(crate) scp: Option<Strings<'de>>,
    pub(crate) cnf: Option<serde_json::Value>,
    /// The JSON text of the top-level claims that configured roles paths start at.
    pub(crate) roles_roots: Vec<(Cow<'de, str>, &'de str)>,
    /// Every top-level claim name, for required-claim checks.
    pub(crate) names: Names<'de>,
}

impl<'de> Claims<'de> {
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The JSON text of the top-level claim `name`, if it is a roles root and present.
    pub(crate) fn roles_root(&self, name: &str) -> Option<&'de str> {
        self.roles_roots
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, raw)| raw)
    }
}

struct ClaimsSeed<'r, 'de> {
    roles_roots: &'r [String],
    /// Which claim had the wrong type. serde_json cannot resume after a type error, so the
    /// visitor stops with an error and leaves the claim's name here.
    wrong_type: &'r Cell<Option<&'static str>>,
    /// Filled in place: the claims are too large to move around cheaply.
    out: &'r mut Claims<'de>,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_, 'de> {
    type Value = Result<(), ClaimsError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

macro_rules! read {
    ($wrong_type:ident, $map:expr, $ty:ty, $name:literal) => {
        match $map.next_value::<$ty>() {
            Ok(v) => v,
            Err(e) => {
                $wrong_type.set(Some($name));
                return Err(e);
            }
        }
    };
}

impl<'de> Visitor<'de> for ClaimsSeed<'_, 'de> {
    type Value = Result<(), ClaimsError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ClaimsSeed {
            roles_roots,
            wrong_type,
            out: c,
        } = self;
        // One bit per registered claim read so far, to notice one read twice.
        let mut seen = 0u16;
        let mut registered_repeat = false;
        while let Some(CowStr(name)) = map.next_key::<CowStr<'de>>()? {
            let bit: u16 = match name.as_ref() {
                "iss" => {
                    c.iss = Some(read!(wrong_type, map, CowStr<'de>, "iss").0);
                    1
                }
                "sub" => {
                    c.sub = Some(read!(wrong_type, map, CowStr<'de>, "sub").0);
                    1 << 1
                }
                "aud" => {
                    c.aud = Some(read!(wrong_type, map, StringOrArray<'de>, "aud").0);
                    1 << 2
                }
                "exp" => {
                    c.exp = Some(read!(wrong_type, map, NumericDate, "exp").0);
                    1 << 3
                }
                "nbf" => {
                    c.nbf = Some(read!(wrong_type, map, NumericDate, "nbf").0);
                    1 << 4
                }
                "iat" => {
                    c.iat = Some(read!(wrong_type, map, NumericDate, "iat").0);
                    1 << 5
                }
                "auth_time" => {
                    c.auth_time = Some(read!(wrong_type, map, NumericDate, "auth_time").0);
                    1 << 6
                }
                "jti" => {
                    c.jti = Some(read!(wrong_type, map, CowStr<'de>, "jti").0);
                    1 << 7
                }
                "client_id" => {
                    c.client_id = Some(read!(wrong_type, map, CowStr<'de>, "client_id").0);
                    1 << 8
                }
                "acr" => {
                    c.acr = Some(read!(wrong_type, map, CowStr<'de>, "acr").0);
                    1 << 9
                }
                "amr" => {
                    c.amr = Some(read!(wrong_type, map, StringArray<'de>, "amr").0);
                    1 << 10
                }
                "scope" => {
                    c.scope = Some(read!(wrong_type, map, CowStr<'de>, "scope").0);
                    1 << 11
                }
                "scp" => {
                    c.scp = Some(read!(wrong_type, map, StringOrArray<'de>, "scp").0);
                    1 << 12
                }
                "cnf" => {
                    c.cnf = Some(read!(wrong_type, map, Object, "cnf").0);
                    1 << 13
                }
                other if roles_roots.iter().any(|r| r == other) => {
                    let raw = read!(wrong_type, map, &'de RawValue, "roles");
                    c.roles_roots.push((name.clone(), raw.get()));
                    0
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    0
                }
            };
            registered_repeat |= seen & bit != 0;
            seen |= bit;
            c.names.push(name, bit != 0);
        }
        if let Some(dup) = c.names.repeated(registered_repeat) {
            return Ok(Err(ClaimsError::Duplicate(dup.to_owned())));
        }
        Ok(Ok(()))
    }
}

/// Reads the claims of a payload into `claims` (a fresh `Claims::default()`). The payload is
/// already checked to be UTF-8. `roles_roots` are the first segments of the roles claim paths.
///
/// Most access tokens are compact JSON with nothing but strings, small integers and arrays of
/// strings, without a single escape: [`simple::parse`] reads those in one pass over the bytes.
/// Anything else, including every malformed payload, is left to serde_json, which alone decides
/// what is refused and why.
pub(crate) fn parse<'de>(
    payload: &'de str,
    roles_roots: &[String],
    claims: &mut Claims<'de>,
) -> Result<(), ClaimsError> {
    if let Some(read) = simple::parse(payload, roles_roots, claims) {
        return read;
    }
    *claims = Claims::default();
    parse_json(payload, roles_roots, claims)
}

/// [`parse`] by serde_json, for every payload. serde_json need not check every string for UTF-8
/// again.
fn parse_json<'de>(
    payload: &'de str,
    roles_roots: &[String],
    claims: &mut Claims<'de>,
) -> Result<(), ClaimsError> {
    let wrong_type = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(payload);
    let result = ClaimsSeed {
        roles_roots,
        wrong_type: &wrong_type,
        out: claims,
    }
    .deserialize(&mut de);
    let read = match result {
        Ok(read) => read,
        Err(_) => {
            return Err(wrong_type
                .get()
                .map_or(ClaimsError::NotAnObject, ClaimsError::WrongType));
        }
    };
    de.end().map_err(|_| ClaimsError::NotAnObject)?;
    read
}

/// The claims of the payloads most access tokens have, read without serde.
///
/// The grammar is a strict subset of JSON (RFC 8259) on which no two parsers can disagree:
/// no byte below 0x20 anywhere (so no whitespace but the space, and no control character in a
/// string), no backslash anywhere (so no escapes: a string is everything between two quotes),
/// numbers only as unsigned integers of at most 18 digits without leading zeros, arrays only of
/// strings, and no nested object. Registered claims must have their types. Whatever falls
/// outside, valid or not, makes [`parse`](simple::parse) answer `None` and the payload goes to
/// serde_json; so does every error, except a repeated claim, which is found the same way on both
/// paths. A test compares both paths on many payloads.
mod simple {
    use std::borrow::Cow;

    use super::{Claims, ClaimsError, Strings};

    struct Cursor<'a> {
        text: &'a str,
        pos: usize,
    }

    /// Where the first `"` in `bytes` is, looking at eight bytes at a time: strings here are
    /// mostly claim names of a few bytes, too short for memchr's vector setup to pay off.
    #[inline]
    pub(super) fn find_quote(bytes: &[u8]) -> Option<usize> {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
        const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
        let mut chunks = bytes.chunks_exact(8);
        let mut offset = 0;
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let x = word ^ QUOTES;
            // The lowest set high bit marks the first zero byte of `x`, the first quote (bits
            // above it may be false positives, which `trailing_zeros` never looks at).
            let found = x.wrapping_sub(ONES) & !x & HIGHS;
            if found != 0 {
                return Some(offset + found.trailing_zeros() as usize / 8);
            }
            offset += 8;
        }
        let tail = chunks.remainder();
        tail.iter().position(|&b| b == b'"').map(|i| offset + i)
    }

    /// A claim name of up to eight bytes as a number, to dispatch on without comparing strings;
    /// 0 for longer names. Distinct names map to distinct numbers because the grammar has no NUL
    /// byte (nor any other below 0x20).
    const fn pack(name: &[u8]) -> u64 {
        let mut packed = 0u64;
        let mut shift = 0;
        let mut rest = name;
        while let [byte, tail @ ..] = rest {
            if shift == 64 {
                return 0;
            }
            packed |= (*byte as u64) << shift;
            shift += 8;
            rest = tail;
        }
        packed
    }

    impl<'a> Cursor<'a> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.pos).copied()
        }

        fn skip_spaces(&mut self) {
            while self.peek() == Some(b' ') {
                self.pos += 1;
            }
        }

        fn eat(&mut self, byte: u8) -> Option<()> {
            (self.peek() == Some(byte)).then(|| self.pos += 1)
        }

        /// A string without escapes: its contents.
        #[inline]
        fn string(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let rest = self.text.as_bytes().get(self.pos..)?;
            let len = find_quote(rest)?;
            // Both ends are at ASCII quotes, so on character boundaries.
            let contents = self.text.get(self.pos..self.pos + len)?;
            self.pos += len + 1;
            Some(contents)
        }

        /// An unsigned integer of at most 18 digits (so within `i64`), no leading zero.
        fn integer(&mut self) -> Option<i64> {
            let bytes = self.text.as_bytes();
            let start = self.pos;
            let mut value = 0i64;
            while let Some(&b) = bytes.get(self.pos)
                && b.is_ascii_digit()
            {
                if self.pos - start == 18 {
                    return None;
                }
                value = value * 10 + i64::from(b - b'0');
                self.pos += 1;
            }
            match self.pos - start {
                0 => None,
                1 => Some(value),
                // A leading zero.
                _ if bytes.get(start) == Some(&b'0') => None,
                _ => Some(value),
            }
        }

        /// An array of strings.
        fn string_array(&mut self) -> Option<Vec<Cow<'a, str>>> {
            self.eat(b'[')?;
            self.skip_spaces();
            let mut items = Vec::new();
            if self.eat(b']').is_some() {
                return Some(items);
            }
            loop {
                items.push(Cow::Borrowed(self.string()?));
                self.skip_spaces();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.skip_spaces();
                    }
                    b']' => {
                        self.pos += 1;
                        return Some(items);
                    }
                    _ => return None,
                }
            }
        }

        /// A string or an array of strings.
        fn strings(&mut self) -> Option<Strings<'a>> {
            if self.peek()? == b'[' {
                self.string_array().map(Strings::Many)
            } else {
                self.string().map(|s| Strings::One(Cow::Borrowed(s)))
            }
        }

        /// Any value of the grammar: its JSON text.
        fn value(&mut self) -> Option<&'a str> {
            let start = self.pos;
            match self.peek()? {
                b'"' => {
                    self.string()?;
                }
                b'[' => {
                    self.string_array()?;
                }
                b'0'..=b'9' => {
                    self.integer()?;
                }
                _ => {
                    let rest = self.text.get(self.pos..)?;
                    let literal = ["true", "false", "null"]
                        .into_iter()
                        .find(|l| rest.starts_with(l))?;
                    self.pos += literal.len();
                }
            }
            self.text.get(start..self.pos)
        }
    }

    const ISS: u64 = pack(b"iss");
    const SUB: u64 = pack(b"sub");
    const AUD: u64 = pack(b"aud");
    const EXP: u64 = pack(b"exp");
    const NBF: u64 = pack(b"nbf");
    const IAT: u64 = pack(b"iat");
    const JTI: u64 = pack(b"jti");
    const ACR: u64 = pack(b"acr");
    const AMR: u64 = pack(b"amr");
    const SCOPE: u64 = pack(b"scope");
    const SCP: u64 = pack(b"scp");
    const CNF: u64 = pack(b"cnf");

    /// The claims of `payload` if it is in the grammar; `None` sends it to serde_json.
    pub(super) fn parse<'de>(
        payload: &'de str,
        roles_roots: &[String],
        c: &mut Claims<'de>,
    ) -> Option<Result<(), ClaimsError>> {
        // One branch-free pass, which the compiler vectorizes.
        let escapes_or_controls = payload
            .bytes()
            .fold(false, |found, b| found | (b < 0x20) | (b == b'\\'));
        if escapes_or_controls {
            return None;
        }
        let mut cur = Cursor {
            text: payload,
            pos: 0,
        };
        cur.skip_spaces();
        cur.eat(b'{')?;
        cur.skip_spaces();
        let mut seen = 0u16;
        let mut registered_repeat = false;
        if cur.eat(b'}').is_none() {
            loop {
                let name = cur.string()?;
                cur.skip_spaces();
                cur.eat(b':')?;
                cur.skip_spaces();
                let text = |cur: &mut Cursor<'de>| cur.string().map(Cow::Borrowed);
                let bit: u16 = match pack(name.as_bytes()) {
                    ISS => {
                        c.iss = Some(text(&mut cur)?);
                        1
                    }
                    SUB => {
                        c.sub = Some(text(&mut cur)?);
                        1 << 1
                    }
                    AUD => {
                        c.aud = Some(cur.strings()?);
                        1 << 2
                    }
                    EXP => {
                        c.exp = Some(cur.integer()?);
                        1 << 3
                    }
                    NBF => {
                        c.nbf = Some(cur.integer()?);
                        1 << 4
                    }
                    IAT => {
                        c.iat = Some(cur.integer()?);
                        1 << 5
                    }
                    _ if name == "auth_time" => {
                        c.auth_time = Some(cur.integer()?);
                        1 << 6
                    }
                    JTI => {
                        c.jti = Some(text(&mut cur)?);
                        1 << 7
                    }
                    _ if name == "client_id" => {
                        c.client_id = Some(text(&mut cur)?);
                        1 << 8
                    }
                    ACR => {
                        c.acr = Some(text(&mut cur)?);
                        1 << 9
                    }
                    AMR => {
                        c.amr = Some(Strings::Many(cur.string_array()?));
                        1 << 10
                    }
                    SCOPE => {
                        c.scope = Some(text(&mut cur)?);
                        1 << 11
                    }
                    SCP => {
                        c.scp = Some(cur.strings()?);
                        1 << 12
                    }
                    // An object: not in the grammar.
                    CNF => return None,
                    _ if roles_roots.iter().any(|r| r == name) => {
                        let raw = cur.value()?;
                        c.roles_roots.push((Cow::Borrowed(name), raw));
                        0
                    }
                    _ => {
                        cur.value()?;
                        0
                    }
                };
                registered_repeat |= seen & bit != 0;
                seen |= bit;
                c.names.push(Cow::Borrowed(name), bit != 0);
                cur.skip_spaces();
                match cur.peek()? {
                    b',' => {
                        cur.pos += 1;
                        cur.skip_spaces();
                    }
                    b'}' => {
                        cur.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        cur.skip_spaces();
        if cur.pos != payload.len() {
            return None;
        }
        Some(match c.names.repeated(registered_repeat) {
            Some(dup) => Err(ClaimsError::Duplicate(dup.to_owned())),
            None => Ok(()),
        })
    }
}

/// Follows the rest of a roles path (`realm_access.roles` after `realm_access`) and reads the
/// array of strings at its end. Absent along the way: no roles. Present with another type: error.
pub(crate) fn roles_at(root: &str, rest: &[String]) -> Result<Vec<String>, ClaimsError> {
    let mut value: serde_json::Value =
        serde_json::from_str(root).map_err(|_| ClaimsError::WrongType("roles"))?;
    for segment in rest {
        value = match value {
            serde_json::Value::Object(mut map) => match map.remove(segment) {
                Some(v) => v,
                None => return Ok(Vec::new()),
            },
            _ => return Err(ClaimsError::WrongType("roles")),
        };
    }
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(ClaimsError::WrongType("roles")),
            })
            .collect(),
        _ => Err(ClaimsError::WrongType("roles")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'de>(payload: &'de str, roles_roots: &[String]) -> Result<Claims<'de>, ClaimsError> {
        let mut claims = Claims::default();
        super::parse(payload, roles_roots, &mut claims).map(|()| claims)
    }

    #[test]
    fn registered_claims_are_read_with_their_types() {
        let c = parse(
            r#"{"iss":"https://idp","sub":"alice","aud":["a","b"],"exp":1.9e9,"nbf":1,
                "iat":2,"jti":"j","scope":"read write","amr":["pwd","mfa"],"x":{"deep":[1]}}"#,
            &[],
        )
        .unwrap_or_default();
        assert_eq!(c.iss.as_deref(), Some("https://idp"));
        assert_eq!(c.exp, Some(1_900_000_000));
        assert_eq!(c.amr.as_ref().map(|a| a.iter().count()), Some(2));
        assert!(c.has("x"));
        assert_eq!(
            c.aud.map(Strings::into_owned),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn wrong_types_are_errors_not_absence() {
        for (payload, claim) in [
            (r#"{"exp":"1900000000"}"#, "exp"),
            (r#"{"iss":["a","b"]}"#, "iss"),
            (r#"{"aud":7}"#, "aud"),
            (r#"{"aud":["a",7]}"#, "aud"),
            (r#"{"nbf":true}"#, "nbf"),
            (r#"{"iat":null}"#, "iat"),
            (r#"{"sub":1}"#, "sub"),
            (r#"{"cnf":"x"}"#, "cnf"),
            (r#"{"exp":1e300}"#, "exp"),
        ] {
            assert_eq!(
                parse(payload, &[]).err(),
                Some(ClaimsError::WrongType(claim)),
                "{payload}"
            );
        }
    }

    #[test]
    fn repeated_claims_are_refused() {
        assert_eq!(
            parse(r#"{"sub":"a","exp":1,"sub":"b"}"#, &[]).err(),
            Some(ClaimsError::Duplicate("sub".into()))
        );
        assert_eq!(
            parse(r#"{"x":1,"x":2}"#, &[]).err(),
            Some(ClaimsError::Duplicate("x".into()))
        );
        assert_eq!(
            parse(r#"{"a\u0062":1,"ab":2}"#, &[]).err(),
            Some(ClaimsError::Duplicate("ab".into()))
        );
    }

    #[test]
    fn repeats_are_found_however_the_names_are_written_or_how_many() {
        // A registered claim repeated under an escaped spelling.
        assert_eq!(
            parse(r#"{"i\u0073s":"a","iss":"b"}"#, &[]).err(),
            Some(ClaimsError::Duplicate("iss".into()))
        );
        // Unregistered names, past the names kept inline; the first repeat in sorted order is
        // the one named.
        let mut payload: Vec<String> = (0..40).map(|i| format!(r#""c{i:02}":{i}"#)).collect();
        payload.push(r#""c39":0"#.into());
        payload.push(r#""c07":0"#.into());
        let payload = format!("{{{}}}", payload.join(","));
        assert_eq!(
            parse(&payload, &[]).err(),
            Some(ClaimsError::Duplicate("c07".into()))
        );
        // Many distinct names, and a roles root among them: no repeat.
        let roots = ["roles".to_owned()];
        let mut payload: Vec<String> = (0..40).map(|i| format!(r#""c{i:02}":{i}"#)).collect();
        payload.push(r#""roles":["a"]"#.into());
        payload.push(r#""sub":"s""#.into());
        let payload = format!("{{{}}}", payload.join(","));
        let c = parse(&payload, &roots).unwrap_or_default();
        assert!(c.has("c39") && c.has("roles") && c.has("sub") && !c.has("c40"));
        // A roles root repeated.
        assert_eq!(
            parse(r#"{"roles":["a"],"x":1,"roles":["b"]}"#, &roots).err(),
            Some(ClaimsError::Duplicate("roles".into()))
        );
    }

    #[test]
    fn the_simple_path_agrees_with_serde_json() {
        let roots = ["roles".to_owned()];
        let mut corpus: Vec<String> = [
            r#"{"iss":"a","sub":"b","aud":"c","exp":1900000000,"scope":"x y"}"#,
            r#" { "iss" : "a" , "aud" : [ "c" , "d" ] , "exp" : 0 } "#,
            r#"{"iss":"a","iss":"b"}"#,
            r#"{"x":1,"y":[],"x":true}"#,
            r#"{"roles":["a","b"],"amr":[],"scp":["s"]}"#,
            r#"{"roles":"admin"}"#,
            r#"{}"#,
            r#"{ }"#,
            r#""#,
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"exp":-1}"#,
            r#"{"exp":1.0}"#,
            r#"{"exp":1e9}"#,
            r#"{"exp":12345678901234567890}"#,
            r#"{"exp":"1"}"#,
            r#"{"aud":7}"#,
            r#"{"amr":"pwd"}"#,
            r#"{"cnf":{"jkt":"x"}}"#,
            r#"{"iss":null}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a" "b"}"#,
            "{\"a\":\"\t\"}",
            "{\n\"a\":1}",
            r#"{"a\u0062":1}"#,
        ]
        .map(str::to_owned)
        .to_vec();
        let keys = [
            "issuer",
            "iss_",
            "auth_tim",
            "auth_timex",
            "client_idé",
            "subsubsub",
            "iss",
            "sub",
            "aud",
            "exp",
            "nbf",
            "iat",
            "auth_time",
            "jti",
            "client_id",
            "acr",
            "amr",
            "scope",
            "scp",
            "cnf",
            "roles",
            "x",
            "",
            "é",
        ];
        let values = [
            r#""a""#,
            r#""""#,
            r#""é b""#,
            r#""abcdefg""#,
            r#""abcdefgh""#,
            r#""abcdefghi""#,
            r#""0123456789abcdé""#,
            r#""0123456789abcdef""#,
            r#""https://idp.example.com/realms/x""#,
            "0",
            "7",
            "1700000000",
            "123456789012345678",
            "1234567890123456789",
            "-1",
            "-0",
            "1.5",
            "1e3",
            "01",
            "true",
            "false",
            "null",
            "nul",
            "[]",
            r#"["a"]"#,
            r#"["a","b"]"#,
            r#"[ "a" , "b" ]"#,
            "[1]",
            r#"["a",]"#,
            "{}",
            r#"{"a":1}"#,
            r#""a\"b""#,
            r#""\u0061""#,
            "\"t\tb\"",
            r#"["a" "b"]"#,
            "[",
            r#"""#,
        ];
        let separators = [",", " , ", ",  ", " ,", ",,", ""];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..30_000 {
            let mut p = String::from(["{", " {", "{ "][next(3)]);
            for i in 0..next(7) {
                if i > 0 {
                    p.push_str(separators[next(separators.len()) * (next(4) / 3)]);
                }
                p.push_str(&format!(
                    "\"{}\"{}:{}{}",
                    keys[next(keys.len())],
                    [" ", ""][next(2)],
                    [" ", ""][next(2)],
                    values[next(values.len())]
                ));
            }
            p.push_str(["}", " }", "} ", "}}", "", "},"][next(6).min(next(6))]);
            corpus.push(p);
        }
        let (mut simple_ok, mut simple_err) = (0, 0);
        for payload in &corpus {
            let mut fast = Claims::default();
            if let Some(read) = simple::parse(payload, &roots, &mut fast) {
                let mut slow = Claims::default();
                assert_eq!(read, parse_json(payload, &roots, &mut slow), "{payload}");
                if read.is_ok() {
                    assert_eq!(fast, slow, "{payload}");
                    simple_ok += 1;
                } else {
                    simple_err += 1;
                }
            }
        }
        // Both outcomes of the simple path were compared, many times.
        assert!(
            simple_ok > 1_000 && simple_err > 10,
            "{simple_ok} {simple_err}"
        );
    }

    #[test]
    fn quotes_are_found_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                if at < len {
                    bytes[at] = b'"';
                    // A second quote later never hides the first.
                    if at + 3 < len {
                        bytes[at + 3] = b'"';
                    }
                }
                let expected = bytes.iter().position(|&b| b == b'"');
                assert_eq!(simple::find_quote(&bytes), expected, "{len} {at}");
            }
        }
        // Bytes above 0x7f next to the quote.
        assert_eq!(simple::find_quote("éééé\"é".as_bytes()), Some(8));
        assert_eq!(simple::find_quote(&[0xff, 0x22, 0xa2, 0x22]), Some(1));
    }

    #[test]
    fn amr_must_be_an_array() {
        assert_eq!(
            parse(r#"{"amr":"pwd"}"#, &[]).err(),
            Some(ClaimsError::WrongType("amr"))
        );
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let c = parse(r#"{"sub":"a\"b","aud":"x\u0079","scp":["r\/w"]}"#, &[]).unwrap_or_default();
        assert_eq!(c.sub.as_deref(), Some("a\"b"));
        assert_eq!(c.aud.map(Strings::into_owned), Some(vec!["xy".to_owned()]));
        assert_eq!(c.scp.map(Strings::into_owned), Some(vec!["r/w".to_owned()]));
    }

    #[test]
    fn non_objects_and_trailing_data_are_refused() {
        for p in ["[1]", "\"foo\"", "{} {}", "", "{\"a\":1"] {
            assert_eq!(parse(p, &[]).err(), Some(ClaimsError::NotAnObject));
        }
    }

    #[test]
    fn roles_follow_a_nested_path() {
        let roots = ["realm_access".to_owned()];
        let c = parse(r#"{"realm_access":{"roles":["admin","user"]}}"#, &roots).unwrap_or_default();
        let root = c
            .roles_root("realm_access")
            .map(|r| roles_at(r, &["roles".to_owned()]));
        assert_eq!(root, Some(Ok(vec!["admin".to_owned(), "user".to_owned()])));
        let c = parse(r#"{"realm_access":{"roles":"admin"}}"#, &roots).unwrap_or_default();
        let root = c
            .roles_root("realm_access")
            .map(|r| roles_at(r, &["roles".to_owned()]));
        assert_eq!(root, Some(Err(ClaimsError::WrongType("roles"))));
    }
}
