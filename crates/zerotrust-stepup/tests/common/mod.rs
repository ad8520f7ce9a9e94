//! The whole stack on 127.0.0.1: a dev issuer, JwtVerify, DeviceCheck, GeoRisk and StepUp; the
//! handler answers the decision and the risk it saw.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{DeviceRecord, MemoryDeviceRegistry, ZeroTrust};
use zerotrust_device::{DeviceCheck, DeviceCheckLayer, PosturePolicy};
use zerotrust_geo::{GeoRisk, GeoRiskLayer};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_stepup::{StepUpLayer, StepUpPolicy};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, TokenBuilder, unix_now};

/// What the handler saw.
pub async fn seen(zt: ZeroTrust) -> Json<Value> {
    let risk = zt.risk_assessment();
    Json(json!({
        "sub": zt.subject(),
        "decision": zt.decision().map(|d| json!({
            "outcome": d.outcome.as_str(),
            "code": d.reason.code(),
            "layer": d.layer,
            "enforced": d.enforced,
        })),
        "score": risk.score,
        "trust": risk.trust_level.as_str(),
        "signals": risk.reasons.iter().map(|s| s.name().to_owned()).collect::<Vec<_>>(),
    }))
}

/// Routes every test app serves.
pub fn routes() -> Router {
    Router::new()
        .route("/api/{*rest}", get(seen).post(seen))
        .route("/healthz", get(seen))
        .route("/unlisted", get(seen))
        .route("/transfer", post(seen))
}

/// How the network looks to the geo layer: 127.0.0.1 is trusted, or on an anonymiser list.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Trusted,
    Anonymizer,
}

pub struct App {
    pub base: String,
    pub dev: DevIssuer,
    pub client: reqwest::Client,
}

/// Starts the full stack with `policy` deciding.
pub async fn app(policy: StepUpPolicy, net: Net) -> App {
    app_with_jwt_realm(policy, net, None).await
}

/// Starts the full stack with `policy` deciding and `JwtVerifyLayer::realm(jwt_realm)` if given.
pub async fn app_with_jwt_realm(policy: StepUpPolicy, net: Net, jwt_realm: Option<&str>) -> App {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(dev.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .build()
        .unwrap();
    let registry = Arc::new(MemoryDeviceRegistry::new());
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("fp-known")),
        owners: vec!["alice".into()],
        ..DeviceRecord::new("d-known", unix_now())
    });
    // No posture rules: the device signals are exactly device.unknown (0.5) or none, plus
    // device.weak_binding (0.1).
    let devices = DeviceCheck::builder(registry)
        .device_headers()
        .posture_policy(PosturePolicy::builder().build())
        .build()
        .unwrap();
    let loopback: ipnet::IpNet = "127.0.0.0/8".parse().unwrap();
    let geo = match net {
        Net::Trusted => GeoRisk::builder().trusted_networks([loopback]),
        Net::Anonymizer => GeoRisk::builder().anonymizer_networks("tor", [loopback]),
    }
    .build()
    .unwrap();
    let jwt = match jwt_realm {
        Some(realm) => JwtVerifyLayer::new(verifier).realm(realm),
        None => JwtVerifyLayer::new(verifier),
    };
    let router = routes()
        .layer(StepUpLayer::new(policy))
        .layer(GeoRiskLayer::new(geo))
        .layer(DeviceCheckLayer::new(devices))
        .layer(jwt);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    App {
        base: format!("http://{addr}"),
        dev,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub challenge: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

/// The known device's headers (signal: device.weak_binding only).
pub const KNOWN_DEVICE: [(&str, &str); 2] = [
    ("x-device-id", "d-known"),
    ("x-device-fingerprint", "fp-known"),
];
/// An unregistered device (signals: device.unknown, device.weak_binding).
pub const UNKNOWN_DEVICE: [(&str, &str); 2] = [
    ("x-device-id", "d-stranger"),
    ("x-device-fingerprint", "fp-stranger"),
];

impl App {
    /// A token for alice with `claims` added.
    pub fn token(&self, claims: &[(&str, Value)]) -> String {
        let mut builder: TokenBuilder = self.dev.token();
        for (name, value) in claims {
            builder = builder.claim(name, value.clone());
        }
        self.dev.sign(&builder)
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let challenge = header("www-authenticate");
        let retry_after = header("retry-after");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Reply {
            status,
            challenge,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send("GET", path, token, &KNOWN_DEVICE).await
    }
}
