use zerotrust_core::{Reason, Rejection, RejectionKind, StoreError};

use crate::jws::JwsError;

/// Stable reason codes of this crate's refusals.
pub mod reasons {
    use zerotrust_core::Reason;

    /// No bearer token in the request.
    pub const MISSING: Reason = Reason::new("token.missing", "An access token is required.");
    /// More than one `Authorization` header (or token header / cookie).
    pub const MULTIPLE_CREDENTIALS: Reason = Reason::new(
        "request.multiple_credentials",
        "The request carries more than one set of credentials.",
    );
    /// A token in the URL query string.
    pub const TOKEN_IN_QUERY: Reason = Reason::new(
        "request.token_in_query",
        "Access tokens are not accepted in the URL query.",
    );
    /// A malformed `Authorization` header.
    pub const MALFORMED_CREDENTIALS: Reason = Reason::new(
        "request.malformed_credentials",
        "The credentials in the request are malformed.",
    );
    /// A token over the size limit.
    pub const TOO_LARGE: Reason = Reason::new("token.too_large", "The access token is too large.");
    /// Not a well-formed compact JWS.
    pub const MALFORMED: Reason = Reason::new("token.malformed", "The access token is malformed.");
    /// An encrypted token (JWE).
    pub const ENCRYPTED: Reason = Reason::new(
        "token.encrypted",
        "Encrypted access tokens are not accepted.",
    );
    /// `none` or an unsupported algorithm.
    pub const ALGORITHM: Reason = Reason::new(
        "token.algorithm_unsupported",
        "The access token's signature algorithm is not accepted.",
    );
    /// `crit`, `b64` or `zip` in the header.
    pub const EXTENSION: Reason = Reason::new(
        "token.header_extension",
        "The access token uses a header extension that is not supported.",
    );
    /// The token's `alg` is not its key's.
    pub const ALGORITHM_MISMATCH: Reason = Reason::new(
        "token.algorithm_mismatch",
        "The access token's algorithm does not match its key.",
    );
    /// The signature does not verify.
    pub const SIGNATURE: Reason = Reason::new(
        "token.signature_invalid",
        "The access token's signature is invalid.",
    );
    /// Wrong or missing `typ`.
    pub const TYPE: Reason = Reason::new(
        "token.type",
        "The token is not an access token of an accepted type.",
    );
    /// The payload is not a JSON object with unique, well-typed claims.
    pub const CLAIMS: Reason = Reason::new(
        "token.claims_invalid",
        "The access token's claims are malformed.",
    );
    /// A required claim is missing.
    pub const CLAIM_MISSING: Reason = Reason::new(
        "token.claim_missing",
        "The access token lacks a required claim.",
    );
    /// `iss` names no configured issuer.
    pub const ISSUER: Reason = Reason::new(
        "token.issuer_unknown",
        "The access token's issuer is not trusted.",
    );
    /// No key with the token's `kid`.
    pub const KEY_UNKNOWN: Reason = Reason::new(
        "token.key_unknown",
        "The access token was signed with an unknown key.",
    );
    /// No `kid` and several keys fit.
    pub const KID_REQUIRED: Reason =
        Reason::new("token.kid_required", "The access token must name its key.");
    /// Expired beyond the leeway.
    pub const EXPIRED: Reason = Reason::new("token.expired", "The access token has expired.");
    /// `nbf` in the future.
    pub const NOT_YET_VALID: Reason =
        Reason::new("token.not_yet_valid", "The access token is not valid yet.");
    /// `iat` in the future.
    pub const ISSUED_IN_FUTURE: Reason = Reason::new(
        "token.issued_in_future",
        "The access token was issued in the future.",
    );
    /// No accepted audience.
    pub const AUDIENCE: Reason = Reason::new(
        "token.audience",
        "The access token is not intended for this service.",
    );
    /// Revoked.
    pub const REVOKED: Reason = Reason::new("token.revoked", "The access token has been revoked.");
    /// No usable issuer key and none could be fetched.
    pub const KEYS_UNAVAILABLE: Reason = Reason::new(
        "issuer.keys_unavailable",
        "The access token cannot be verified right now.",
    );
    /// The revocation store did not answer.
    pub const STORE_UNAVAILABLE: Reason = Reason::new(
        "store.unavailable",
        "The access token cannot be verified right now.",
    );
}

