use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use aws_lc_rs::{hmac, signature::EcdsaSigningAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

enum Kind {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
    Ed(Ed25519KeyPair),
    Hmac(Vec<u8>),
}

/// A signing key with a `kid` and the algorithm it signs with.
pub struct SigningKey {
    kid: String,
    alg: String,
    kind: Kind,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// A new 2048-bit RSA key signing RS256.
    ///
    /// # Panics
    /// If the system random generator fails (test code only).
    #[allow(clippy::expect_used)]
    pub fn rsa(kid: &str) -> Self {
        Self::rsa_sized(kid, KeySize::Rsa2048)
    }

    /// A new RSA key of the given size, signing RS256.
    ///
    /// # Panics
    /// If the system random generator fails (test code only).
    #[allow(clippy::expect_used)]
    pub fn rsa_sized(kid: &str, size: KeySize) -> Self {
        let kp = RsaKeyPair::generate(size).expect("RSA key generation");
        Self {
            kid: kid.into(),
            alg: "RS256".into(),
            kind: Kind::Rsa(kp),
        }
    }

    fn ec(kid: &str, alg: &'static EcdsaSigningAlgorithm, name: &'static str) -> Self {
        let rng = SystemRandom::new();
        #[allow(clippy::expect_used)]
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("EC key generation");
        #[allow(clippy::expect_used)]
        let kp = EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).expect("EC key parse");
        Self {
            kid: kid.into(),
            alg: name.into(),
            kind: Kind::Ec(kp, if name == "ES256" { "P-256" } else { "P-384" }),
        }
    }

    /// A new P-256 key signing ES256.
    pub fn es256(kid: &str) -> Self {
        Self::ec(kid, &signature::ECDSA_P256_SHA256_FIXED_SIGNING, "ES256")
    }

    /// A new P-384 key signing ES384.
    pub fn es384(kid: &str) -> Self {
        Self::ec(kid, &signature::ECDSA_P384_SHA384_FIXED_SIGNING, "ES384")
    }

    /// A new Ed25519 key signing EdDSA.
    ///
    /// # Panics
    /// If the system random generator fails (test code only).
    #[allow(clippy::expect_used)]
    pub fn ed25519(kid: &str) -> Self {
        let kp = Ed25519KeyPair::generate().expect("Ed25519 key generation");
        Self {
            kid: kid.into(),
            alg: "EdDSA".into(),
            kind: Kind::Ed(kp),
        }
    }

    /// An HMAC secret signing `alg` (HS256, HS384 or HS512).
    pub fn hmac(kid: &str, secret: &[u8], alg: &str) -> Self {
        Self {
            kid: kid.into(),
            alg: alg.into(),
            kind: Kind::Hmac(secret.to_vec()),
        }
    }

    /// The same key, signing another algorithm of its family (RSA: RS*/PS*).
    pub fn with_alg(mut self, alg: &str) -> Self {
        self.alg = alg.into();
        self
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// Signs `message` with the key's algorithm. An HMAC key signs whatever HS* `alg` names.
    ///
    /// # Panics
    /// If the algorithm does not fit the key (test code only).
    #[allow(clippy::expect_used, clippy::panic)]
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.kind {
            Kind::Rsa(kp) => {
                let padding: &'static dyn signature::RsaEncoding = match self.alg.as_str() {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    other => panic!("RSA key cannot sign {other}"),
                };
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(padding, &rng, message, &mut sig)
                    .expect("RSA signing");
                sig
            }
            Kind::Ec(kp, _) => kp
                .sign(&rng, message)
                .expect("EC signing")
                .as_ref()
                .to_vec(),
            Kind::Ed(kp) => kp.sign(message).as_ref().to_vec(),
            Kind::Hmac(secret) => {
                let alg = match self.alg.as_str() {
                    "HS384" => hmac::HMAC_SHA384,
                    "HS512" => hmac::HMAC_SHA512,
                    _ => hmac::HMAC_SHA256,
                };
                hmac::sign(&hmac::Key::new(alg, secret), message)
                    .as_ref()
                    .to_vec()
            }
        }
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig` (an HMAC key gives its secret as
    /// an `oct` JWK).
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.kind {
            Kind::Rsa(kp) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(kp.public_key());
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Kind::Ec(kp, crv) => {
                let point = kp.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let (x, y) = point.get(1..).map(|p| p.split_at(half)).unwrap_or_default();
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Kind::Ed(kp) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(kp.public_key().as_ref())})
            }
            Kind::Hmac(secret) => json!({"kty": "oct", "k": b64(secret)}),
        };
        if let Some(obj) = jwk.as_object_mut() {
            obj.insert("kid".into(), self.kid.clone().into());
            obj.insert("alg".into(), self.alg.clone().into());
            obj.insert("use".into(), "sig".into());
        }
        jwk
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER (for HMAC: the secret).
    ///
    /// # Panics
    /// If encoding fails (test code only).
    #[allow(clippy::expect_used)]
    pub fn public_der(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Rsa(kp) => kp.public_key().as_der().expect("DER").as_ref().to_vec(),
            Kind::Ec(kp, _) => kp.public_key().as_der().expect("DER").as_ref().to_vec(),
            Kind::Ed(kp) => kp.public_key().as_der().expect("DER").as_ref().to_vec(),
            Kind::Hmac(secret) => secret.clone(),
        }
    }

    /// The public key as PEM (`PUBLIC KEY`).
    pub fn public_pem(&self) -> String {
        let body = STANDARD.encode(self.public_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }
}
