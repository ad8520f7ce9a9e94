//! Verification keys, prepared once: JWK, JWK Set, PEM, DER or an explicit shared secret.
//!
//! Every key is checked when it is loaded, never per request: its use, its operations, its size,
//! its exponent, its curve point, the ROCA fingerprint, and whether its algorithm fits its type.
//! A key that fails is refused (single key) or ignored with a reason (key sets, so that one bad key
//! an issuer publishes does not take the good ones down with it).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64_simd::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::algorithm::{Algorithm, KeyFamily};

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `use` is not `sig`.
    #[error("the key is not for signatures (use={0})")]
    NotForSignatures(String),
    /// `key_ops` is present and does not include `verify`.
    #[error("key_ops does not include \"verify\"")]
    NoVerifyOperation,
    /// A symmetric (`oct`) key where only explicitly configured secrets are accepted.
    #[error("symmetric (oct) keys are accepted only as an explicitly configured secret")]
    SymmetricNotAllowed,
    /// A symmetric key in a set that also holds asymmetric keys.
    #[error("a symmetric key in a set that also holds asymmetric keys")]
    MixedKeySet,
    /// More than one key in the set carries this `kid`.
    #[error("more than one key in the set has this kid")]
    DuplicateKid,
    /// A published key carries private key material: the issuer is misconfigured.
    #[error("the key carries private key material")]
    PrivateKeyMaterial,
    /// The RSA modulus is too short.
    #[error("RSA modulus of {bits} bits; at least {min} required")]
    RsaTooSmall {
        /// The modulus length.
        bits: usize,
        /// The minimum.
        min: usize,
    },
    /// The RSA modulus is longer than 8192 bits.
    #[error("RSA modulus of {0} bits; at most 8192 supported")]
    RsaTooLarge(usize),
    /// The RSA public exponent is even, 1, or absurdly large.
    #[error("invalid RSA public exponent")]
    RsaBadExponent,
    /// The RSA modulus has the ROCA fingerprint (CVE-2017-15361): its factors can be computed.
    #[error("RSA modulus has the ROCA fingerprint (CVE-2017-15361)")]
    RocaWeak,
    /// The key's `alg` does not fit its `kty` or `crv`.
    #[error("alg {alg} does not fit this key ({key})")]
    AlgorithmMismatch {
        /// The key's `alg`.
        alg: String,
        /// The key's type and curve.
        key: String,
    },
    /// An algorithm this crate does not verify.
    #[error("unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// A curve this crate does not verify.
    #[error("unsupported curve {0}")]
    UnsupportedCurve(String),
    /// A key type this crate does not verify.
    #[error("unsupported key type {0}")]
    UnsupportedKeyType(String),
    /// A required member is missing.
    #[error("missing member {0}")]
    MissingMember(&'static str),
    /// A member is not valid unpadded base64url.
    #[error("member {0} is not valid base64url")]
    BadEncoding(&'static str),
    /// A coordinate or key has the wrong length for its curve.
    #[error("member {0} has the wrong length")]
    BadLength(&'static str),
    /// An HMAC secret shorter than its hash output (RFC 7518 §3.2).
    #[error("HMAC secret of {len} bytes; {alg} needs at least {min}")]
    HmacTooShort {
        /// The secret's length.
        len: usize,
        /// The minimum.
        min: usize,
        /// The algorithm.
        alg: Algorithm,
    },
    /// A symmetric key must name its algorithm.
    #[error("a symmetric key must name its algorithm (alg)")]
    HmacWithoutAlg,
    /// No algorithm is allowed for an RSA key without `alg`.
    #[error("the key names no alg and no default algorithm is allowed for it")]
    NoAlgorithm,
    /// The cryptographic library refused the key material.
    #[error("the key material is invalid")]
    InvalidKey,
    /// Not a JWK / JWK Set at all.
    #[error("malformed key document: {0}")]
    Malformed(String),
    /// A PEM block that is not a public key.
    #[error("unsupported PEM block {0}; expected PUBLIC KEY or RSA PUBLIC KEY")]
    PemLabel(String),
}

/// What a key source may contain. Two presets: [`KeyPolicy::remote`] for key sets fetched from an
/// issuer, [`KeyPolicy::local`] for keys an operator configured by hand.
///
/// ```
/// use zerotrust_jwt::{Algorithm, KeyPolicy};
///
/// // Azure AD publishes RSA keys without "alg"; allow PS256 as well as RS256 for them.
/// let policy = KeyPolicy::remote().rsa_algorithms([Algorithm::RS256, Algorithm::PS256]);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    allow_symmetric: bool,
    strip_private_members: bool,
    rsa_algorithms: Vec<Algorithm>,
    min_rsa_bits: usize,
}

impl KeyPolicy {
    /// For key sets fetched from an issuer: no symmetric keys, keys carrying private material are
    /// ignored, RSA keys without `alg` are for RS256 only, RSA of at least 2048 bits.
    pub fn remote() -> Self {
        Self {
            allow_symmetric: false,
            strip_private_members: false,
            rsa_algorithms: vec![Algorithm::RS256],
            min_rsa_bits: 2048,
        }
    }

    /// For keys an operator configured explicitly: symmetric keys allowed (a set must then be all
    /// symmetric), private members are ignored and the public part used.
    pub fn local() -> Self {
        Self {
            allow_symmetric: true,
            strip_private_members: true,
            ..Self::remote()
        }
    }

    /// The algorithms an RSA key that names no `alg` may verify. Only RSA algorithms are kept.
    pub fn rsa_algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        let mut algs: Vec<Algorithm> = algs
            .into_iter()
            .filter(|a| a.family() == KeyFamily::Rsa)
            .collect();
        algs.sort();
        algs.dedup();
        self.rsa_algorithms = algs;
        self
    }

    /// Raises the minimum RSA modulus length (never below 2048 bits).
    pub fn min_rsa_bits(mut self, bits: usize) -> Self {
        self.min_rsa_bits = bits.max(2048);
        self
    }
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self::remote()
    }
}

