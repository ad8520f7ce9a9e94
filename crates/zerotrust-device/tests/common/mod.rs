//! A protected axum app on 127.0.0.1: a dev issuer, JwtVerify, then DeviceCheck; the handler
//! answers what the layers put into `ZeroTrust`.
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

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zerotrust_core::{DeviceRegistry, MemoryDeviceRegistry, ZeroTrust};
use zerotrust_device::{DeviceCheck, DeviceCheckBuilder, DeviceCheckLayer, PostureAssertions};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer, KeyPolicy, KeySet, VerifyingKey};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, SigningKey, TokenBuilder, unix_now};

pub const MDM: &str = "https://mdm.example.test";
pub const API: &str = "https://api.example.test";

/// What the handler saw.
pub async fn whoami(zt: ZeroTrust) -> Json<Value> {
    let device = zt.device().map(|d| {
        json!({
            "id": &*d.device_id,
            "binding": d.binding.as_str(),
            "status": d.status.as_str(),
            "owned": d.owned_by_subject,
            "platform": d.posture.platform,
            "os_version": d.posture.os_version,
            "violations": d.violations.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
        })
    });
    let signals: Vec<Value> = zt
        .signals()
        .iter()
        .map(|s| json!({"name": s.name(), "weight": s.weight(), "evidence": s.evidence()}))
        .collect();
    Json(json!({
        "sub": zt.subject(),
        "device": device,
        "signals": signals,
        "trust": zt.trust_level().as_str(),
    }))
}

pub async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// The device-management service's signing key and the key set the layer verifies with.
pub fn mdm_keys() -> (SigningKey, KeySet) {
    let key = SigningKey::es256("mdm-1");
    let verifying = VerifyingKey::from_jwk(&key.public_jwk(), &KeyPolicy::remote()).unwrap();
    (key, KeySet::from_keys(verifying))
}

pub struct Env {
    pub base: String,
    pub dev: DevIssuer,
    pub registry: Arc<MemoryDeviceRegistry>,
    pub mdm: SigningKey,
    pub client: reqwest::Client,
}

/// Starts the app with a device check configured by `configure` (assertions from [`MDM`] for
/// audience [`API`] are always accepted).
pub async fn env(configure: impl FnOnce(DeviceCheckBuilder) -> DeviceCheckBuilder) -> Env {
    let registry = Arc::new(MemoryDeviceRegistry::new());
    env_with(
        Arc::clone(&registry) as Arc<dyn DeviceRegistry>,
        registry,
        configure,
    )
    .await
}

pub async fn env_with(
    shared: Arc<dyn DeviceRegistry>,
    registry: Arc<MemoryDeviceRegistry>,
    configure: impl FnOnce(DeviceCheckBuilder) -> DeviceCheckBuilder,
) -> Env {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(dev.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .build()
        .unwrap();
    let (mdm, keys) = mdm_keys();
    let builder = DeviceCheck::builder_shared(shared)
        .posture_assertions(PostureAssertions::new(keys, MDM).audience(API));
    let check = configure(builder).build().unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(DeviceCheckLayer::new(check))
        .layer(JwtVerifyLayer::new(verifier));
    let addr = serve(app).await;
    Env {
        base: format!("http://{addr}"),
        dev,
        registry,
        mdm,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn signal_names(&self) -> Vec<String> {
        self.body["signals"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn signal(&self, name: &str) -> Option<&Value> {
        self.body["signals"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
    }

    /// Asserts an RFC 9457 refusal with `status` and `code`.
    pub fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.code(), code, "{self:?}");
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["status"], status);
    }
}

impl Env {
    /// An access token for `subject`.
    pub fn token(&self, subject: &str) -> String {
        self.dev.sign(&self.dev.token().claim("sub", subject))
    }

    /// GET /whoami as `subject` with extra headers.
    pub async fn get(&self, subject: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = self
            .client
            .get(format!("{}/whoami", self.base))
            .bearer_auth(self.token(subject));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let content_type = header("content-type");
        let retry_after = header("retry-after");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        Reply {
            status,
            content_type,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// Claims of a posture assertion for `device` owned by `owner`, fully compliant, issued now.
    pub fn assertion(&self, device: &str, owner: &str) -> TokenBuilder {
        let now = unix_now();
        TokenBuilder::new()
            .header("typ", "device-posture+jwt")
            .claim("iss", MDM)
            .claim("aud", API)
            .claim("iat", now)
            .claim("exp", now + 600)
            .claim("device_id", device)
            .claim("owner", owner)
            .claim(
                "posture",
                json!({
                    "platform": "macos", "os_version": "14.4.1", "disk_encrypted": true,
                    "edr_running": true, "jailbroken": false
                }),
            )
    }

    /// Signs `builder` with the MDM key.
    pub fn sign(&self, builder: &TokenBuilder) -> String {
        builder.sign(&self.mdm)
    }
}
