//! `DeviceCheck`: the configuration, and the assessment of one request's device.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName};
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::revocation::STORE_DEGRADED;
use zerotrust_core::service::ContextUpdate;
use zerotrust_core::{
    Compliance, DeviceAssessment, DeviceBinding, DeviceRecord, DeviceRegistry, DeviceStatus,
    Enforcement, Identity, PeerCertificate, Posture, Registration, Rejection, RejectionKind,
    RiskSignal, StoreError, ZeroTrust,
};

use crate::assertion::{AssertionError, AssertionVerifier, PostureAssertions, VerifiedAssertion};
use crate::policy::{PosturePolicy, RuleAction};
use crate::reasons;

/// How a client certificate names its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateIds {
    /// The certificate's SHA-256 fingerprint, as 64 lower-case hex digits.
    Sha256Fingerprint,
    /// The first URI SAN starting with this prefix (for example `spiffe://example.org/device/`),
    /// whole. A certificate without one is refused (`device.certificate_unrecognized`).
    UriSanPrefix(String),
}

/// What to do with a request that identifies no device at all.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Absent {
    Refuse,
    Signal(f64),
}

/// A source of the current time in seconds since the Unix epoch (injectable for tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The configuration of a [`DeviceCheckLayer`](crate::DeviceCheckLayer), built once.
///
/// Cloning is cheap (shared behind an `Arc`).
#[derive(Clone)]
pub struct DeviceCheck {
    inner: Arc<Settings<AssertionVerifier>>,
}

/// The configuration, with assertions as declared (`PostureAssertions`, in the builder) or ready
/// to verify (`AssertionVerifier`, once built).
struct Settings<A> {
    registry: Arc<dyn DeviceRegistry>,
    policy: PosturePolicy,
    headers: Option<(HeaderName, HeaderName)>,
    assertions: Option<A>,
    certificates: Option<CertificateIds>,
    auto_register: bool,
    absent: Absent,
    unknown_weight: f64,
    new_weight: f64,
    weak_binding_weight: f64,
    store_fail_open: Option<f64>,
    touch_interval: i64,
    clock: Clock,
    enforcement: Enforcement,
}

impl fmt::Debug for DeviceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("DeviceCheck")
            .field("headers", &i.headers)
            .field("assertions", &i.assertions.is_some())
            .field("certificates", &i.certificates)
            .field("auto_register", &i.auto_register)
            .field("policy", &i.policy)
            .field("enforcement", &i.enforcement)
            .finish_non_exhaustive()
    }
}

/// A [`DeviceCheck`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No way to identify devices was enabled.
    #[error(
        "no device identification enabled: call device_headers, posture_assertions or client_certificates"
    )]
    NoIdentification,
}

/// Builds a [`DeviceCheck`]. Start from [`DeviceCheck::builder`].
pub struct DeviceCheckBuilder {
    settings: Settings<PostureAssertions>,
}

impl fmt::Debug for DeviceCheckBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCheckBuilder").finish_non_exhaustive()
    }
}

impl DeviceCheck {
    /// Starts a configuration around `registry`.
    ///
    /// Strict defaults: no identification method until one is enabled; a request that identifies
    /// no device is refused (403 `device.required`); unknown devices are not registered; the
    /// default [`PosturePolicy`]; a registry that cannot answer refuses the request (503).
    ///
    /// ```
    /// use zerotrust_core::MemoryDeviceRegistry;
    /// use zerotrust_device::DeviceCheck;
    ///
    /// let check = DeviceCheck::builder(MemoryDeviceRegistry::new())
    ///     .device_headers()
    ///     .auto_register()
    ///     .build()
    ///     .unwrap();
    /// # let _ = check;
    /// ```
    pub fn builder(registry: impl DeviceRegistry) -> DeviceCheckBuilder {
        Self::builder_shared(Arc::new(registry))
    }

