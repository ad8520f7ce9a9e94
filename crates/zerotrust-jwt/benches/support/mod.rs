//! What both JWT benches set up: a development issuer, a token, the router with and without the
//! layer, and the bare key and signature of the same token.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use tokio::runtime::Runtime;
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer, KeyPolicy, VerifyingKey};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, SigningKey};

/// One key per algorithm benchmarked.
pub fn keys() -> [SigningKey; 3] {
    [
        SigningKey::rsa("rsa-1"),
        SigningKey::es256("ec-1"),
        SigningKey::ed25519("ed-1"),
    ]
}

/// A runtime for the issuer and for key prefetching; requests themselves are polled inline.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

pub fn router() -> Router {
    Router::new().route("/api", get(|| async { "ok" }))
}

/// One request through `app`; the future completes on its first poll.
pub fn call(app: &Router, token: &str) -> u16 {
    let req = Request::get("/api")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    zerotrust_testkit::respond_now(app, req).status().as_u16()
}

pub struct Fixture {
    pub alg: String,
    /// Kept alive: the verifiers' keys came from it.
    pub dev: DevIssuer,
    pub token: String,
    pub bare: Router,
    pub layer: Router,
    pub layer_cached: Router,
    /// A verifier like the layer's, for calls without HTTP.
    pub verifier: JwtVerifier,
    /// The token's key, signing input and decoded signature, for the bare signature check.
    pub key: VerifyingKey,
    pub input: String,
    pub signature: Vec<u8>,
}

impl Fixture {
    pub fn new(rt: &Runtime, key: SigningKey) -> Self {
        let alg = key.alg().to_owned();
        let jwk = key.public_jwk();
        let dev = rt.block_on(DevIssuer::start_with(key)).unwrap();
        let token = dev.mint();
        let verifier = |cache: bool| {
            let mut builder = JwtVerifier::builder().issuer(
                Issuer::discover(dev.issuer())
                    .audience(DEFAULT_AUDIENCE)
                    .allow_insecure_http(),
            );
            if cache {
                builder = builder.cache_verified_tokens(10_000);
            }
            let verifier = builder.build().unwrap();
            rt.block_on(verifier.prefetch()).unwrap();
            verifier
        };
        let layer = router().layer(JwtVerifyLayer::new(verifier(false)));
        let layer_cached = router().layer(JwtVerifyLayer::new(verifier(true)));
        assert_eq!(call(&layer, &token), 200);
        assert_eq!(call(&layer_cached, &token), 200);

        let key = VerifyingKey::from_jwk(&jwk, &KeyPolicy::remote())
            .unwrap()
            .remove(0);
        let (input, signature) = token.rsplit_once('.').unwrap();
        let signature =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .unwrap();
        assert!(key.verify(input.as_bytes(), &signature));
        Self {
            alg,
            input: input.to_owned(),
            verifier: verifier(false),
            dev,
            token,
            bare: router(),
            layer,
            layer_cached,
            key,
            signature,
        }
    }

    /// The bare signature check of the token.
    pub fn verify_signature(&self) -> bool {
        self.key.verify(
            std::hint::black_box(self.input.as_bytes()),
            std::hint::black_box(&self.signature),
        )
    }
}
