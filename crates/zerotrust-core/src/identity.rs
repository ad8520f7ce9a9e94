use std::sync::OnceLock;

use serde_json::{Map, Value};

/// Who is calling: the verified subject of the request and what its credential says.
///
/// Built by the layer that verified the credential (for bearer tokens, `zerotrust-jwt`), then shared
/// read-only: [`ZeroTrust`](crate::ZeroTrust) holds it in an `Arc`, so handlers and later layers read it without
/// copying. The raw claims are kept as the verified JSON text and parsed only when
/// [`claims`](Identity::claims) is first called, so requests that never look at them pay nothing.
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
#[derive(Debug, Clone)]
pub struct Identity {
    subject: String,
    issuer: String,
    expires_at: i64,
    audiences: Vec<String>,
    scopes: Vec<String>,
    roles: Vec<String>,
    acr: Option<String>,
    amr: Vec<String>,
    auth_time: Option<i64>,
    issued_at: Option<i64>,
    jti: Option<String>,
    client_id: Option<String>,
    confirmation: Option<Value>,
    raw_claims: Option<String>,
    parsed_claims: OnceLock<Map<String, Value>>,
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
            parsed_claims: OnceLock::new(),
        }
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
        self.audiences = audiences;
        self
    }
    /// Sets the granted scopes.
    pub fn with_scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = scopes;
        self
    }
    /// Sets the roles.
    pub fn with_roles(mut self, roles: Vec<String>) -> Self {
        self.roles = roles;
        self
    }
    /// Sets the authentication context class reference (`acr`).
    pub fn with_acr(mut self, acr: Option<String>) -> Self {
        self.acr = acr;
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
        self.jti = jti;
        self
    }
    /// Sets the OAuth client the credential was issued to (`client_id`).
    pub fn with_client_id(mut self, client_id: Option<String>) -> Self {
        self.client_id = client_id;
        self
    }
    /// Sets the proof-of-possession confirmation (`cnf`, RFC 7800).
    pub fn with_confirmation(mut self, cnf: Option<Value>) -> Self {
        self.confirmation = cnf;
        self
    }
    /// Keeps the verified claims as JSON text (a JSON object), parsed on first use by
    /// [`claims`](Identity::claims).
    pub fn with_raw_claims(mut self, json_object: impl Into<String>) -> Self {
        self.raw_claims = Some(json_object.into());
        self.parsed_claims = OnceLock::new();
        self
    }

    /// The subject (`sub`): who the credential speaks for.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The issuer (`iss`) that vouched for the subject.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// When the credential expires (`exp`, seconds since the epoch).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
    /// The audiences (`aud`).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }
    /// The granted scopes (`scope` or `scp`).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
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
        self.acr.as_deref()
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
        self.jti.as_deref()
    }
    /// The OAuth client the credential was issued to (`client_id`).
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
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
