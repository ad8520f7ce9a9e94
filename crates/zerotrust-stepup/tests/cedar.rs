//! Cedar policies in the decision (feature `cedar`): allow and forbid by role, risk, trust,
//! method and route; forbid over permit; reload from files; failing closed. The layer is called
//! inline with identities, certificates, devices and networks put into `ZeroTrust` as the earlier
//! layers would; one test drives the whole stack over HTTP.
#![cfg(feature = "cedar")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use rcgen::{CertificateParams, KeyPair, SanType};
use zerotrust_core::{
    CountryCode, DeviceAssessment, DeviceBinding, DeviceStatus, Enforcement, GeoLocation, Identity,
    NetworkAssessment, NetworkZone, PeerCertificate, Posture, PostureRule, RiskSignal, ZeroTrust,
};
use zerotrust_stepup::{CedarError, CedarPolicies, Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::respond_now;

const T0: i64 = 1_900_000_200;

/// Answers the code of the decision the layer recorded.
async fn decision(zt: ZeroTrust) -> String {
    zt.decision()
        .map(|d| d.reason.code().to_owned())
        .unwrap_or_default()
}

fn app(policy: StepUpPolicy) -> Router {
    Router::new()
        .route("/{*path}", get(decision).post(decision).delete(decision))
        .layer(StepUpLayer::new(policy))
}

/// One policy for every route, deciding with `cedar`.
fn cedar_app(cedar: &Arc<CedarPolicies>) -> Router {
    app(StepUpPolicy::builder()
        .route("/api/reports", Requirements::new().cedar(Arc::clone(cedar)))
        .route("/api/admin/*", Requirements::new().cedar(Arc::clone(cedar)))
        .route(
            "/public/*",
            Requirements::new().anonymous().cedar(Arc::clone(cedar)),
        )
        .clock(|| T0)
        .build()
        .unwrap())
}

fn alice(roles: &[&str]) -> Arc<Identity> {
    Arc::new(
        Identity::new("alice", "https://idp", T0 + 3600)
            .with_roles(roles.iter().map(|r| (*r).to_owned()).collect())
            .with_scopes(vec!["openid".into(), "reports:read".into()])
            .with_acr(Some("urn:example:acr:mfa".into()))
            .with_amr(vec!["pwd".into(), "otp".into()])
            .with_auth_time(Some(T0 - 120)),
    )
}

/// A request as the earlier layers leave it.
struct Req {
    method: &'static str,
    path: &'static str,
    identity: Option<Arc<Identity>>,
    signals: Vec<RiskSignal>,
    device: Option<DeviceAssessment>,
    network: Option<NetworkAssessment>,
    certificate: Option<PeerCertificate>,
}

impl Req {
    fn new(method: &'static str, path: &'static str) -> Self {
        Self {
            method,
            path,
            identity: None,
            signals: Vec::new(),
            device: None,
            network: None,
            certificate: None,
        }
    }
    fn by(mut self, identity: Arc<Identity>) -> Self {
        self.identity = Some(identity);
        self
    }
    fn signal(mut self, name: &'static str, weight: f64) -> Self {
        self.signals.push(RiskSignal::new(name, weight, "test"));
        self
    }
    fn device(mut self, device: DeviceAssessment) -> Self {
        self.device = Some(device);
        self
    }
    fn network(mut self, network: NetworkAssessment) -> Self {
        self.network = Some(network);
        self
    }
    fn certificate(mut self, cert: PeerCertificate) -> Self {
        self.certificate = Some(cert);
        self
    }
    fn build(self) -> Request<Body> {
        let mut req = Request::builder()
            .method(self.method)
            .uri(self.path)
            .body(Body::empty())
            .unwrap();
        if let Some(cert) = self.certificate {
            req.extensions_mut().insert(cert);
        }
        let zt = ZeroTrust::get_or_insert(req.extensions_mut());
        if let Some(identity) = self.identity {
            zt.set_identity(identity);
        }
        for signal in self.signals {
            zt.add_signal(signal);
        }
        if let Some(device) = self.device {
            zt.set_device(device);
        }
        if let Some(network) = self.network {
            zt.set_network(network);
        }
        req
    }
}

fn send(app: &Router, req: Req) -> Response<Body> {
    respond_now(app, req.build())
}

fn code(resp: &Response<Body>) -> String {
    resp.extensions()
        .get::<ZeroTrust>()
        .and_then(|zt| zt.decision())
        .map(|d| d.reason.code().to_owned())
        .unwrap_or_default()
}

/// Status and reason code: of the refusal, or of the decision the handler saw.
fn verdict(app: &Router, req: Req) -> (StatusCode, String) {
    let resp = send(app, req);
    let status = resp.status();
    if status == StatusCode::OK {
        (status, body_text(resp))
    } else {
        (status, code(&resp))
    }
}

fn allowed() -> (StatusCode, String) {
    (StatusCode::OK, "stepup.allow".to_owned())
}

fn denied() -> (StatusCode, String) {
    (StatusCode::FORBIDDEN, "stepup.cedar_denied".to_owned())
}

fn body_text(resp: Response<Body>) -> String {
    use std::future::Future as _;
    let fut = std::pin::pin!(axum::body::to_bytes(resp.into_body(), 1 << 20));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.poll(&mut cx) {
        std::task::Poll::Ready(Ok(bytes)) => String::from_utf8(bytes.to_vec()).unwrap(),
        _ => panic!("the body was not ready"),
    }
}

fn policies(text: &str) -> Arc<CedarPolicies> {
    Arc::new(text.parse().unwrap())
}

#[test]
fn a_role_permits_and_a_missing_role_is_403_cedar_denied() {
    let cedar = policies(
        r#"permit(principal, action, resource == Route::"/api/admin/*")
           when { principal.roles.contains("admin") };"#,
    );
    let app = cedar_app(&cedar);
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/admin/users").by(alice(&["admin"]))
        ),
        allowed()
    );
    let refused = send(
        &app,
        Req::new("GET", "/api/admin/users").by(alice(&["analyst"])),
    );
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(&refused), "stepup.cedar_denied");
    assert!(refused.headers().get("www-authenticate").is_none());
    // The answer names the stable reason and nothing of the policies.
    let body = body_text(refused);
    assert!(body.contains("stepup.cedar_denied"), "{body}");
    assert!(
        body.contains("The access policy does not allow this request."),
        "{body}"
    );
    for internal in ["(inline)", "policy0", "permit", "roles", "admin"] {
        assert!(!body.contains(internal), "{internal} leaked: {body}");
    }
}