enum Material {
    Public(ParsedPublicKey),
    // Boxed: an HMAC key holds precomputed inner and outer states (over 1 KiB).
    Hmac(Box<hmac::Key>),
}

/// A key prepared for verifying one algorithm.
///
/// Prepared once (parsed, validated, the RSA modulus and curve point checked); per request it is
/// only used. An RSA JWK without `alg` allowed for two algorithms becomes two `VerifyingKey`s.
///
/// ```
/// use zerotrust_jwt::{Algorithm, VerifyingKey};
///
/// let key = VerifyingKey::hmac_secret(b"0123456789abcdef0123456789abcdef", Algorithm::HS256)
///     .unwrap()
///     .with_kid("shared-1");
/// assert_eq!(key.kid(), Some("shared-1"));
/// assert_eq!(key.algorithm(), Algorithm::HS256);
/// // Secrets shorter than the hash output are refused (RFC 7518 §3.2).
/// assert!(VerifyingKey::hmac_secret(b"short", Algorithm::HS256).is_err());
/// ```
pub struct VerifyingKey {
    kid: Option<Arc<str>>,
    alg: Algorithm,
    material: Material,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn rsa_params(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn b64(member: &'static str, value: &str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode_to_vec(value)
        .map_err(|_| KeyError::BadEncoding(member))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// The ROCA test (Nemec et al., CCS 2017): moduli made by the vulnerable Infineon library are
/// congruent, modulo each small prime `p` below, to a power of 65537. For a random modulus that
/// holds for every `p` with negligible probability.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % p);
        let generator = 65537 % p;
        let mut power = 1u32;
        // The subgroup generated by 65537 has at most p - 1 elements.
        for _ in 0..p {
            if power == residue {
                return true;
            }
            power = power * generator % p;
        }
        false
    })
}

fn check_rsa(n: &[u8], e: &[u8], policy_min_bits: usize) -> Result<(), KeyError> {
    let bits = bit_length(n);
    if bits < policy_min_bits {
        return Err(KeyError::RsaTooSmall {
            bits,
            min: policy_min_bits,
        });
    }
    if bits > 8192 {
        return Err(KeyError::RsaTooLarge(bits));
    }
    if e.is_empty() || e.len() > 4 {
        return Err(KeyError::RsaBadExponent);
    }
    let e_value = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if e_value < 3 || e_value % 2 == 0 {
        return Err(KeyError::RsaBadExponent);
    }
    if has_roca_fingerprint(n) {
        return Err(KeyError::RocaWeak);
    }
    Ok(())
}