    /// [`builder`](Self::builder) with a registry shared with other code (an admin API, tests).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use zerotrust_core::MemoryDeviceRegistry;
    /// use zerotrust_device::DeviceCheck;
    ///
    /// let registry = Arc::new(MemoryDeviceRegistry::new());
    /// let check = DeviceCheck::builder_shared(registry.clone()).device_headers().build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn builder_shared(registry: Arc<dyn DeviceRegistry>) -> DeviceCheckBuilder {
        DeviceCheckBuilder {
            settings: Settings {
                registry,
                policy: PosturePolicy::default(),
                headers: None,
                assertions: None,
                certificates: None,
                auto_register: false,
                absent: Absent::Refuse,
                unknown_weight: 0.5,
                new_weight: 0.3,
                weak_binding_weight: 0.1,
                store_fail_open: None,
                touch_interval: 300,
                clock: Arc::new(system_clock),
                enforcement: Enforcement::Enforce,
            },
        }
    }
}

impl DeviceCheckBuilder {
    /// Identifies devices by the `X-Device-Id` and `X-Device-Fingerprint` headers, checked
    /// against the fingerprint the registry holds for the id.
    ///
    /// # Warning
    ///
    /// The weakest method: both values are plain request headers, so anyone who learns them can
    /// replay them. Requests identified this way carry the `device.weak_binding` signal and never
    /// reach trust level `Verified`. Prefer posture assertions or client certificates.
    ///
    /// ```
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b.device_headers().build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn device_headers(self) -> Self {
        self.device_header_names(
            HeaderName::from_static("x-device-id"),
            HeaderName::from_static("x-device-fingerprint"),
        )
    }

    /// [`device_headers`](Self::device_headers) with other header names. Same warning.
    ///
    /// ```
    /// use http::HeaderName;
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b
    ///     .device_header_names(HeaderName::from_static("x-client-device"), HeaderName::from_static("x-client-fp"))
    ///     .build()
    ///     .unwrap();
    /// # let _ = check;
    /// ```
    pub fn device_header_names(mut self, id: HeaderName, fingerprint: HeaderName) -> Self {
        self.settings.headers = Some((id, fingerprint));
        self
    }

    /// Identifies devices by signed posture assertions (see [`PostureAssertions`]).
    ///
    /// ```
    /// use zerotrust_device::PostureAssertions;
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let keys = zerotrust_jwt::KeySet::from_keys([]);
    /// let check = b
    ///     .posture_assertions(PostureAssertions::new(keys, "https://mdm.example.com"))
    ///     .build()
    ///     .unwrap();
    /// # let _ = check;
    /// ```
    pub fn posture_assertions(mut self, assertions: PostureAssertions) -> Self {
        self.settings.assertions = Some(assertions);
        self
    }

    /// Identifies devices by the client certificate of a mutual-TLS connection (the
    /// [`PeerCertificate`] extension the TLS acceptor sets).
    ///
    /// ```
    /// use zerotrust_device::CertificateIds;
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b
    ///     .client_certificates(CertificateIds::UriSanPrefix("spiffe://example.org/device/".into()))
    ///     .build()
    ///     .unwrap();
    /// # let _ = check;
    /// ```
    pub fn client_certificates(mut self, ids: CertificateIds) -> Self {
        self.settings.certificates = Some(ids);
        self
    }

    /// The posture every device must have.
    ///
    /// ```
    /// use zerotrust_device::PosturePolicy;
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b
    ///     .device_headers()
    ///     .posture_policy(PosturePolicy::builder().block_jailbroken().build())
    ///     .build()
    ///     .unwrap();
    /// # let _ = check;
    /// ```
    pub fn posture_policy(mut self, policy: PosturePolicy) -> Self {
        self.settings.policy = policy;
        self
    }

    /// Registers a device on first sight, bound to the request's verified subject (signal
    /// `device.new`), and binds an unowned known device to the first subject that uses it.
    /// Without a verified subject nothing is registered.
    ///
    /// # Warning
    ///
    /// Trust on first use: whoever presents an unknown device id first owns it. With header
    /// identification that includes its fingerprint.
    ///
    /// ```
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b.device_headers().auto_register().build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn auto_register(mut self) -> Self {
        self.settings.auto_register = true;
        self
    }

