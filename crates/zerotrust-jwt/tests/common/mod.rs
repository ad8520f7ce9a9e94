//! Shared helpers: a protected axum app on 127.0.0.1, a client, and the reply's parts.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zerotrust_core::ZeroTrust;
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer};

/// What the handler saw: proves the identity reached it.
async fn me(zt: ZeroTrust) -> Json<Value> {
    let id = zt.identity().expect("identity set by the layer");
    Json(json!({
        "sub": id.subject(),
        "iss": id.issuer(),
        "aud": id.audiences(),
        "scopes": id.scopes(),
        "roles": id.roles(),
        "acr": id.acr(),
        "amr": id.amr(),
        "auth_time": id.auth_time(),
        "jti": id.jti(),
        "client_id": id.client_id(),
        "cnf": id.confirmation(),
        "exp": id.expires_at(),
        "tenant": id.claim("tenant"),
    }))
}

pub fn app(layer: JwtVerifyLayer) -> Router {
    Router::new().route("/api/me", get(me)).layer(layer)
}

pub async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// A default issuer config for a dev issuer: discovery over http on loopback.
pub fn issuer_for(dev: &DevIssuer) -> Issuer {
    Issuer::discover(dev.issuer())
        .audience(DEFAULT_AUDIENCE)
        .allow_insecure_http()
}

/// Serves `/api/me` behind a JwtVerifyLayer with `verifier`; returns the base URL.
pub async fn protected(verifier: JwtVerifier) -> String {
    let addr = serve(app(JwtVerifyLayer::new(verifier).realm("api"))).await;
    format!("http://{addr}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub challenge: Option<String>,
    pub retry_after: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts a 401 `invalid_token` with `code`, realm and fixed description.
    pub fn assert_invalid_token(&self, code: &str) {
        assert_eq!(self.status, 401, "{self:?}");
        let challenge = self.challenge.as_deref().unwrap_or("");
        assert!(
            challenge
                .starts_with("Bearer realm=\"api\", error=\"invalid_token\", error_description=\""),
            "{challenge}"
        );
        assert_eq!(self.code(), code, "{self:?}");
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(self.body["status"], 401);
    }

    pub fn assert_invalid_request(&self, code: &str) {
        assert_eq!(self.status, 400, "{self:?}");
        let challenge = self.challenge.as_deref().unwrap_or("");
        assert!(
            challenge.starts_with("Bearer realm=\"api\", error=\"invalid_request\""),
            "{challenge}"
        );
        assert_eq!(self.code(), code, "{self:?}");
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let challenge = header("www-authenticate");
    let retry_after = header("retry-after");
    let content_type = header("content-type");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        challenge,
        retry_after,
        content_type,
        body,
    }
}

pub async fn get_with_token(base: &str, token: &str) -> Reply {
    send(client().get(format!("{base}/api/me")).bearer_auth(token)).await
}