#[test]
fn a_forbid_overrides_a_permit() {
    let cedar = policies(
        r#"permit(principal is User, action, resource);
           forbid(principal, action, resource) when { principal.roles.contains("suspended") };"#,
    );
    let app = cedar_app(&cedar);
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/reports").by(alice(&["analyst"]))
        ),
        allowed()
    );
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/reports").by(alice(&["analyst", "suspended"]))
        ),
        denied()
    );
}

#[test]
fn risk_per_mille_and_trust_in_the_context_decide() {
    let cedar = policies(
        r#"permit(principal is User, action, resource) when { context.trust_rank >= 2 };
           forbid(principal, action, resource) when { context.risk > 500 };
           forbid(principal, action, resource == Route::"/api/admin/*")
           unless { context.trust == "high" || context.trust == "verified" };"#,
    );
    let app = cedar_app(&cedar);
    let analyst = || Req::new("GET", "/api/reports").by(alice(&["analyst"]));
    // No signals: risk 0, trust high.
    assert_eq!(verdict(&app, analyst()), allowed());
    // 0.5 is 500 per mille: not above the line.
    assert_eq!(
        verdict(&app, analyst().signal("network.public", 0.5)),
        allowed()
    );
    // 0.6 is 600 per mille.
    assert_eq!(
        verdict(&app, analyst().signal("network.anonymizer", 0.6)),
        denied()
    );
    // 0.35 keeps the risk under 500 but lowers trust to medium: reports yes, admin no.
    assert_eq!(
        verdict(&app, analyst().signal("device.unknown", 0.35)),
        allowed()
    );
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/admin/x")
                .by(alice(&["analyst"]))
                .signal("device.unknown", 0.35)
        ),
        denied()
    );
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/admin/x").by(alice(&["analyst"]))
        ),
        allowed()
    );
}