    /// Lets requests that identify no device through, with the `device.absent` signal of this
    /// weight, instead of refusing them.
    ///
    /// # Warning
    ///
    /// A client then avoids every device check by sending no device evidence; only the signal
    /// (and a decision layer that weighs it) stands in the way.
    ///
    /// ```
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b.device_headers().allow_missing_device(0.5).build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn allow_missing_device(mut self, weight: f64) -> Self {
        self.settings.absent = Absent::Signal(weight);
        self
    }

    /// Weights of the `device.unknown` (default 0.5), `device.new` (0.3) and
    /// `device.weak_binding` (0.1) signals.
    ///
    /// ```
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b.device_headers().signal_weights(0.6, 0.4, 0.2).build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn signal_weights(mut self, unknown: f64, new: f64, weak_binding: f64) -> Self {
        self.settings.unknown_weight = unknown;
        self.settings.new_weight = new;
        self.settings.weak_binding_weight = weak_binding;
        self
    }

    /// When the registry cannot answer, lets the request continue with the `store.degraded`
    /// signal of this weight instead of refusing it with 503.
    ///
    /// # Warning
    ///
    /// During a registry outage no fingerprint, owner or registration check runs: a replayed or
    /// stolen device id passes with only the signal against it.
    ///
    /// ```
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b.device_headers().fail_open_on_store_error(0.6).build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn fail_open_on_store_error(mut self, weight: f64) -> Self {
        self.settings.store_fail_open = Some(weight);
        self
    }

    /// How often `last_seen` is written for a device in use (default every 5 minutes at most).
    ///
    /// ```
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b.device_headers().touch_interval(std::time::Duration::from_secs(60)).build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn touch_interval(mut self, interval: std::time::Duration) -> Self {
        self.settings.touch_interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Replaces the clock (seconds since the Unix epoch), for tests.
    ///
    /// ```
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// let check = b.device_headers().clock(|| 1_900_000_000).build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.settings.clock = Arc::new(clock);
        self
    }

    /// How refusals are applied (default [`Enforcement::Enforce`]: every refusal is answered).
    ///
    /// - [`Enforcement::ReportOnly`]: the device is checked as usual and its signals are added as
    ///   usual. Every refusal (malformed device headers, a forged or expired assertion, an
    ///   unrecognised certificate, a missing device, a fingerprint or owner mismatch, a blocking
    ///   posture rule, the registry unavailable) is recorded as a
    ///   [`Decision`](zerotrust_core::Decision) with `enforced: false`, logged and counted
    ///   (`zerotrust_report_only_total`), and the request goes on.
    /// - [`Enforcement::Rollout`]`(n)`: enforced for `n`% of the verified subjects (chosen by a
    ///   stable hash of the subject, so a subject always gets the same answer), reported for the
    ///   others. Requests without a verified subject are always enforced.
    /// - [`Enforcement::Off`]: the layer calls the service at once: no device evidence read, no
    ///   registry asked, no signal, no assessment.
    ///
    /// A device the layer would refuse establishes nothing: when the refusal is only reported,
    /// [`ZeroTrust::device`] stays empty (as when no device is identified), so a device presented
    /// by the wrong subject, or with the wrong fingerprint, never lends its binding to the trust
    /// level. The decision names the reason. The signals, which are facts about the request, are
    /// kept: a decision layer that enforces still weighs them (a blocking posture rule is the
    /// `device.noncompliant` signal at weight 1).
    ///
    /// # Warning
    ///
    /// With `ReportOnly`, `Rollout` and `Off`, requests from unknown, foreign, non-compliant or
    /// unidentified devices reach the service; only the signals (and a decision layer that
    /// weighs them) stand in the way.
    ///
    /// ```
    /// use zerotrust_core::Enforcement;
    /// # let b = zerotrust_device::DeviceCheck::builder(zerotrust_core::MemoryDeviceRegistry::new());
    /// // Enforce device checks for a quarter of the users, report them for the rest.
    /// let check = b.device_headers().enforcement(Enforcement::rollout(25)).build().unwrap();
    /// # let _ = check;
    /// ```
    pub fn enforcement(mut self, mode: Enforcement) -> Self {
        self.settings.enforcement = mode;
        self
    }