fn min_hmac_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

impl VerifyingKey {
    /// The key id (`kid`) tokens name this key by, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Sets the key id.
    pub fn with_kid(mut self, kid: impl Into<Arc<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Whether `signature` is this key's valid signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::Public(key) => key.verify_sig(message, signature).is_ok(),
            Material::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
        }
    }

    fn rsa(n: &[u8], e: &[u8], alg: Algorithm, min_bits: usize) -> Result<Self, KeyError> {
        let (n, e) = (strip_leading_zeros(n), strip_leading_zeros(e));
        check_rsa(n, e, min_bits)?;
        let params = rsa_params(alg).ok_or(KeyError::AlgorithmMismatch {
            alg: alg.name().into(),
            key: "RSA".into(),
        })?;
        let key = RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(params)
            .map_err(|_| KeyError::InvalidKey)?;
        Ok(Self {
            kid: None,
            alg,
            material: Material::Public(key),
        })
    }

    fn public(alg: Algorithm, bytes: &[u8]) -> Result<Self, KeyError> {
        let algorithm: &'static dyn signature::VerificationAlgorithm = match alg.family() {
            KeyFamily::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            KeyFamily::P384 => &signature::ECDSA_P384_SHA384_FIXED,
            KeyFamily::Ed25519 => &signature::ED25519,
            KeyFamily::Rsa | KeyFamily::Hmac => return Err(KeyError::InvalidKey),
        };
        let key = ParsedPublicKey::new(algorithm, bytes).map_err(|_| KeyError::InvalidKey)?;
        Ok(Self {
            kid: None,
            alg,
            material: Material::Public(key),
        })
    }

    /// A shared-secret (HMAC) key.
    ///
    /// # Warning
    /// Anyone who holds the secret can mint tokens this key accepts: every service that verifies
    /// also can forge. Use it only where issuer and verifier are the same party, and prefer an
    /// asymmetric issuer key. The secret must be at least as long as the hash output (32, 48 or
    /// 64 bytes); shorter secrets are refused.
    pub fn hmac_secret(secret: &[u8], alg: Algorithm) -> Result<Self, KeyError> {
        let hmac_alg = match alg {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            other => {
                return Err(KeyError::AlgorithmMismatch {
                    alg: other.name().into(),
                    key: "shared secret".into(),
                });
            }
        };
        let min = min_hmac_len(alg);
        if secret.len() < min {
            return Err(KeyError::HmacTooShort {
                len: secret.len(),
                min,
                alg,
            });
        }
        Ok(Self {
            kid: None,
            alg,
            material: Material::Hmac(Box::new(hmac::Key::new(hmac_alg, secret))),
        })
    }

    /// A public key in DER: SubjectPublicKeyInfo (any type) or PKCS#1 `RSAPublicKey`, for `alg`.
    ///
    /// ```
    /// use zerotrust_jwt::{Algorithm, KeyError, VerifyingKey};
    ///
    /// assert_eq!(VerifyingKey::from_der(b"not a key", Algorithm::RS256).unwrap_err(), KeyError::InvalidKey);
    /// ```
    pub fn from_der(der: &[u8], alg: Algorithm) -> Result<Self, KeyError> {
        match alg.family() {
            KeyFamily::Rsa => {
                let key =
                    aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|_| KeyError::InvalidKey)?;
                let parts = RsaPublicKeyComponents::<Vec<u8>>::from(&key);
                Self::rsa(&parts.n, &parts.e, alg, 2048)
            }
            KeyFamily::Hmac => Err(KeyError::AlgorithmMismatch {
                alg: alg.name().into(),
                key: "public key".into(),
            }),
            _ => Self::public(alg, der),
        }
    }

    /// A public key in PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`), for `alg`.
    ///
    /// ```
    /// use zerotrust_jwt::{Algorithm, VerifyingKey};
    ///
    /// let pem = "-----BEGIN PUBLIC KEY-----\n\
    ///     MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n\
    ///     -----END PUBLIC KEY-----\n";
    /// let key = VerifyingKey::from_pem(pem, Algorithm::EdDSA).unwrap();
    /// assert_eq!(key.algorithm(), Algorithm::EdDSA);
    /// ```
    pub fn from_pem(pem_text: &str, alg: Algorithm) -> Result<Self, KeyError> {
        let block = pem::parse(pem_text).map_err(|e| KeyError::Malformed(e.to_string()))?;
        match block.tag() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Self::from_der(block.contents(), alg),
            other => Err(KeyError::PemLabel(other.to_owned())),
        }
    }

    /// The keys one JWK yields under `policy`: one per algorithm it may verify.
    pub fn from_jwk(jwk: &serde_json::Value, policy: &KeyPolicy) -> Result<Vec<Self>, KeyError> {
        let raw = RawJwk::deserialize(jwk).map_err(|e| KeyError::Malformed(e.to_string()))?;
        raw.into_keys(policy)
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
    k: Option<String>,
    d: Option<serde_json::Value>,
    p: Option<serde_json::Value>,
    q: Option<serde_json::Value>,
    dp: Option<serde_json::Value>,
    dq: Option<serde_json::Value>,
    qi: Option<serde_json::Value>,
    oth: Option<serde_json::Value>,
}