#[test]
fn principal_attributes_carry_risk_trust_acr_amr_scopes_and_auth_age() {
    let cedar = policies(
        r#"permit(principal is User, action, resource) when {
               principal.risk == 200 && principal.trust == "high" && principal.trust_rank == 3 &&
               principal has acr && principal.acr == "urn:example:acr:mfa" &&
               principal.amr.contains("otp") && principal.scopes.contains("reports:read") &&
               principal has auth_age && principal.auth_age == 120
           };"#,
    );
    let app = cedar_app(&cedar);
    let req = || Req::new("GET", "/api/reports").by(alice(&[]));
    assert_eq!(verdict(&app, req().signal("x.test", 0.2)), allowed());
    assert_eq!(verdict(&app, req().signal("x.test", 0.25)), denied());
    // No acr, no auth_time: the attributes are absent and `has` says so.
    let bare = Arc::new(Identity::new("bob", "https://idp", T0 + 3600));
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/reports")
                .by(bare)
                .signal("x.test", 0.2)
        ),
        denied()
    );
}

#[test]
fn method_and_route_decide() {
    let cedar = policies(
        r#"permit(principal, action == Action::"GET", resource == Route::"/api/reports");
           permit(principal, action in [Action::"GET", Action::"POST"], resource)
           when { resource == Route::"/api/admin/*" && resource.path like "/api/admin/users/*" };"#,
    );
    let app = cedar_app(&cedar);
    let who = || alice(&["analyst"]);
    assert_eq!(
        verdict(&app, Req::new("GET", "/api/reports").by(who())),
        allowed()
    );
    assert_eq!(
        verdict(&app, Req::new("POST", "/api/reports").by(who())),
        denied()
    );
    // The resource is the matched pattern; `path` is the request's own path.
    assert_eq!(
        verdict(&app, Req::new("POST", "/api/admin/users/7").by(who())),
        allowed()
    );
    assert_eq!(
        verdict(&app, Req::new("POST", "/api/admin/keys/7").by(who())),
        denied()
    );
    assert_eq!(
        verdict(&app, Req::new("DELETE", "/api/admin/users/7").by(who())),
        denied()
    );
}

#[test]
fn device_network_and_ip_reach_the_context() {
    let cedar = policies(
        r#"permit(principal is User, action, resource) when {
               context has device && context.device.compliant && context.device.owned &&
               context.device.binding == "certificate" && context.device.status == "known" &&
               context.device.id == "d-1" &&
               context has network && context.network.zone == "trusted" &&
               context.network has country && context.network.country == "SE" &&
               context has ip && context.ip.isInRange(ip("10.0.0.0/8"))
           };"#,
    );
    let app = cedar_app(&cedar);
    let device = |violations: Vec<PostureRule>| DeviceAssessment {
        device_id: Arc::from("d-1"),
        binding: DeviceBinding::Certificate,
        status: DeviceStatus::Known,
        owned_by_subject: true,
        posture: Posture::default(),
        violations,
    };
    let network = |ip: &str, zone: NetworkZone| NetworkAssessment {
        client_ip: ip.parse::<IpAddr>().unwrap(),
        location: GeoLocation {
            country: CountryCode::new("SE"),
            ..GeoLocation::default()
        },
        zone,
        travel: None,
    };
    let req = || Req::new("GET", "/api/reports").by(alice(&["analyst"]));
    assert_eq!(
        verdict(
            &app,
            req()
                .device(device(vec![]))
                .network(network("10.1.2.3", NetworkZone::Trusted))
        ),
        allowed()
    );
    // Each fact, changed, refuses.
    assert_eq!(
        verdict(
            &app,
            req()
                .device(device(vec![PostureRule::DiskEncryption]))
                .network(network("10.1.2.3", NetworkZone::Trusted))
        ),
        denied()
    );
    assert_eq!(
        verdict(
            &app,
            req()
                .device(device(vec![]))
                .network(network("192.0.2.7", NetworkZone::Trusted))
        ),
        denied()
    );
    assert_eq!(
        verdict(
            &app,
            req()
                .device(device(vec![]))
                .network(network("10.1.2.3", NetworkZone::Public))
        ),
        denied()
    );
    // Without a device the `has` guard refuses, without an error.
    assert_eq!(
        verdict(
            &app,
            req().network(network("10.1.2.3", NetworkZone::Trusted))
        ),
        denied()
    );
}

