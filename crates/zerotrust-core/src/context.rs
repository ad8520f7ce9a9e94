use std::fmt;
use std::sync::Arc;

use http::Extensions;

use crate::device::DeviceAssessment;
use crate::geo::NetworkAssessment;
use crate::risk::{RiskAssessment, RiskModel, TrustLevel};
use crate::tap::AuditTap;
use crate::{ClientIp, Identity, Reason, RiskSignal};

/// What a zerotrust layer decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The request may proceed.
    Allow,
    /// The client must authenticate (again, or more strongly) and retry.
    Challenge,
    /// The request is refused.
    Deny,
    /// A check could not be completed (an issuer or a store unreachable); the request was refused.
    Error,
}

impl Outcome {
    /// The outcome's stable lower-case name, as written in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Challenge => "challenge",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }
}

/// A decision and why it was made: the outcome, the stable reason, the layer that made it, and
/// whether it was enforced (report-only layers record decisions they do not enforce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What was decided.
    pub outcome: Outcome,
    /// Why, as a stable code and a fixed description.
    pub reason: Reason,
    /// The layer that decided, such as `jwt`.
    pub layer: &'static str,
    /// Whether the decision was enforced (`false` in report-only mode).
    pub enforced: bool,
}

/// The zero-trust context of one request.
///
/// The first zerotrust layer a request meets inserts it into the request extensions
/// ([`get_or_insert`](ZeroTrust::get_or_insert)); each layer adds what it learned, and a handler reads it
/// with the axum extractor (`async fn h(zt: ZeroTrust)`, or `Option<ZeroTrust>` where no layer
/// may have run). A refusal copies it into the response extensions, so an outer audit layer sees
/// the same fields for refused and allowed requests.
///
/// Cloning is cheap (one reference count); a clone behaves as a copy: changing it leaves the
/// original as it was.
///
/// ```
/// use std::sync::Arc;
/// use zerotrust_core::{Identity, RiskSignal, ZeroTrust};
///
/// let mut ext = http::Extensions::new();
/// let zt = ZeroTrust::get_or_insert(&mut ext);
/// zt.set_identity(Arc::new(Identity::new("alice", "https://idp", 1_900_000_000)));
/// zt.add_signal(RiskSignal::new("device.new", 0.3, "first sight of device d-42"));
///
/// let zt = ext.get::<ZeroTrust>().unwrap();
/// assert_eq!(zt.subject(), Some("alice"));
/// assert_eq!(zt.signals().len(), 1);
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ZeroTrust {
    // Shared, copied on write (`Arc::make_mut`): a clone is one reference count, so the audit
    // tap's snapshot at each layer's pass, the handler's extractor and a refusal's copy into the
    // response cost no copy of the fields. A layer that changes the context while the tap holds
    // the last snapshot and passes at once takes it back first (see
    // `get_or_insert_to_pass`), so the write copies nothing either.
    inner: Arc<Fields>,
}

#[derive(Debug, Clone, Default)]
struct Fields {
    identity: Option<Arc<Identity>>,
    client_ip: Option<ClientIp>,
    device: Option<DeviceAssessment>,
    network: Option<NetworkAssessment>,
    signals: Vec<RiskSignal>,
    risk_model: Option<Arc<RiskModel>>,
    decision: Option<Decision>,
    route: Option<Arc<str>>,
}

impl fmt::Debug for ZeroTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Fields {
            identity,
            client_ip,
            device,
            network,
            signals,
            risk_model,
            decision,
            route,
        } = &*self.inner;
        f.debug_struct("ZeroTrust")
            .field("identity", identity)
            .field("client_ip", client_ip)
            .field("device", device)
            .field("network", network)
            .field("signals", signals)
            .field("risk_model", risk_model)
            .field("decision", decision)
            .field("route", route)
            .finish()
    }
}

impl ZeroTrust {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The request's context, inserting an empty one if no layer has yet.
    pub fn get_or_insert(extensions: &mut Extensions) -> &mut ZeroTrust {
        extensions.get_or_insert_default::<ZeroTrust>()
    }