impl RawJwk {
    fn has_private_members(&self) -> bool {
        self.d.is_some()
            || self.p.is_some()
            || self.q.is_some()
            || self.dp.is_some()
            || self.dq.is_some()
            || self.qi.is_some()
            || self.oth.is_some()
    }

    fn named_alg(&self) -> Result<Option<Algorithm>, KeyError> {
        match self.alg.as_deref() {
            None => Ok(None),
            // RFC 9864's fully-specified name for EdDSA on Ed25519.
            Some("Ed25519") => Ok(Some(Algorithm::EdDSA)),
            Some(name) => Algorithm::from_name(name)
                .map(Some)
                .ok_or_else(|| KeyError::UnsupportedAlgorithm(name.to_owned())),
        }
    }

    fn mismatch(&self, key: &str) -> KeyError {
        KeyError::AlgorithmMismatch {
            alg: self.alg.clone().unwrap_or_default(),
            key: key.to_owned(),
        }
    }

    fn into_keys(self, policy: &KeyPolicy) -> Result<Vec<VerifyingKey>, KeyError> {
        if let Some(u) = self.use_.as_deref()
            && u != "sig"
        {
            return Err(KeyError::NotForSignatures(u.to_owned()));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|op| op == "verify")
        {
            return Err(KeyError::NoVerifyOperation);
        }
        let kty = self.kty.as_deref().ok_or(KeyError::MissingMember("kty"))?;
        if kty != "oct" && self.has_private_members() && !policy.strip_private_members {
            return Err(KeyError::PrivateKeyMaterial);
        }
        let named = self.named_alg()?;
        let keys = match kty {
            "RSA" => {
                let n = b64("n", self.n.as_deref().ok_or(KeyError::MissingMember("n"))?)?;
                let e = b64("e", self.e.as_deref().ok_or(KeyError::MissingMember("e"))?)?;
                let algs = match named {
                    Some(alg) if alg.family() == KeyFamily::Rsa => vec![alg],
                    Some(_) => return Err(self.mismatch("RSA")),
                    None if policy.rsa_algorithms.is_empty() => return Err(KeyError::NoAlgorithm),
                    None => policy.rsa_algorithms.clone(),
                };
                algs.into_iter()
                    .map(|alg| VerifyingKey::rsa(&n, &e, alg, policy.min_rsa_bits))
                    .collect::<Result<Vec<_>, _>>()?
            }
            "EC" => {
                let crv = self.crv.as_deref().ok_or(KeyError::MissingMember("crv"))?;
                let (alg, len) = match crv {
                    "P-256" => (Algorithm::ES256, 32),
                    "P-384" => (Algorithm::ES384, 48),
                    other => return Err(KeyError::UnsupportedCurve(other.to_owned())),
                };
                if named.is_some_and(|n| n != alg) {
                    return Err(self.mismatch(&format!("EC {crv}")));
                }
                let x = b64("x", self.x.as_deref().ok_or(KeyError::MissingMember("x"))?)?;
                let y = b64("y", self.y.as_deref().ok_or(KeyError::MissingMember("y"))?)?;
                if x.len() != len {
                    return Err(KeyError::BadLength("x"));
                }
                if y.len() != len {
                    return Err(KeyError::BadLength("y"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                vec![VerifyingKey::public(alg, &point)?]
            }
            "OKP" => {
                let crv = self.crv.as_deref().ok_or(KeyError::MissingMember("crv"))?;
                if crv != "Ed25519" {
                    return Err(KeyError::UnsupportedCurve(crv.to_owned()));
                }
                if named.is_some_and(|n| n != Algorithm::EdDSA) {
                    return Err(self.mismatch("OKP Ed25519"));
                }
                let x = b64("x", self.x.as_deref().ok_or(KeyError::MissingMember("x"))?)?;
                if x.len() != 32 {
                    return Err(KeyError::BadLength("x"));
                }
                vec![VerifyingKey::public(Algorithm::EdDSA, &x)?]
            }
            "oct" => {
                if !policy.allow_symmetric {
                    return Err(KeyError::SymmetricNotAllowed);
                }
                let alg = match named {
                    Some(alg) if alg.is_symmetric() => alg,
                    Some(_) => return Err(self.mismatch("oct")),
                    None => return Err(KeyError::HmacWithoutAlg),
                };
                let k = b64("k", self.k.as_deref().ok_or(KeyError::MissingMember("k"))?)?;
                vec![VerifyingKey::hmac_secret(&k, alg)?]
            }
            other => return Err(KeyError::UnsupportedKeyType(other.to_owned())),
        };
        let kid: Option<Arc<str>> = self.kid.map(Arc::from);
        Ok(keys
            .into_iter()
            .map(|mut k| {
                k.kid.clone_from(&kid);
                k
            })
            .collect())
    }
}

/// A key a key set left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// The key's position in the set's `keys` array.
    pub index: usize,
    /// The key's `kid`, if it had a readable one.
    pub kid: Option<String>,
    /// Why it was left out.
    pub error: KeyError,
}

/// The result of looking a token's key up in a [`KeySet`].
#[derive(Debug)]
pub enum KeyLookup<'a> {
    /// The one key that verifies this `kid` and algorithm.
    Found(&'a VerifyingKey),
    /// No key has this `kid` (or, without a `kid`, no key has this algorithm).
    Unknown,
    /// The key named by `kid` exists but does not verify the token's algorithm.
    AlgorithmMismatch,
    /// The token names no `kid` and several keys fit its algorithm.
    Ambiguous,
}

/// A set of prepared verification keys, looked up by `kid` and algorithm.
///
/// ```
/// use zerotrust_jwt::{KeyPolicy, KeySet};
///
/// let jwks = br#"{"keys":[
///   {"kty":"oct","alg":"HS256","kid":"a","k":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
///   {"kty":"oct","alg":"HS256","kid":"b","k":"c2hvcnQ"}
/// ]}"#;
/// // Symmetric keys load only under the local policy; the 5-byte key "b" is left out.
/// let (set, ignored) = KeySet::from_jwk_set(jwks, &KeyPolicy::local()).unwrap();
/// assert_eq!(set.len(), 1);
/// assert_eq!(ignored[0].kid.as_deref(), Some("b"));
/// // Under the remote policy every oct key is refused.
/// let (set, _) = KeySet::from_jwk_set(jwks, &KeyPolicy::remote()).unwrap();
/// assert!(set.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    by_kid: HashMap<Arc<str>, Vec<usize>, ahash::RandomState>,
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// A set of explicitly prepared keys.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let keys: Vec<VerifyingKey> = keys.into_iter().collect();
        let mut by_kid: HashMap<Arc<str>, Vec<usize>, ahash::RandomState> = HashMap::default();
        for (i, key) in keys.iter().enumerate() {
            if let Some(kid) = &key.kid {
                by_kid.entry(kid.clone()).or_default().push(i);
            }
        }
        Self { keys, by_kid }
    }