/// Attributes no policy names are not built; one reached through `context` as a whole value
/// still is.
#[test]
fn attributes_reached_through_the_whole_context_are_there() {
    let cedar =
        policies(r#"permit(principal, action, resource) when { {"c": context}.c has device };"#);
    let app = cedar_app(&cedar);
    let device = DeviceAssessment {
        device_id: Arc::from("d-1"),
        binding: DeviceBinding::Header,
        status: DeviceStatus::Known,
        owned_by_subject: true,
        posture: Posture::default(),
        violations: Vec::new(),
    };
    let req = || Req::new("GET", "/api/reports").by(alice(&[]));
    assert_eq!(verdict(&app, req().device(device)), allowed());
    assert_eq!(verdict(&app, req()), denied());
}

fn cert(uri: &str) -> PeerCertificate {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![
        SanType::URI(uri.try_into().unwrap()),
        SanType::DnsName("frontend.internal".try_into().unwrap()),
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    PeerCertificate::from_der(cert.der()).unwrap()
}

#[test]
fn workloads_and_anonymous_callers_are_principals_too() {
    let frontend = "spiffe://example.test/ns/prod/sa/frontend";
    let cedar = policies(&format!(
        r#"permit(principal == Workload::"{frontend}", action == Action::"GET", resource)
           when {{ principal.dns.contains("frontend.internal") }};
           permit(principal is Anonymous, action == Action::"GET", resource == Route::"/public/*")
           when {{ resource.path == "/public/status" }};"#
    ));
    let app = cedar_app(&cedar);
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/public/anything").certificate(cert(frontend))
        ),
        allowed()
    );
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/public/anything")
                .certificate(cert("spiffe://example.test/ns/prod/sa/other"))
        ),
        denied()
    );
    assert_eq!(verdict(&app, Req::new("GET", "/public/status")), allowed());
    assert_eq!(verdict(&app, Req::new("GET", "/public/other")), denied());
    // A non-anonymous route still asks for an identity first.
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/reports").certificate(cert(frontend))
        ),
        (
            StatusCode::UNAUTHORIZED,
            "stepup.identity_required".to_owned()
        )
    );
}

#[test]
fn an_evaluation_error_fails_closed_even_when_a_permit_applies() {
    // Cedar skips a policy that errors: here the forbid would be skipped for a request without a
    // device and the permit would allow. The layer denies instead.
    let cedar = policies(
        r#"permit(principal, action, resource);
           forbid(principal, action, resource) when { !context.device.compliant };"#,
    );
    let app = cedar_app(&cedar);
    let resp = send(
        &app,
        Req::new("GET", "/api/reports").by(alice(&["analyst"])),
    );
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(&resp), "stepup.cedar_denied");
    let body = body_text(resp);
    assert!(!body.contains("device"), "{body}");
    assert!(!body.contains("attribute"), "{body}");
}