    /// Like [`get_or_insert`](Self::get_or_insert), for a layer that changes the context and
    /// then, in the same synchronous step, passes the request inward
    /// ([`note_pass`](crate::tap::note_pass)) or refuses it: an outer audit layer's
    /// [`AuditTap`] gives up its snapshot of the last pass, so the change copies nothing.
    ///
    /// Until that pass the tap holds no snapshot: never `.await` in between (a request cancelled
    /// there would be audited without its context). Where something is awaited, use
    /// `get_or_insert`; the first change then copies the context once.
    pub fn get_or_insert_to_pass(extensions: &mut Extensions) -> &mut ZeroTrust {
        if let Some(zt) = extensions.get::<ZeroTrust>()
            && Arc::strong_count(&zt.inner) > 1
            && let Some(tap) = extensions.get::<AuditTap>()
        {
            tap.release(zt);
        }
        extensions.get_or_insert_default::<ZeroTrust>()
    }

    /// Whether `self` and `other` are clones of one context, unchanged since.
    pub(crate) fn same_as(&self, other: &ZeroTrust) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn fields(&mut self) -> &mut Fields {
        Arc::make_mut(&mut self.inner)
    }

    /// The verified identity, if a layer established one.
    pub fn identity(&self) -> Option<&Identity> {
        self.inner.identity.as_deref()
    }

    /// The verified identity as a shared handle.
    pub fn identity_arc(&self) -> Option<&Arc<Identity>> {
        self.inner.identity.as_ref()
    }

    /// The verified subject, if any.
    pub fn subject(&self) -> Option<&str> {
        self.inner.identity.as_deref().map(Identity::subject)
    }

    /// Records the verified identity.
    pub fn set_identity(&mut self, identity: Arc<Identity>) {
        self.fields().identity = Some(identity);
    }

    /// The client address, once a layer resolved it (with the shared
    /// [`ClientIpResolver`](crate::ClientIpResolver)).
    pub fn client_ip(&self) -> Option<ClientIp> {
        self.inner.client_ip
    }

    /// Records the client address, so later layers use the same one.
    pub fn set_client_ip(&mut self, ip: ClientIp) {
        self.fields().client_ip = Some(ip);
    }

    /// What the device layer established, if it ran.
    pub fn device(&self) -> Option<&DeviceAssessment> {
        self.inner.device.as_ref()
    }

    /// Records the device assessment.
    pub fn set_device(&mut self, device: DeviceAssessment) {
        self.fields().device = Some(device);
    }

    /// What the network layer established, if it ran.
    pub fn network(&self) -> Option<&NetworkAssessment> {
        self.inner.network.as_ref()
    }

    /// Records the network assessment.
    pub fn set_network(&mut self, network: NetworkAssessment) {
        self.fields().network = Some(network);
    }

    /// The risk signals layers have added, in order.
    pub fn signals(&self) -> &[RiskSignal] {
        &self.inner.signals
    }

    /// Adds a risk signal.
    pub fn add_signal(&mut self, signal: RiskSignal) {
        self.fields().signals.push(signal);
    }

    /// The risk score in `0.0..=1.0`, combining every signal (see [`RiskModel`]).
    pub fn risk_score(&self) -> f64 {
        self.model().score(&self.inner.signals)
    }

    /// The trust level the signals, identity and device binding earn (see [`RiskModel`]).
    pub fn trust_level(&self) -> TrustLevel {
        // Without the reasons `risk_assessment` sorts and copies: the decision layer asks per
        // request.
        self.model().level(
            self.risk_score(),
            self.identity().is_some(),
            self.device_bound(),
        )
    }

    /// Whether the device is cryptographically bound and the subject's own.
    fn device_bound(&self) -> bool {
        self.inner
            .device
            .as_ref()
            .is_some_and(|d| d.binding.is_cryptographic() && d.owned_by_subject)
    }

    /// Whether any risk was assessed: a layer added a signal or assessed the device or the
    /// network, or the decision layer installed its risk model. A request refused at the token
    /// check has none of these; its
    /// [`risk_assessment`](Self::risk_assessment) (score 0, trust level from the identity alone)
    /// describes a check that never ran, and audit records leave it out.
    ///
    /// ```
    /// use zerotrust_core::{RiskSignal, ZeroTrust};
    ///
    /// let mut zt = ZeroTrust::new();
    /// assert!(!zt.risk_assessed());
    /// zt.add_signal(RiskSignal::new("device.new", 0.3, "first sight"));
    /// assert!(zt.risk_assessed());
    /// ```
    pub fn risk_assessed(&self) -> bool {
        let f = &*self.inner;
        !f.signals.is_empty() || f.risk_model.is_some() || f.device.is_some() || f.network.is_some()
    }