    /// The configuration, or why it cannot work.
    pub fn build(self) -> Result<DeviceCheck, BuildError> {
        let s = self.settings;
        if s.headers.is_none() && s.assertions.is_none() && s.certificates.is_none() {
            return Err(BuildError::NoIdentification);
        }
        Ok(DeviceCheck {
            inner: Arc::new(Settings {
                assertions: s.assertions.map(PostureAssertions::into_verifier),
                registry: s.registry,
                policy: s.policy,
                headers: s.headers,
                certificates: s.certificates,
                auto_register: s.auto_register,
                absent: s.absent,
                unknown_weight: s.unknown_weight,
                new_weight: s.new_weight,
                weak_binding_weight: s.weak_binding_weight,
                store_fail_open: s.store_fail_open,
                touch_interval: s.touch_interval,
                clock: s.clock,
                enforcement: s.enforcement,
            }),
        })
    }
}

/// The claims of one request as they are gathered: the strongest, and whether a weaker one
/// named another device.
#[derive(Debug, Default)]
struct Claims {
    strongest: Option<Claim>,
    conflict: bool,
}

impl Claims {
    fn push(&mut self, claim: Claim) {
        match &self.strongest {
            None => self.strongest = Some(claim),
            Some(strongest) => self.conflict |= claim.id() != strongest.id(),
        }
    }
}

/// The device a request claims, by its strongest evidence.
#[derive(Debug)]
pub(crate) enum Claim {
    // Shared: the id becomes the assessment's `device_id` without another copy.
    Header {
        id: Arc<str>,
        fingerprint: FingerprintDigest,
    },
    Assertion(Arc<VerifiedAssertion>),
    Certificate {
        id: Arc<str>,
    },
}

impl Claim {
    fn id(&self) -> &str {
        match self {
            Claim::Header { id, .. } | Claim::Certificate { id } => id,
            Claim::Assertion(a) => &a.device_id,
        }
    }

    fn binding(&self) -> DeviceBinding {
        match self {
            Claim::Header { .. } => DeviceBinding::Header,
            Claim::Assertion(_) => DeviceBinding::Assertion,
            Claim::Certificate { .. } => DeviceBinding::Certificate,
        }
    }

    /// The id as the shared string the assessment keeps.
    fn shared_id(&self) -> Arc<str> {
        match self {
            Claim::Header { id, .. } | Claim::Certificate { id } => Arc::clone(id),
            Claim::Assertion(a) => Arc::from(a.device_id.as_str()),
        }
    }
}

/// What the request-level step decided.
pub(crate) enum Gathered {
    /// A device to assess against the registry.
    Claim(Claim),
    /// No device evidence, and that is allowed: proceed with this signal.
    Absent(RiskSignal),
}

/// An id: 1 to 128 characters from `A-Z a-z 0-9 . _ : @ -`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// The single value of `name`, `Ok(None)` when absent, an error when repeated or not text.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ()> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => std::str::from_utf8(v.as_bytes()).map(Some).map_err(|_| ()),
        (Some(_), Some(_)) => Err(()),
    }
}

fn malformed() -> Rejection {
    Rejection::new(RejectionKind::InvalidRequest, reasons::MALFORMED).with_layer("device")
}

fn forbidden(reason: zerotrust_core::Reason) -> Rejection {
    Rejection::new(RejectionKind::Forbidden, reason).with_layer("device")
}

impl DeviceCheck {
    pub(crate) fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    /// How this check's refusals are applied.
    pub fn enforcement(&self) -> Enforcement {
        self.inner.enforcement
    }

