use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// Who is calling: the verified subject of the request and what its credential says.
///
/// Built by the layer that verified the credential (for bearer tokens, `zerotrust-jwt`), then shared
/// read-only: [`ZeroTrust`](crate::ZeroTrust) holds it in an `Arc`, so handlers and later layers read it without
/// copying. The raw claims are kept as the verified JSON text and parsed only when
/// [`claims`](Identity::claims) is first called, so requests that never look at them pay nothing.
/// An identity built by [`from_parts_in_raw_claims`](Identity::from_parts_in_raw_claims) reads
/// its text values in place from that JSON text as well.
///
/// ```
/// use zerotrust_core::Identity;
///
/// let id = Identity::new("alice", "https://idp.example.com", 1_900_000_000)
///     .with_audiences(vec!["https://api.example.com".into()])
///     .with_scopes(vec!["reports:read".into()])
///     .with_acr(Some("urn:example:mfa".into()));
/// assert_eq!(id.subject(), "alice");
/// assert!(id.has_scope("reports:read"));
/// assert!(!id.has_scope("reports:write"));
/// ```
#[derive(Clone)]
pub struct Identity {
    subject: Text,
    issuer: Text,
    expires_at: i64,
    audiences: List,
    scopes: List,
    roles: Vec<String>,
    acr: Option<Text>,
    amr: Vec<String>,
    auth_time: Option<i64>,
    issued_at: Option<i64>,
    jti: Option<Text>,
    client_id: Option<Text>,
    confirmation: Option<Value>,
    raw_claims: Option<String>,
    parsed_claims: OnceLock<Map<String, Value>>,
}

/// A text value of an identity: its own string, or a byte range of its raw claims.
#[derive(Clone)]
enum Text {
    Owned(String),
    Raw(Range<usize>),
}

/// A list value of an identity: its own strings, or one string of its raw claims that is the
/// list's only element (`"aud": "api"`) or its elements separated by ASCII whitespace
/// (`"scope": "openid reports:read"`). The `Vec<String>` the slice accessors return is built on
/// their first call; [`Identity::has_scope`] and [`Identity::has_audience`] never build it.
#[derive(Clone)]
enum List {
    Owned(Vec<String>),
    Raw {
        range: Range<usize>,
        split: bool,
        items: OnceLock<Vec<String>>,
    },
}

/// Everything an [`Identity`] holds, for building one in a single step
/// ([`Identity::from_parts`]). Start from `IdentityParts { subject, issuer, expires_at,
/// ..Default::default() }` so that fields added later keep your code compiling.
#[derive(Debug, Clone, Default)]
pub struct IdentityParts {
    /// The subject (`sub`).
    pub subject: String,
    /// The issuer (`iss`).
    pub issuer: String,
    /// The expiry (`exp`, seconds since the epoch).
    pub expires_at: i64,
    /// The audiences (`aud`).
    pub audiences: Vec<String>,
    /// The granted scopes.
    pub scopes: Vec<String>,
    /// The roles.
    pub roles: Vec<String>,
    /// The authentication context class reference (`acr`).
    pub acr: Option<String>,
    /// The authentication methods references (`amr`).
    pub amr: Vec<String>,
    /// When the user authenticated (`auth_time`).
    pub auth_time: Option<i64>,
    /// When the credential was issued (`iat`).
    pub issued_at: Option<i64>,
    /// The credential's unique id (`jti`).
    pub jti: Option<String>,
    /// The OAuth client (`client_id`).
    pub client_id: Option<String>,
    /// The proof-of-possession confirmation (`cnf`).
    pub confirmation: Option<Value>,
    /// The verified claims as JSON text (a JSON object).
    pub raw_claims: Option<String>,
}