#[test]
fn cedar_comes_after_predicates_and_before_the_risk_checks() {
    let cedar = policies(r#"forbid(principal, action, resource) when { context.risk > 100 };"#);
    let app = app(StepUpPolicy::builder()
        .route(
            "/api/reports",
            Requirements::new()
                .predicate("tenant", |zt| zt.subject() != Some("mallory"))
                .cedar(cedar)
                .max_risk(0.3)
                .min_trust(zerotrust_core::TrustLevel::High),
        )
        .build()
        .unwrap());
    let mallory = Arc::new(Identity::new("mallory", "https://idp", T0 + 3600));
    // The predicate refuses first.
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/reports")
                .by(mallory)
                .signal("x.test", 0.5)
        ),
        (StatusCode::FORBIDDEN, "stepup.policy_denied".to_owned())
    );
    // Cedar (nothing permits, and the forbid applies) refuses before risk_too_high.
    assert_eq!(
        verdict(
            &app,
            Req::new("GET", "/api/reports")
                .by(alice(&[]))
                .signal("x.test", 0.5)
        ),
        denied()
    );
}

#[test]
fn a_report_only_route_records_the_cedar_refusal_and_passes() {
    let cedar = policies("");
    let app = app(StepUpPolicy::builder()
        .route(
            "/api/reports",
            Requirements::new()
                .cedar(cedar)
                .enforcement(Enforcement::ReportOnly),
        )
        .build()
        .unwrap());
    // The handler runs and sees the would-be refusal.
    assert_eq!(
        verdict(&app, Req::new("GET", "/api/reports").by(alice(&[]))),
        (StatusCode::OK, "stepup.cedar_denied".to_owned())
    );
}

/// A directory of its own under the system's temporary directory, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("zerotrust-cedar-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// Replaces `name` atomically (a temporary file renamed over it), its modification time
    /// moved forward so that even a file system with coarse timestamps shows the change.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let staged = self.0.join(format!(".{name}.tmp"));
        let previous = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        std::fs::write(&staged, text).unwrap();
        let later = previous.map_or_else(SystemTime::now, |t| t + Duration::from_secs(2));
        std::fs::File::options()
            .write(true)
            .open(&staged)
            .unwrap()
            .set_modified(later)
            .unwrap();
        std::fs::rename(&staged, &path).unwrap();
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ADMINS_ONLY: &str = r#"@id("admins")
permit(principal, action, resource) when { principal.roles.contains("admin") };
"#;
const ANALYSTS_TOO: &str = r#"@id("admins")
permit(principal, action, resource) when { principal.roles.contains("admin") };
@id("analysts")
permit(principal, action == Action::"GET", resource) when { principal.roles.contains("analyst") };
"#;

#[test]
fn reload_changes_the_decision_without_rebuilding_the_layer() {
    let dir = Dir::new("reload");
    let base = dir.write("base.cedar", ADMINS_ONLY);
    let extra = dir.write("extra.cedar", "");
    let cedar = Arc::new(CedarPolicies::from_files([&base, &extra]).unwrap());
    let app = cedar_app(&cedar);
    let analyst = || Req::new("GET", "/api/reports").by(alice(&["analyst"]));
    assert_eq!(verdict(&app, analyst()), denied());

    dir.write("base.cedar", ANALYSTS_TOO);
    cedar.reload().unwrap();
    assert_eq!(verdict(&app, analyst()), allowed());
    let base_name = base.display().to_string();
    assert_eq!(
        cedar.policy_ids(),
        [
            format!("{base_name}:admins"),
            format!("{base_name}:analysts")
        ]
    );

    // A forbid added in the second file wins over the first file's permit.
    dir.write(
        "extra.cedar",
        r#"forbid(principal, action, resource) when { principal.roles.contains("analyst") };"#,
    );
    cedar.reload().unwrap();
    assert_eq!(verdict(&app, analyst()), denied());
}