    /// Score, trust level and the reasons behind them, strongest first.
    ///
    /// ```
    /// use zerotrust_core::{RiskSignal, TrustLevel, ZeroTrust};
    ///
    /// let mut zt = ZeroTrust::new();
    /// zt.add_signal(RiskSignal::new("network.anonymizer", 0.6, "tor exit"));
    /// zt.add_signal(RiskSignal::new("time.outside_hours", 0.2, "03:10 Europe/Berlin"));
    /// let risk = zt.risk_assessment();
    /// assert!((risk.score - 0.68).abs() < 1e-9); // 1 - (1 - 0.6) * (1 - 0.2)
    /// assert_eq!(risk.reasons[0].name(), "network.anonymizer");
    /// assert_eq!(risk.trust_level, TrustLevel::Low); // 0.68 is within Low (at most 0.8)
    /// ```
    pub fn risk_assessment(&self) -> RiskAssessment {
        self.model().assess(
            &self.inner.signals,
            self.inner.identity.is_some(),
            self.device_bound(),
        )
    }

    /// The risk model used by [`risk_score`](Self::risk_score) and
    /// [`trust_level`](Self::trust_level): the one a layer installed, or the default.
    pub fn risk_model(&self) -> &RiskModel {
        self.model()
    }

    /// Installs the risk model (thresholds, weight overrides) for this request. The decision layer
    /// installs its own; without one, [`RiskModel::default`] applies.
    pub fn set_risk_model(&mut self, model: Arc<RiskModel>) {
        self.fields().risk_model = Some(model);
    }

    fn model(&self) -> &RiskModel {
        self.inner
            .risk_model
            .as_deref()
            .unwrap_or_else(|| RiskModel::default_ref())
    }

    /// The decision made about the request, if one was recorded.
    pub fn decision(&self) -> Option<&Decision> {
        self.inner.decision.as_ref()
    }

    /// Records a decision. A later, stricter layer may overwrite an earlier `Allow`.
    pub fn set_decision(&mut self, decision: Decision) {
        self.fields().decision = Some(decision);
    }

    /// The route pattern the decision layer matched the request to (such as `/reports/{id}`), for
    /// audit records and metrics: a bounded set, unlike raw paths.
    pub fn route(&self) -> Option<&str> {
        self.inner.route.as_deref()
    }

    /// Records the matched route pattern.
    pub fn set_route(&mut self, route: Arc<str>) {
        self.fields().route = Some(route);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceBinding, DeviceStatus, Posture};

    fn device(binding: DeviceBinding, owned: bool) -> DeviceAssessment {
        DeviceAssessment {
            device_id: Arc::from("d-1"),
            binding,
            status: DeviceStatus::Known,
            owned_by_subject: owned,
            posture: Posture::default(),
            violations: Vec::new(),
        }
    }

    #[test]
    fn verified_needs_an_identity_and_a_cryptographically_bound_device_of_that_subject() {
        let mut zt = ZeroTrust::new();
        assert_eq!(zt.trust_level(), TrustLevel::Low);
        zt.set_identity(Arc::new(Identity::new(
            "alice",
            "https://idp",
            1_900_000_000,
        )));
        assert_eq!(zt.trust_level(), TrustLevel::High);
        zt.set_device(device(DeviceBinding::Header, true));
        assert_eq!(zt.trust_level(), TrustLevel::High);
        zt.set_device(device(DeviceBinding::Certificate, false));
        assert_eq!(zt.trust_level(), TrustLevel::High);
        zt.set_device(device(DeviceBinding::Certificate, true));
        assert_eq!(zt.trust_level(), TrustLevel::Verified);
    }

    #[test]
    fn the_quick_trust_level_agrees_with_the_full_assessment() {
        let mut zt = ZeroTrust::new();
        let check = |zt: &ZeroTrust| {
            let full = zt.risk_assessment();
            assert_eq!(zt.trust_level(), full.trust_level);
            assert!((zt.risk_score() - full.score).abs() < 1e-12);
        };
        check(&zt);
        zt.add_signal(RiskSignal::new("a", 0.15, ""));
        check(&zt);
        zt.set_identity(Arc::new(Identity::new(
            "alice",
            "https://idp",
            1_900_000_000,
        )));
        check(&zt);
        zt.set_device(device(DeviceBinding::Certificate, true));
        check(&zt);
        zt.add_signal(RiskSignal::new("b", 0.5, ""));
        check(&zt);
        zt.set_risk_model(Arc::new(RiskModel::default().with_weight("b", 0.0)));
        check(&zt);
    }
}
