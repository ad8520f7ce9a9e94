use std::sync::Arc;

use http::Extensions;

use crate::device::DeviceAssessment;
use crate::geo::NetworkAssessment;
use crate::risk::{RiskAssessment, RiskModel, TrustLevel};
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
/// Cloning is cheap: the identity is shared behind an `Arc`.
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
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ZeroTrust {
    identity: Option<Arc<Identity>>,
    client_ip: Option<ClientIp>,
    device: Option<DeviceAssessment>,
    network: Option<NetworkAssessment>,
    signals: Vec<RiskSignal>,
    risk_model: Option<Arc<RiskModel>>,
    decision: Option<Decision>,
    route: Option<Arc<str>>,
    revisions: Revisions,
}

/// Which context this is and how often its replaceable parts were set, so a snapshot taken at
/// one layer can be brought up to date at the next by copying only what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Revisions {
    instance: u64,
    identity: u32,
    device: u32,
    network: u32,
}

impl Default for ZeroTrust {
    fn default() -> Self {
        static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            identity: None,
            client_ip: None,
            device: None,
            network: None,
            signals: Vec::new(),
            risk_model: None,
            decision: None,
            route: None,
            revisions: Revisions {
                instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                identity: 0,
                device: 0,
                network: 0,
            },
        }
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

    /// The verified identity, if a layer established one.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_deref()
    }

    /// The verified identity as a shared handle.
    pub fn identity_arc(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }

    /// The verified subject, if any.
    pub fn subject(&self) -> Option<&str> {
        self.identity.as_deref().map(Identity::subject)
    }

    /// Records the verified identity.
    pub fn set_identity(&mut self, identity: Arc<Identity>) {
        self.identity = Some(identity);
        self.revisions.identity = self.revisions.identity.wrapping_add(1);
    }

    /// The client address, once a layer resolved it (with the shared
    /// [`ClientIpResolver`](crate::ClientIpResolver)).
    pub fn client_ip(&self) -> Option<ClientIp> {
        self.client_ip
    }

    /// Records the client address, so later layers use the same one.
    pub fn set_client_ip(&mut self, ip: ClientIp) {
        self.client_ip = Some(ip);
    }

    /// What the device layer established, if it ran.
    pub fn device(&self) -> Option<&DeviceAssessment> {
        self.device.as_ref()
    }

    /// Records the device assessment.
    pub fn set_device(&mut self, device: DeviceAssessment) {
        self.device = Some(device);
        self.revisions.device = self.revisions.device.wrapping_add(1);
    }

    /// What the network layer established, if it ran.
    pub fn network(&self) -> Option<&NetworkAssessment> {
        self.network.as_ref()
    }

    /// Records the network assessment.
    pub fn set_network(&mut self, network: NetworkAssessment) {
        self.network = Some(network);
        self.revisions.network = self.revisions.network.wrapping_add(1);
    }

    /// The risk signals layers have added, in order.
    pub fn signals(&self) -> &[RiskSignal] {
        &self.signals
    }

    /// Adds a risk signal.
    pub fn add_signal(&mut self, signal: RiskSignal) {
        self.signals.push(signal);
    }

    /// The risk score in `0.0..=1.0`, combining every signal (see [`RiskModel`]).
    pub fn risk_score(&self) -> f64 {
        self.model().score(&self.signals)
    }

    /// The trust level the signals, identity and device binding earn (see [`RiskModel`]).
    pub fn trust_level(&self) -> TrustLevel {
        self.risk_assessment().trust_level
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
            &self.signals,
            self.identity.is_some(),
            self.device
                .as_ref()
                .is_some_and(|d| d.binding.is_cryptographic() && d.owned_by_subject),
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
        self.risk_model = Some(model);
    }

    fn model(&self) -> &RiskModel {
        self.risk_model
            .as_deref()
            .unwrap_or_else(|| RiskModel::default_ref())
    }

    /// The decision made about the request, if one was recorded.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// Records a decision. A later, stricter layer may overwrite an earlier `Allow`.
    pub fn set_decision(&mut self, decision: Decision) {
        self.decision = Some(decision);
    }

    /// Brings `snapshot`, an earlier clone of this context, up to date: copies only the parts set
    /// since (signals are only ever added), or everything if it is a copy of another context.
    pub(crate) fn refresh_snapshot(&self, snapshot: &mut ZeroTrust) {
        let (now, then) = (self.revisions, snapshot.revisions);
        if now.instance != then.instance || snapshot.signals.len() > self.signals.len() {
            *snapshot = self.clone();
            return;
        }
        if now.identity != then.identity {
            snapshot.identity.clone_from(&self.identity);
        }
        if now.device != then.device {
            snapshot.device.clone_from(&self.device);
        }
        if now.network != then.network {
            snapshot.network.clone_from(&self.network);
        }
        if let Some(added) = self.signals.get(snapshot.signals.len()..) {
            snapshot.signals.extend_from_slice(added);
        }
        snapshot.client_ip = self.client_ip;
        snapshot.risk_model.clone_from(&self.risk_model);
        snapshot.decision = self.decision;
        snapshot.route.clone_from(&self.route);
        snapshot.revisions = now;
    }

    /// The route pattern the decision layer matched the request to (such as `/reports/{id}`), for
    /// audit records and metrics: a bounded set, unlike raw paths.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// Records the matched route pattern.
    pub fn set_route(&mut self, route: Arc<str>) {
        self.route = Some(route);
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
}