#[test]
fn a_bad_file_on_reload_keeps_the_old_policies_and_the_error_names_file_and_line() {
    let dir = Dir::new("bad");
    let base = dir.write("base.cedar", ANALYSTS_TOO);
    let cedar = Arc::new(CedarPolicies::from_files([&base]).unwrap());
    let app = cedar_app(&cedar);
    let analyst = || Req::new("GET", "/api/reports").by(alice(&["analyst"]));
    assert_eq!(verdict(&app, analyst()), allowed());

    dir.write(
        "base.cedar",
        "permit(principal, action, resource);\nforbid(principal, action resource);\n",
    );
    let error = cedar.reload().unwrap_err();
    let shown = error.to_string();
    assert!(
        matches!(&error, CedarError::Syntax { file, location: Some(l), .. } if file == &base && l.line == 2),
        "{error:?}"
    );
    assert!(
        shown.starts_with(&format!("{}:2:", base.display())),
        "{shown}"
    );
    assert!(shown.contains("invalid Cedar policy"), "{shown}");
    // The old policies are still in force: analysts may GET, nobody else anything.
    assert_eq!(cedar.len(), 2);
    assert_eq!(verdict(&app, analyst()), allowed());
    assert_eq!(
        verdict(
            &app,
            Req::new("POST", "/api/reports").by(alice(&["analyst"]))
        ),
        denied()
    );

    // A missing file is an error naming it, and changes nothing either.
    std::fs::remove_file(&base).unwrap();
    let error = cedar.reload().unwrap_err();
    assert!(
        matches!(&error, CedarError::Read { file, .. } if file == &base),
        "{error:?}"
    );
    assert!(error.to_string().contains("base.cedar"), "{error}");
    assert_eq!(verdict(&app, analyst()), allowed());
}

#[test]
fn a_schema_refuses_policies_that_name_unknown_attributes() {
    let dir = Dir::new("schema");
    let schema = dir.write("zerotrust.cedarschema", CedarPolicies::SCHEMA);
    let good = dir.write(
        "good.cedar",
        r#"permit(principal is User, action == Action::"GET", resource is Route)
           when { principal.roles.contains("analyst") && context.risk < 500 };
           forbid(principal, action, resource)
           when { context has device && !context.device.compliant };"#,
    );
    let cedar = CedarPolicies::builder()
        .file(&good)
        .schema_file(&schema)
        .build()
        .unwrap();
    assert_eq!(cedar.len(), 2);

    let typo = dir.write(
        "typo.cedar",
        "permit(principal, action, resource)\nwhen { principal is User &&\n  principal.rolse.contains(\"analyst\") };\n",
    );
    let error = CedarPolicies::builder()
        .file(&good)
        .file(&typo)
        .schema_file(&schema)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, CedarError::Invalid { file, location: Some(l), policy, .. }
            if file == &typo && l.line == 3 && policy.ends_with("typo.cedar:policy0")),
        "{error:?}"
    );
    assert!(error.to_string().contains("rolse"), "{error}");

    // A broken schema is named as such.
    let broken = dir.write("broken.cedarschema", "entity User = { roles: Set<String> ");
    let error = CedarPolicies::builder()
        .file(&good)
        .schema_file(&broken)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, CedarError::Schema { file, .. } if file == &broken),
        "{error:?}"
    );
}

#[test]
fn with_a_schema_action_groups_apply() {
    let schema = CedarPolicies::SCHEMA.replace(
        "action GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS appliesTo {",
        "action write;\n\
         action GET, HEAD, OPTIONS appliesTo {\n\
             principal: [User, Workload, Anonymous], resource: [Route], context: RequestContext,\n\
         };\n\
         action POST, PUT, PATCH, DELETE in [write] appliesTo {",
    );
    let cedar = Arc::new(
        CedarPolicies::builder()
            .text(
                "groups",
                r#"permit(principal is User, action, resource);
                   forbid(principal is User, action in Action::"write", resource)
                   unless { principal.roles.contains("editor") };"#,
            )
            .schema_text(schema)
            .build()
            .unwrap(),
    );
    let app = cedar_app(&cedar);
    assert_eq!(
        verdict(&app, Req::new("GET", "/api/reports").by(alice(&[]))),
        allowed()
    );
    assert_eq!(
        verdict(&app, Req::new("POST", "/api/reports").by(alice(&[]))),
        denied()
    );
    assert_eq!(
        verdict(&app, Req::new("DELETE", "/api/reports").by(alice(&[]))),
        denied()
    );
    assert_eq!(
        verdict(
            &app,
            Req::new("POST", "/api/reports").by(alice(&["editor"]))
        ),
        allowed()
    );
}