    /// Reads the request's device evidence: every enabled method, strongest first, and they must
    /// agree on the device.
    pub(crate) fn gather(
        &self,
        headers: &HeaderMap,
        certificate: Option<&PeerCertificate>,
        now: i64,
    ) -> Result<Gathered, Rejection> {
        let inner = &*self.inner;
        // Strongest first (certificate, assertion, headers); the others must name the same id.
        // Kept as the first claim and a conflict flag: no allocation per request.
        let mut claims = Claims::default();

        if let (Some(ids), Some(cert)) = (&inner.certificates, certificate) {
            let id = match ids {
                CertificateIds::Sha256Fingerprint => Some(Arc::from(cert.sha256_hex())),
                CertificateIds::UriSanPrefix(prefix) => cert
                    .uri_sans()
                    .find(|uri| uri.starts_with(prefix.as_str()) && uri.len() > prefix.len())
                    .map(Arc::from),
            };
            match id {
                Some(id) => claims.push(Claim::Certificate { id }),
                None => return Err(forbidden(reasons::CERTIFICATE_UNRECOGNIZED)),
            }
        }

        if let Some(verifier) = &inner.assertions
            && let Some(token) =
                single(headers, verifier.header_name()).map_err(|()| malformed())?
        {
            match verifier.verify(token.trim(), now) {
                Ok(a) if valid_id(&a.device_id) => claims.push(Claim::Assertion(a)),
                Ok(_) | Err(AssertionError::Invalid) => {
                    return Err(forbidden(reasons::ASSERTION_INVALID));
                }
                Err(AssertionError::Expired) => {
                    return Err(forbidden(reasons::ASSERTION_EXPIRED));
                }
            }
        }

        if let Some((id_header, fp_header)) = &inner.headers {
            let id = single(headers, id_header).map_err(|()| malformed())?;
            let fp = single(headers, fp_header).map_err(|()| malformed())?;
            match (id, fp) {
                (None, None) => {}
                (Some(id), Some(fp)) => {
                    let (id, fp) = (id.trim(), fp.trim());
                    let fp_ok = !fp.is_empty()
                        && fp.len() <= 1024
                        && fp.bytes().all(|b| b.is_ascii_graphic());
                    if !valid_id(id) || !fp_ok {
                        return Err(malformed());
                    }
                    claims.push(Claim::Header {
                        id: Arc::from(id),
                        fingerprint: FingerprintDigest::of(fp),
                    });
                }
                // One without the other is a broken client, not a weaker claim.
                _ => return Err(malformed()),
            }
        }

        let Some(strongest) = claims.strongest else {
            return match inner.absent {
                Absent::Refuse => Err(forbidden(reasons::REQUIRED)),
                Absent::Signal(weight) => Ok(Gathered::Absent(RiskSignal::new(
                    "device.absent",
                    weight,
                    "the request identifies no device",
                ))),
            };
        };
        if claims.conflict {
            return Err(forbidden(reasons::ID_CONFLICT));
        }
        Ok(Gathered::Claim(strongest))
    }

    /// Assesses `claim` against the registry and the posture policy.
    pub(crate) async fn assess(
        self,
        claim: Claim,
        identity: Option<Arc<Identity>>,
        now: i64,
    ) -> DeviceFindings {
        let subject = identity.as_deref().map(Identity::subject);
        let findings = match self.assess_inner(&claim, subject, now).await {
            Ok(findings) => findings,
            Err(error) => self.store_failed(&claim, &error),
        };
        DeviceFindings {
            mode: self.inner.enforcement,
            ..findings
        }
    }

    fn store_failed(&self, claim: &Claim, error: &StoreError) -> DeviceFindings {
        match self.inner.store_fail_open {
            Some(weight) => {
                tracing::warn!(target: "zerotrust::device", %error, "device registry unavailable; continuing degraded");
                DeviceFindings {
                    assessment: None,
                    signals: vec![RiskSignal::new(
                        STORE_DEGRADED,
                        weight,
                        format!(
                            "device registry unavailable; device {} unchecked",
                            claim.id()
                        ),
                    )],
                    refusal: None,
                    mode: Enforcement::Enforce,
                }
            }
            None => {
                tracing::warn!(target: "zerotrust::device", %error, "device registry unavailable; answering 503");
                DeviceFindings {
                    assessment: None,
                    signals: Vec::new(),
                    refusal: Some(error.rejection("device")),
                    mode: Enforcement::Enforce,
                }
            }
        }
    }