    /// Loads a JWK Set document (`{"keys": [...]}`) under `policy`.
    ///
    /// Unfit keys are left out and returned with their reasons: wrong `use` or `key_ops`, `oct`
    /// keys where not allowed or mixed with asymmetric keys, RSA under the minimum size, bad
    /// exponents, the ROCA fingerprint, an `alg` that does not fit the key type or curve, invalid
    /// curve points, and every key whose `kid` appears more than once. Only a document that is not
    /// a JWK Set at all is an error.
    pub fn from_jwk_set(
        json: &[u8],
        policy: &KeyPolicy,
    ) -> Result<(KeySet, Vec<IgnoredKey>), KeyError> {
        let raw: RawJwkSet =
            serde_json::from_slice(json).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let mut ignored = Vec::new();
        // Per JWK: its kid, whether symmetric, and its prepared keys.
        let mut loaded: Vec<(usize, Option<String>, bool, Vec<VerifyingKey>)> = Vec::new();
        for (index, value) in raw.keys.iter().enumerate() {
            let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
            let symmetric = value.get("kty").and_then(|k| k.as_str()) == Some("oct");
            match VerifyingKey::from_jwk(value, policy) {
                Ok(keys) => loaded.push((index, kid, symmetric, keys)),
                Err(error) => ignored.push(IgnoredKey { index, kid, error }),
            }
        }
        // A kid named by more than one entry is ambiguous, whether or not the other entries are
        // usable: every entry carrying it is left out.
        let mut kid_count: HashMap<&str, usize> = HashMap::new();
        for value in &raw.keys {
            if let Some(kid) = value.get("kid").and_then(|k| k.as_str()) {
                *kid_count.entry(kid).or_default() += 1;
            }
        }
        let duplicates: Vec<String> = kid_count
            .into_iter()
            .filter(|&(_, n)| n > 1)
            .map(|(k, _)| k.to_owned())
            .collect();
        let has_asymmetric = loaded.iter().any(|(_, _, sym, _)| !sym);
        let mut keys = Vec::new();
        for (index, kid, symmetric, prepared) in loaded {
            let error = if kid.as_ref().is_some_and(|k| duplicates.contains(k)) {
                Some(KeyError::DuplicateKid)
            } else if symmetric && has_asymmetric {
                Some(KeyError::MixedKeySet)
            } else {
                None
            };
            match error {
                Some(error) => ignored.push(IgnoredKey { index, kid, error }),
                None => keys.extend(prepared),
            }
        }
        ignored.sort_by_key(|k| k.index);
        Ok((KeySet::from_keys(keys), ignored))
    }