#[test]
fn templates_duplicate_ids_and_truncated_text_are_refused() {
    let truncated = "permit(principal,".parse::<CedarPolicies>().unwrap_err();
    assert!(
        matches!(truncated, CedarError::Syntax { .. }),
        "{truncated:?}"
    );
    let template = "permit(principal == ?principal, action, resource);"
        .parse::<CedarPolicies>()
        .unwrap_err();
    assert!(
        matches!(template, CedarError::Template { .. }),
        "{template:?}"
    );
    let twice = r#"@id("a") permit(principal, action, resource);
                   @id("a") forbid(principal, action, resource);"#
        .parse::<CedarPolicies>()
        .unwrap_err();
    assert!(
        matches!(&twice, CedarError::DuplicateId { policy, .. } if policy == "a"),
        "{twice:?}"
    );
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_reloader_picks_up_changed_files_and_skips_broken_ones() {
    let dir = Dir::new("reloader");
    let base = dir.write("base.cedar", ADMINS_ONLY);
    let cedar = Arc::new(CedarPolicies::from_files([&base]).unwrap());
    let reloader = cedar.spawn_reloader(Duration::from_millis(20));
    let app = cedar_app(&cedar);
    let analyst = || Req::new("GET", "/api/reports").by(alice(&["analyst"]));
    assert_eq!(verdict(&app, analyst()), denied());

    dir.write("base.cedar", ANALYSTS_TOO);
    wait_for("the new policies", || cedar.len() == 2);
    assert_eq!(verdict(&app, analyst()), allowed());

    // A broken file is logged and leaves the policies in force.
    dir.write("base.cedar", "permit(principal,");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cedar.len(), 2);
    assert_eq!(verdict(&app, analyst()), allowed());

    // Fixed again, it is picked up.
    dir.write("base.cedar", ADMINS_ONLY);
    wait_for("the fixed policies", || cedar.len() == 1);
    assert_eq!(verdict(&app, analyst()), denied());

    reloader.stop();
    dir.write("base.cedar", ANALYSTS_TOO);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cedar.len(), 1, "a stopped reloader reloads nothing");
}

/// The whole stack over HTTP: the network zone and the device status the geo and device layers
/// established reach the policies.
#[tokio::test]
async fn over_http_the_policies_see_what_the_earlier_layers_established() {
    use common::{KNOWN_DEVICE, Net, UNKNOWN_DEVICE};

    let dir = Dir::new("http");
    let file = dir.write(
        "http.cedar",
        r#"permit(principal is User, action == Action::"GET", resource)
           when { context has device && context.device.status == "known" };
           forbid(principal, action, resource)
           when { context has network && context.network.zone == "anonymizer" };"#,
    );
    let cedar = Arc::new(CedarPolicies::from_files([&file]).unwrap());
    let policy = || {
        StepUpPolicy::builder()
            .route("/api/*", Requirements::new().cedar(Arc::clone(&cedar)))
            .build()
            .unwrap()
    };

    let trusted = common::app(policy(), Net::Trusted).await;
    let token = trusted.token(&[]);
    let ok = trusted
        .send("GET", "/api/reports", &token, &KNOWN_DEVICE)
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let unknown = trusted
        .send("GET", "/api/reports", &token, &UNKNOWN_DEVICE)
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (403, "stepup.cedar_denied")
    );
    assert_eq!(
        unknown.body["detail"],
        "The access policy does not allow this request."
    );

    let tor = common::app(policy(), Net::Anonymizer).await;
    let token = tor.token(&[]);
    let refused = tor.send("GET", "/api/reports", &token, &KNOWN_DEVICE).await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "stepup.cedar_denied"),
        "{refused:?}"
    );
}