    async fn assess_inner(
        &self,
        claim: &Claim,
        subject: Option<&str>,
        now: i64,
    ) -> Result<DeviceFindings, StoreError> {
        let inner = &*self.inner;
        let id = claim.id();
        let mut signals = Vec::new();
        let assertion = match claim {
            Claim::Assertion(a) => Some(a),
            _ => None,
        };
        let mut record = inner.registry.get(id).await?;
        let mut status = if record.is_some() {
            DeviceStatus::Known
        } else {
            DeviceStatus::Unknown
        };
        // The device-management service says whose device it is: nobody else may present it.
        if let (Some(a), Some(subject)) = (assertion, subject)
            && a.owner.as_deref().is_some_and(|owner| owner != subject)
        {
            return Ok(DeviceFindings::refused(
                claim,
                status,
                reasons::OWNER_MISMATCH,
            ));
        }
        if record.is_none() {
            if let (true, Some(subject)) = (inner.auto_register, subject) {
                let new = DeviceRecord {
                    fingerprint: match claim {
                        Claim::Header { fingerprint, .. } => Some(*fingerprint),
                        _ => None,
                    },
                    owners: vec![subject.to_owned()],
                    ..DeviceRecord::new(id, now)
                };
                match inner.registry.register(new).await? {
                    Registration::Created(rec) => {
                        status = DeviceStatus::New;
                        signals.push(RiskSignal::new(
                            "device.new",
                            inner.new_weight,
                            format!("first sight of device {id}, registered to the subject"),
                        ));
                        record = Some(rec);
                    }
                    // A concurrent request registered it first: check against that record.
                    Registration::Existing(rec) => {
                        status = DeviceStatus::Known;
                        record = Some(rec);
                    }
                }
            } else {
                signals.push(RiskSignal::new(
                    "device.unknown",
                    inner.unknown_weight,
                    format!("device {id} is not registered"),
                ));
            }
        }

        let mut owned_by_subject = false;
        if let Some(rec) = &record {
            if let Claim::Header { fingerprint, .. } = claim {
                // A device registered without a fingerprint (by certificate or assertion) cannot
                // be claimed with headers at all.
                let matches = rec
                    .fingerprint
                    .as_ref()
                    .is_some_and(|stored| stored.matches(fingerprint));
                if !matches {
                    return Ok(DeviceFindings::refused(
                        claim,
                        status,
                        reasons::FINGERPRINT_MISMATCH,
                    ));
                }
            }
            if let Some(subject) = subject {
                if rec.is_owned_by(subject) {
                    owned_by_subject = true;
                } else if !rec.owners.is_empty() {
                    return Ok(DeviceFindings::refused(
                        claim,
                        status,
                        reasons::OWNER_MISMATCH,
                    ));
                } else if inner.auto_register {
                    inner.registry.bind_owner(id, subject).await?;
                    owned_by_subject = true;
                }
            }
        }

        // The posture checked: a fresh signed assertion's, else what the registry holds.
        let posture = match (assertion, &record) {
            (Some(a), _) => a.posture.clone(),
            (None, Some(rec)) => rec.posture.clone(),
            (None, None) => Posture::default(),
        };
        let violations = inner.policy.evaluate(&posture, now);

        if let Some(rec) = &record {
            let newer = match (posture.reported_at, rec.posture.reported_at) {
                (Some(new), Some(stored)) => new > stored,
                (Some(_), None) => true,
                _ => false,
            };
            if assertion.is_some() && newer {
                let compliance = if violations.is_empty() {
                    Compliance::Compliant
                } else {
                    Compliance::NonCompliant(violations.iter().map(|v| v.rule).collect())
                };
                inner
                    .registry
                    .update_posture(id, posture.clone(), compliance)
                    .await?;
            }
            if status == DeviceStatus::Known
                && now.saturating_sub(rec.last_seen) >= inner.touch_interval
            {
                // Bookkeeping, not a check: a failed write does not refuse the request.
                if let Err(error) = inner.registry.touch(id, now).await {
                    tracing::warn!(target: "zerotrust::device", %error, "could not record last_seen");
                }
            }
        }

        if claim.binding() == DeviceBinding::Header {
            signals.push(RiskSignal::new(
                "device.weak_binding",
                inner.weak_binding_weight,
                // `concat`, not `format!`: one allocation of the right size.
                ["device ", id, " identified by request headers only"].concat(),
            ));
        }
        let blocking = violations
            .iter()
            .find(|v| v.action == RuleAction::Block)
            .map(|v| reasons::noncompliant(v.rule));
        let keep = violations.iter().fold(1.0, |keep, v| match v.action {
            RuleAction::Signal(w) => keep * (1.0 - w.clamp(0.0, 1.0)),
            RuleAction::Block => keep,
        });
        if !violations.is_empty() {
            // "disk_encryption: disk encryption not reported; posture_age: ...", in one buffer.
            let mut evidence = String::with_capacity(
                violations
                    .iter()
                    .map(|v| v.rule.as_str().len() + v.detail.len() + 4)
                    .sum(),
            );
            for v in &violations {
                if !evidence.is_empty() {
                    evidence.push_str("; ");
                }
                evidence.push_str(v.rule.as_str());
                evidence.push_str(": ");
                evidence.push_str(&v.detail);
            }
            let weight = if blocking.is_some() { 1.0 } else { 1.0 - keep };
            signals.push(RiskSignal::new("device.noncompliant", weight, evidence));
        }

        Ok(DeviceFindings {
            assessment: Some(DeviceAssessment {
                device_id: claim.shared_id(),
                binding: claim.binding(),
                status,
                owned_by_subject,
                posture,
                violations: violations.iter().map(|v| v.rule).collect(),
            }),
            signals,
            refusal: blocking.map(forbidden),
            mode: Enforcement::Enforce,
        })
    }
}