/// Why a token was refused. Each variant maps to one stable [`Reason`] and one HTTP answer; see
/// [`VerifyError::rejection`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is longer than the configured limit.
    #[error("token longer than the limit")]
    TooLarge,
    /// The token is not a valid compact JWS, or its signature does not verify.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// The `typ` header is missing or not accepted.
    #[error("token type not accepted")]
    TokenType,
    /// The payload is not a JSON object of unique, well-typed claims.
    #[error("malformed claims: {0}")]
    Claims(String),
    /// A required claim is missing.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// `iss` names no configured issuer.
    #[error("unknown issuer")]
    UnknownIssuer,
    /// No key of the issuer has the token's `kid`.
    #[error("unknown key")]
    UnknownKey,
    /// The token has no `kid` and several of the issuer's keys fit its algorithm.
    #[error("the token names no kid and several keys fit")]
    AmbiguousKey,
    /// Expired beyond the leeway.
    #[error("expired")]
    Expired,
    /// `nbf` is in the future beyond the leeway.
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` is in the future beyond the leeway.
    #[error("issued in the future")]
    IssuedInFuture,
    /// `aud` names no accepted audience.
    #[error("audience not accepted")]
    Audience,
    /// The token's `jti` is revoked.
    #[error("revoked")]
    Revoked,
    /// A custom claim check refused the token.
    #[error("claim check failed: {0}")]
    Check(Reason),
    /// No usable key for the issuer and none could be fetched: 503.
    #[error("issuer keys unavailable; retry in {retry_after}s")]
    KeysUnavailable {
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// The revocation store did not answer: 503 (fail closed).
    #[error("revocation store unavailable: {0}")]
    Store(StoreError),
    /// The credentials are not an RFC 6750 `b64token`: a malformed request (400).
    #[error("the credentials are not a b64token")]
    MalformedCredentials,
}

impl VerifyError {
    /// The stable reason.
    pub fn reason(&self) -> Reason {
        use reasons::*;
        match self {
            VerifyError::TooLarge => TOO_LARGE,
            VerifyError::Jws(e) => match e {
                JwsError::NotCompact | JwsError::Encoding(_) | JwsError::Header => MALFORMED,
                JwsError::Encrypted => ENCRYPTED,
                JwsError::UnsupportedAlgorithm => ALGORITHM,
                JwsError::UnsupportedExtension => EXTENSION,
                JwsError::AlgorithmMismatch => ALGORITHM_MISMATCH,
                JwsError::BadSignature => SIGNATURE,
            },
            VerifyError::TokenType => TYPE,
            VerifyError::Claims(_) => CLAIMS,
            VerifyError::MissingClaim(_) => CLAIM_MISSING,
            VerifyError::UnknownIssuer => ISSUER,
            VerifyError::UnknownKey => KEY_UNKNOWN,
            VerifyError::AmbiguousKey => KID_REQUIRED,
            VerifyError::Expired => EXPIRED,
            VerifyError::NotYetValid => NOT_YET_VALID,
            VerifyError::IssuedInFuture => ISSUED_IN_FUTURE,
            VerifyError::Audience => AUDIENCE,
            VerifyError::Revoked => REVOKED,
            VerifyError::Check(reason) => *reason,
            VerifyError::KeysUnavailable { .. } => KEYS_UNAVAILABLE,
            VerifyError::Store(_) => STORE_UNAVAILABLE,
            VerifyError::MalformedCredentials => MALFORMED_CREDENTIALS,
        }
    }

    /// The HTTP answer: 401 `invalid_token` for every token fault, 503 with `Retry-After` when
    /// keys or the revocation store are unavailable.
    pub fn rejection(&self) -> Rejection {
        let kind = match self {
            VerifyError::KeysUnavailable { retry_after } => RejectionKind::Unavailable {
                retry_after: *retry_after,
            },
            VerifyError::Store(_) => RejectionKind::Unavailable { retry_after: 1 },
            VerifyError::MalformedCredentials => RejectionKind::InvalidRequest,
            _ => RejectionKind::InvalidToken,
        };
        Rejection::new(kind, self.reason()).with_layer("jwt")
    }
}
