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
        struct V;
        impl<'de> Visitor<'de> for V {
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
        d.deserialize_str(V)
    }
}

/// A JSON string or an array of JSON strings.
struct StringOrArray(Vec<String>);

impl<'de> de::Deserialize<'de> for StringOrArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrArray;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrArray(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringOrArray(out))
            }
        }
        d.deserialize_any(V)
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

/// The claims the verifier reads. Everything is owned, ready to move into an `Identity`.
#[derive(Debug, Default)]
pub(crate) struct Claims<'de> {
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) aud: Option<Vec<String>>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) auth_time: Option<i64>,
    pub(crate) jti: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) acr: Option<String>,
    pub(crate) amr: Option<Vec<String>>,
    pub(crate) scope: Option<String>,
    pub(crate) scp: Option<Vec<String>>,
    pub(crate) cnf: Option<serde_json::Value>,
    /// The raw values of the top-level claims that configured roles paths start at.
    pub(crate) roles_roots: Vec<(Cow<'de, str>, &'de RawValue)>,
    /// Every top-level claim name, for required-claim checks.
    pub(crate) names: Vec<Cow<'de, str>>,
}

impl<'de> Claims<'de> {
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    /// The raw value of the top-level claim `name`, if it is a roles root and present.
    pub(crate) fn roles_root(&self, name: &str) -> Option<&'de RawValue> {
        self.roles_roots
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, raw)| raw)
    }
}

struct ClaimsSeed<'r> {
    roles_roots: &'r [String],
    /// Which claim had the wrong type. serde_json cannot resume after a type error, so the
    /// visitor stops with an error and leaves the claim's name here.
    wrong_type: &'r Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Result<Claims<'de>, ClaimsError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

macro_rules! read {
    ($self:ident, $map:expr, $ty:ty, $name:literal) => {
        match $map.next_value::<$ty>() {
            Ok(v) => v,
            Err(e) => {
                $self.wrong_type.set(Some($name));
                return Err(e);
            }
        }
    };
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Result<Claims<'de>, ClaimsError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut c = Claims {
            names: Vec::with_capacity(16),
            ..Claims::default()
        };
        while let Some(CowStr(name)) = map.next_key::<CowStr<'de>>()? {
            match name.as_ref() {
                "iss" => c.iss = Some(read!(self, map, String, "iss")),
                "sub" => c.sub = Some(read!(self, map, String, "sub")),
                "aud" => c.aud = Some(read!(self, map, StringOrArray, "aud").0),
                "exp" => c.exp = Some(read!(self, map, NumericDate, "exp").0),
                "nbf" => c.nbf = Some(read!(self, map, NumericDate, "nbf").0),
                "iat" => c.iat = Some(read!(self, map, NumericDate, "iat").0),
                "auth_time" => c.auth_time = Some(read!(self, map, NumericDate, "auth_time").0),
                "jti" => c.jti = Some(read!(self, map, String, "jti")),
                "client_id" => c.client_id = Some(read!(self, map, String, "client_id")),
                "acr" => c.acr = Some(read!(self, map, String, "acr")),
                "amr" => c.amr = Some(read!(self, map, Vec<String>, "amr")),
                "scope" => c.scope = Some(read!(self, map, String, "scope")),
                "scp" => c.scp = Some(read!(self, map, StringOrArray, "scp").0),
                "cnf" => c.cnf = Some(read!(self, map, Object, "cnf").0),
                other if self.roles_roots.iter().any(|r| r == other) => {
                    let raw = read!(self, map, &'de RawValue, "roles");
                    c.roles_roots.push((name.clone(), raw));
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            c.names.push(name);
        }
        let mut sorted: Vec<&str> = c.names.iter().map(AsRef::as_ref).collect();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w.first() == w.get(1)) {
            let dup = w.first().copied().unwrap_or_default();
            return Ok(Err(ClaimsError::Duplicate(dup.to_owned())));
        }
        Ok(Ok(c))
    }
}

/// Reads the claims of a payload. `roles_roots` are the first segments of the roles claim paths.
pub(crate) fn parse<'de>(
    payload: &'de [u8],
    roles_roots: &[String],
) -> Result<Claims<'de>, ClaimsError> {
    let wrong_type = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(payload);
    let result = ClaimsSeed {
        roles_roots,
        wrong_type: &wrong_type,
    }
    .deserialize(&mut de);
    let claims = match result {
        Ok(claims) => claims,
        Err(_) => {
            return Err(wrong_type
                .get()
                .map_or(ClaimsError::NotAnObject, ClaimsError::WrongType));
        }
    };
    de.end().map_err(|_| ClaimsError::NotAnObject)?;
    claims
}

/// Follows the rest of a roles path (`realm_access.roles` after `realm_access`) and reads the
/// array of strings at its end. Absent along the way: no roles. Present with another type: error.
pub(crate) fn roles_at(root: &RawValue, rest: &[String]) -> Result<Vec<String>, ClaimsError> {
    let mut value: serde_json::Value =
        serde_json::from_str(root.get()).map_err(|_| ClaimsError::WrongType("roles"))?;
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

    #[test]
    fn registered_claims_are_read_with_their_types() {
        let c = parse(
            br#"{"iss":"https://idp","sub":"alice","aud":["a","b"],"exp":1.9e9,"nbf":1,
                "iat":2,"jti":"j","scope":"read write","amr":["pwd","mfa"],"x":{"deep":[1]}}"#,
            &[],
        )
        .unwrap_or_default();
        assert_eq!(c.iss.as_deref(), Some("https://idp"));
        assert_eq!(c.aud, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(c.exp, Some(1_900_000_000));
        assert_eq!(c.amr.as_ref().map(Vec::len), Some(2));
        assert!(c.has("x"));
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
                parse(payload.as_bytes(), &[]).err(),
                Some(ClaimsError::WrongType(claim)),
                "{payload}"
            );
        }
    }

    #[test]
    fn repeated_claims_are_refused() {
        assert_eq!(
            parse(br#"{"sub":"a","exp":1,"sub":"b"}"#, &[]).err(),
            Some(ClaimsError::Duplicate("sub".into()))
        );
        assert_eq!(
            parse(br#"{"x":1,"x":2}"#, &[]).err(),
            Some(ClaimsError::Duplicate("x".into()))
        );
        assert_eq!(
            parse(br#"{"a\u0062":1,"ab":2}"#, &[]).err(),
            Some(ClaimsError::Duplicate("ab".into()))
        );
    }

    #[test]
    fn non_objects_and_trailing_data_are_refused() {
        for p in [&b"[1]"[..], b"\"foo\"", b"{} {}", b"", b"{\"a\":1"] {
            assert_eq!(parse(p, &[]).err(), Some(ClaimsError::NotAnObject));
        }
    }

    #[test]
    fn roles_follow_a_nested_path() {
        let roots = ["realm_access".to_owned()];
        let c =
            parse(br#"{"realm_access":{"roles":["admin","user"]}}"#, &roots).unwrap_or_default();
        let root = c
            .roles_root("realm_access")
            .map(|r| roles_at(r, &["roles".to_owned()]));
        assert_eq!(root, Some(Ok(vec!["admin".to_owned(), "user".to_owned()])));
        let c = parse(br#"{"realm_access":{"roles":"admin"}}"#, &roots).unwrap_or_default();
        let root = c
            .roles_root("realm_access")
            .map(|r| roles_at(r, &["roles".to_owned()]));
        assert_eq!(root, Some(Err(ClaimsError::WrongType("roles"))));
    }
}