impl Identity {
    /// An identity from all its parts at once.
    ///
    /// ```
    /// use zerotrust_core::{Identity, IdentityParts};
    ///
    /// let id = Identity::from_parts(IdentityParts {
    ///     subject: "svc-reports".into(),
    ///     issuer: "spiffe://example.org".into(),
    ///     expires_at: 1_900_000_000,
    ///     roles: vec!["reader".into()],
    ///     ..Default::default()
    /// });
    /// assert!(id.has_role("reader"));
    /// ```
    pub fn from_parts(parts: IdentityParts) -> Self {
        let IdentityParts {
            subject,
            issuer,
            expires_at,
            audiences,
            scopes,
            roles,
            acr,
            amr,
            auth_time,
            issued_at,
            jti,
            client_id,
            confirmation,
            raw_claims,
        } = parts;
        Self {
            subject: Text::Owned(subject),
            issuer: Text::Owned(issuer),
            expires_at,
            audiences: List::Owned(audiences),
            scopes: List::Owned(scopes),
            roles,
            acr: acr.map(Text::Owned),
            amr,
            auth_time,
            issued_at,
            jti: jti.map(Text::Owned),
            client_id: client_id.map(Text::Owned),
            confirmation,
            raw_claims,
            parsed_claims: OnceLock::new(),
        }
    }

    /// An identity from its parts, some of its text values read in place from
    /// `parts.raw_claims` instead of copied into strings of their own: for a verifier that has
    /// just parsed those claims, one allocation less per value.
    ///
    /// Each `(claim, range)` names a claim and the byte range, in the raw claims, of the contents
    /// of its JSON string value, which must have no escape sequences; that value takes the place
    /// of the matching field of `parts`. The claims: `sub`, `iss`, `aud` (a single audience),
    /// `scope` (scopes separated by whitespace), `acr`, `jti` and `client_id`.
    ///
    /// `None` if a claim is not one of these, or a range is not a range of whole characters of
    /// the raw claims.
    ///
    /// ```
    /// use zerotrust_core::{Identity, IdentityParts};
    ///
    /// let raw = r#"{"sub":"alice","scope":"openid reports:read"}"#;
    /// let parts = || IdentityParts {
    ///     issuer: "https://idp".into(),
    ///     expires_at: 1_900_000_000,
    ///     raw_claims: Some(raw.into()),
    ///     ..Default::default()
    /// };
    /// let id = Identity::from_parts_in_raw_claims(parts(), [("sub", 8..13), ("scope", 24..43)])
    ///     .unwrap();
    /// assert_eq!(id.subject(), "alice");
    /// assert!(id.has_scope("reports:read"));
    /// assert_eq!(id.scopes(), ["openid", "reports:read"]);
    /// assert!(Identity::from_parts_in_raw_claims(parts(), [("sub", 8..99)]).is_none());
    /// assert!(Identity::from_parts_in_raw_claims(parts(), [("tenant", 8..13)]).is_none());
    /// ```
    pub fn from_parts_in_raw_claims<'c>(
        parts: IdentityParts,
        in_raw_claims: impl IntoIterator<Item = (&'c str, Range<usize>)>,
    ) -> Option<Self> {
        // Where each value is, by field: subject, issuer, audience, scopes, acr, jti, client_id.
        let mut at: [Option<Range<usize>>; 7] = Default::default();
        let raw = parts.raw_claims.as_deref();
        for (claim, range) in in_raw_claims {
            raw.and_then(|raw| raw.get(range.clone()))?;
            let field = match claim {
                "sub" => 0,
                "iss" => 1,
                "aud" => 2,
                "scope" => 3,
                "acr" => 4,
                "jti" => 5,
                "client_id" => 6,
                _ => return None,
            };
            *at.get_mut(field)? = Some(range);
        }
        let [
            subject_at,
            issuer_at,
            audience_at,
            scopes_at,
            acr_at,
            jti_at,
            client_id_at,
        ] = at;
        let IdentityParts {
            subject,
            issuer,
            expires_at,
            audiences,
            scopes,
            roles,
            acr,
            amr,
            auth_time,
            issued_at,
            jti,
            client_id,
            confirmation,
            raw_claims,
        } = parts;
        let text = |at: Option<Range<usize>>, owned: String| match at {
            Some(range) => Text::Raw(range),
            None => Text::Owned(owned),
        };
        let optional = |at: Option<Range<usize>>, owned: Option<String>| match at {
            Some(range) => Some(Text::Raw(range)),
            None => owned.map(Text::Owned),
        };
        let list = |at: Option<Range<usize>>, split: bool, owned: Vec<String>| match at {
            Some(range) => List::Raw {
                range,
                split,
                items: OnceLock::new(),
            },
            None => List::Owned(owned),
        };
        Some(Self {
            subject: text(subject_at, subject),
            issuer: text(issuer_at, issuer),
            expires_at,
            audiences: list(audience_at, false, audiences),
            scopes: list(scopes_at, true, scopes),
            roles,
            acr: optional(acr_at, acr),
            amr,
            auth_time,
            issued_at,
            jti: optional(jti_at, jti),
            client_id: optional(client_id_at, client_id),
            confirmation,
            raw_claims,
            parsed_claims: OnceLock::new(),
        })
    }