/// What the device check found about one request; the layer applies it to [`ZeroTrust`] when the
/// check completes, refusing or reporting by the configured [`Enforcement`].
#[derive(Debug)]
pub struct DeviceFindings {
    assessment: Option<DeviceAssessment>,
    signals: Vec<RiskSignal>,
    refusal: Option<Rejection>,
    /// Set from the configuration by `DeviceCheck::assess`; `Enforce` until then (fail closed).
    mode: Enforcement,
}

impl DeviceFindings {
    /// A refusal that still records which device was refused and how it was identified.
    fn refused(claim: &Claim, status: DeviceStatus, reason: zerotrust_core::Reason) -> Self {
        Self {
            assessment: Some(DeviceAssessment {
                device_id: Arc::from(claim.id()),
                binding: claim.binding(),
                status,
                owned_by_subject: false,
                posture: Posture::default(),
                violations: Vec::new(),
            }),
            signals: Vec::new(),
            refusal: Some(forbidden(reason)),
            mode: Enforcement::Enforce,
        }
    }
}

impl ContextUpdate for DeviceFindings {
    const LAYER: &'static str = "device";

    fn apply(self, zt: &mut ZeroTrust) -> Result<(), Rejection> {
        for signal in self.signals {
            zt.add_signal(signal);
        }
        let Some(refusal) = self.refusal else {
            if let Some(assessment) = self.assessment {
                zt.set_device(assessment);
            }
            return Ok(());
        };
        match self.mode.apply(zt, refusal) {
            // Enforced: the assessment explains the refusal in the response's context.
            Err(refusal) => {
                if let Some(assessment) = self.assessment {
                    zt.set_device(assessment);
                }
                Err(refusal)
            }
            // Reported: a device that would be refused is not recorded as established, so it
            // lends no binding to the trust level; the decision says why.
            Ok(()) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_short_and_plain() {
        assert!(valid_id("d-42"));
        assert!(valid_id("laptop.alice@example.com"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id("x\u{7f}"));
        assert!(!valid_id(&"x".repeat(129)));
    }
}