    /// The number of prepared keys (an RSA key allowed for two algorithms counts twice).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The prepared keys.
    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter()
    }

    /// The key for a token with this `kid` (if any) and algorithm.
    ///
    /// Without a `kid`, a key is chosen only when exactly one key verifies the algorithm; trying
    /// several keys would multiply the cost of every forged token.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => KeyLookup::Unknown,
                Some(indices) => indices
                    .iter()
                    .filter_map(|&i| self.keys.get(i))
                    .find(|k| k.alg == alg)
                    .map_or(KeyLookup::AlgorithmMismatch, KeyLookup::Found),
            },
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.alg == alg);
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => KeyLookup::Found(key),
                    (Some(_), Some(_)) => KeyLookup::Ambiguous,
                    (None, _) if self.keys.is_empty() => KeyLookup::Unknown,
                    (None, _) => KeyLookup::AlgorithmMismatch,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_counts_from_the_top_set_bit() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0x7f, 0]), 15);
    }

    #[test]
    fn exponent_rules() {
        let n = [0xffu8; 256];
        assert_eq!(check_rsa(&n, &[1], 2048), Err(KeyError::RsaBadExponent));
        assert_eq!(check_rsa(&n, &[4], 2048), Err(KeyError::RsaBadExponent));
        assert_eq!(
            check_rsa(&n, &[1, 0, 0, 0, 1], 2048),
            Err(KeyError::RsaBadExponent)
        );
        assert_eq!(
            check_rsa(&n[..128], &[1, 0, 1], 2048),
            Err(KeyError::RsaTooSmall {
                bits: 1024,
                min: 2048
            })
        );
    }

    #[test]
    fn small_product_of_fingerprint_primes_is_flagged() {
        // 65537^k mod p holds trivially for n = 1 (k = 0) modulo every prime.
        assert!(has_roca_fingerprint(&[1]));
        // 65537 = 10 (mod 11), whose powers are {1, 10}: 2 is outside.
        assert!(!has_roca_fingerprint(&[2]));
    }
}