    /// An identity for `subject`, asserted by `issuer`, valid until `expires_at` (seconds since the
    /// Unix epoch).
    pub fn new(subject: impl Into<String>, issuer: impl Into<String>, expires_at: i64) -> Self {
        Self::from_parts(IdentityParts {
            subject: subject.into(),
            issuer: issuer.into(),
            expires_at,
            ..IdentityParts::default()
        })
    }

    /// Sets the audiences the credential was issued for.
    pub fn with_audiences(mut self, audiences: Vec<String>) -> Self {
        self.audiences = List::Owned(audiences);
        self
    }
    /// Sets the granted scopes.
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = List::Owned(scopes);
        self
    }
    /// Sets the roles.
    pub fn with_roles(mut self, roles: Vec<String>) -> Self {
        self.roles = roles;
        self
    }
    /// Sets the authentication context class reference (`acr`).
    pub fn with_acr(mut self, acr: Option<String>) -> Self {
        self.acr = acr.map(Text::Owned);
        self
    }
    /// Sets the authentication methods references (`amr`).
    pub fn with_amr(mut self, amr: Vec<String>) -> Self {
        self.amr = amr;
        self
    }
    /// Sets when the user authenticated (`auth_time`, seconds since the epoch).
    pub fn with_auth_time(mut self, auth_time: Option<i64>) -> Self {
        self.auth_time = auth_time;
        self
    }
    /// Sets when the credential was issued (`iat`, seconds since the epoch).
    pub fn with_issued_at(mut self, issued_at: Option<i64>) -> Self {
        self.issued_at = issued_at;
        self
    }
    /// Sets the credential's unique id (`jti`), the key of revocation.
    pub fn with_jti(mut self, jti: Option<String>) -> Self {
        self.jti = jti.map(Text::Owned);
        self
    }
    /// Sets the OAuth client the credential was issued to (`client_id`).
    pub fn with_client_id(mut self, client_id: Option<String>) -> Self {
        self.client_id = client_id.map(Text::Owned);
        self
    }
    /// Sets the proof-of-possession confirmation (`cnf`, RFC 7800).
    pub fn with_confirmation(mut self, cnf: Option<Value>) -> Self {
        self.confirmation = cnf;
        self
    }
    /// Keeps the verified claims as JSON text (a JSON object), parsed on first use by
    /// [`claims`](Identity::claims).
    ///
    /// ```
    /// use zerotrust_core::{Identity, IdentityParts};
    ///
    /// let raw = r#"{"sub":"alice"}"#;
    /// let parts = IdentityParts { raw_claims: Some(raw.into()), ..Default::default() };
    /// let id = Identity::from_parts_in_raw_claims(parts, [("sub", 8..13)])
    ///     .unwrap()
    ///     .with_raw_claims(r#"{"sub":"bob"}"#);
    /// // Values read from the old claims text keep their values.
    /// assert_eq!(id.subject(), "alice");
    /// assert_eq!(id.claims()["sub"], "bob");
    /// ```
    pub fn with_raw_claims(mut self, json_object: impl Into<String>) -> Self {
        self.detach();
        self.raw_claims = Some(json_object.into());
        self.parsed_claims = OnceLock::new();
        self
    }

    /// Copies the values read from the raw claims into strings of their own, so the raw claims
    /// can be replaced.
    fn detach(&mut self) {
        let raw = self.raw_claims.as_deref().unwrap_or_default();
        let own = |text: &mut Text| {
            if let Text::Raw(range) = text {
                *text = Text::Owned(raw.get(range.clone()).unwrap_or_default().to_owned());
            }
        };
        own(&mut self.subject);
        own(&mut self.issuer);
        for text in [&mut self.acr, &mut self.jti, &mut self.client_id]
            .into_iter()
            .flatten()
        {
            own(text);
        }
        for list in [&mut self.audiences, &mut self.scopes] {
            if let List::Raw { .. } = list {
                *list = List::Owned(list_items(raw, list).map(str::to_owned).collect());
            }
        }
    }

    fn text<'a>(&'a self, text: &'a Text) -> &'a str {
        match text {
            Text::Owned(s) => s,
            Text::Raw(range) => raw_text(self.raw_claims.as_deref(), range),
        }
    }

    fn list<'a>(&'a self, list: &'a List) -> &'a [String] {
        match list {
            List::Owned(items) => items,
            List::Raw { items, .. } => items.get_or_init(|| {
                list_items(self.raw_claims.as_deref().unwrap_or_default(), list)
                    .map(str::to_owned)
                    .collect()
            }),
        }
    }

    /// The subject (`sub`): who the credential speaks for.
    pub fn subject(&self) -> &str {
        self.text(&self.subject)
    }
    /// The issuer (`iss`) that vouched for the subject.
    pub fn issuer(&self) -> &str {
        self.text(&self.issuer)
    }
    /// When the credential expires (`exp`, seconds since the epoch).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
    /// The audiences (`aud`).
    pub fn audiences(&self) -> &[String] {
        self.list(&self.audiences)
    }
    /// Whether `audience` is one of the audiences.
    pub fn has_audience(&self, audience: &str) -> bool {
        list_items(
            self.raw_claims.as_deref().unwrap_or_default(),
            &self.audiences,
        )
        .any(|a| a == audience)
    }
    /// The granted scopes (`scope` or `scp`).
    pub fn scopes(&self) -> &[String] {
        self.list(&self.scopes)
    }
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        list_items(self.raw_claims.as_deref().unwrap_or_default(), &self.scopes).any(|s| s == scope)
    }
    /// The roles, read from the claim path the verifier was configured with.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
    /// Whether the subject has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
    /// The authentication context class reference (`acr`).
    pub fn acr(&self) -> Option<&str> {
        self.acr.as_ref().map(|t| self.text(t))
    }
    /// The authentication methods references (`amr`), such as `pwd`, `mfa`, `hwk`.
    pub fn amr(&self) -> &[String] {
        &self.amr
    }
    /// When the user last authenticated (`auth_time`, seconds since the epoch).
    pub fn auth_time(&self) -> Option<i64> {
        self.auth_time
    }
    /// When the credential was issued (`iat`).
    pub fn issued_at(&self) -> Option<i64> {
        self.issued_at
    }
    /// The credential's unique id (`jti`).
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_ref().map(|t| self.text(t))
    }
    /// The OAuth client the credential was issued to (`client_id`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_ref().map(|t| self.text(t))
    }
    /// The proof-of-possession confirmation (`cnf`, RFC 7800), as sent.
    pub fn confirmation(&self) -> Option<&Value> {
        self.confirmation.as_ref()
    }

    /// All verified claims, including those this type has no accessor for.
    ///
    /// Parsed from the verified JSON on first call and kept; an identity built without raw claims
    /// returns an empty map.
    ///
    /// ```
    /// use zerotrust_core::Identity;
    ///
    /// let id = Identity::new("alice", "https://idp", 1_900_000_000)
    ///     .with_raw_claims(r#"{"sub":"alice","tenant":"acme"}"#);
    /// assert_eq!(id.claims()["tenant"], "acme");
    /// assert_eq!(id.claim("missing"), None);
    /// ```
    pub fn claims(&self) -> &Map<String, Value> {
        self.parsed_claims.get_or_init(|| {
            self.raw_claims
                .as_deref()
                .and_then(|raw| serde_json::from_str::<Map<String, Value>>(raw).ok())
                .unwrap_or_default()
        })
    }

    /// One verified claim by name.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims().get(name)
    }

    /// The verified claims as the JSON text they arrived in, if kept.
    pub fn raw_claims(&self) -> Option<&str> {
        self.raw_claims.as_deref()
    }
}

/// The text at `range` of the raw claims (ranges are checked when the identity is built).
fn raw_text<'a>(raw: Option<&'a str>, range: &Range<usize>) -> &'a str {
    raw.and_then(|raw| raw.get(range.clone()))
        .unwrap_or_default()
}

/// The elements of a list, without building its `Vec<String>`.
fn list_items<'a>(raw: &'a str, list: &'a List) -> impl Iterator<Item = &'a str> {
    let (owned, one, split): (&[String], Option<&str>, Option<&str>) = match list {
        List::Owned(items) => (items, None, None),
        List::Raw {
            range, split: true, ..
        } => (&[], None, Some(raw_text(Some(raw), range))),
        List::Raw { range, .. } => (&[], Some(raw_text(Some(raw), range)), None),
    };
    owned
        .iter()
        .map(String::as_str)
        .chain(one)
        .chain(split.into_iter().flat_map(str::split_ascii_whitespace))
}

/// Lists the elements of a list value without building its `Vec<String>`.
struct DebugList<'a>(&'a str, &'a List);

impl fmt::Debug for DebugList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(list_items(self.0, self.1)).finish()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.raw_claims.as_deref().unwrap_or_default();
        f.debug_struct("Identity")
            .field("subject", &self.subject())
            .field("issuer", &self.issuer())
            .field("expires_at", &self.expires_at)
            .field("audiences", &DebugList(raw, &self.audiences))
            .field("scopes", &DebugList(raw, &self.scopes))
            .field("roles", &self.roles)
            .field("acr", &self.acr())
            .field("amr", &self.amr)
            .field("auth_time", &self.auth_time)
            .field("issued_at", &self.issued_at)
            .field("jti", &self.jti())
            .field("client_id", &self.client_id())
            .field("confirmation", &self.confirmation)
            .field("raw_claims", &self.raw_claims)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_identity() -> Identity {
        let raw = r#"{"sub":"alice","iss":"https://idp","aud":"api","scope":" a  b ","jti":"j-1"}"#;
        let at = |s: &str| {
            let start = raw.find(&format!("\"{s}\"")).map_or(0, |i| i + 1);
            start..start + s.len()
        };
        Identity::from_parts_in_raw_claims(
            IdentityParts {
                expires_at: 1_900_000_000,
                client_id: Some("owned-client".into()),
                raw_claims: Some(raw.into()),
                ..Default::default()
            },
            [
                ("sub", at("alice")),
                ("iss", at("https://idp")),
                ("aud", at("api")),
                ("scope", at(" a  b ")),
                ("jti", at("j-1")),
            ],
        )
        .unwrap()
    }

    #[test]
    fn values_read_in_place_equal_owned_ones() {
        let id = raw_identity();
        assert_eq!(id.subject(), "alice");
        assert_eq!(id.issuer(), "https://idp");
        assert_eq!(id.jti(), Some("j-1"));
        assert_eq!(id.client_id(), Some("owned-client"));
        assert_eq!(id.acr(), None);
        assert!(id.has_scope("a") && id.has_scope("b") && !id.has_scope(""));
        assert!(id.has_audience("api") && !id.has_audience("other"));
        assert_eq!(id.scopes(), ["a", "b"]);
        assert_eq!(id.audiences(), ["api"]);
        let debug = format!("{id:?}");
        assert!(debug.contains(r#"subject: "alice""#), "{debug}");
        assert!(debug.contains(r#"scopes: ["a", "b"]"#), "{debug}");
    }

    #[test]
    fn replacing_raw_claims_keeps_the_values_read_from_them() {
        let id = raw_identity().with_raw_claims("{}");
        assert_eq!(id.subject(), "alice");
        assert_eq!(id.jti(), Some("j-1"));
        assert_eq!(id.scopes(), ["a", "b"]);
        assert_eq!(id.audiences(), ["api"]);
        assert_eq!(id.raw_claims(), Some("{}"));
    }

    #[test]
    fn ranges_outside_whole_characters_or_unknown_claims_are_refused() {
        let parts = |raw: Option<&str>| IdentityParts {
            raw_claims: raw.map(str::to_owned),
            ..Default::default()
        };
        let raw = Some("{\"sub\":\"é\"}");
        for range in [8..9, 8..20, 30..31] {
            assert!(Identity::from_parts_in_raw_claims(parts(raw), [("jti", range)]).is_none());
        }
        assert!(Identity::from_parts_in_raw_claims(parts(None), [("sub", 0..0)]).is_none());
        assert!(Identity::from_parts_in_raw_claims(parts(raw), [("roles", 8..10)]).is_none());
        assert!(
            Identity::from_parts_in_raw_claims(parts(raw), [("sub", 8..10)])
                .is_some_and(|id| id.subject() == "é")
        );
    }
}
