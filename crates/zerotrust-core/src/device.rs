//! Devices: the [`DeviceRegistry`] store trait, what it holds, and what a device layer concludes.

use std::fmt;
use std::sync::Arc;

use moka::ops::compute::Op;
use moka::sync::Cache;

use crate::revocation::StoreFuture;

/// A device's security posture: what its management agent reports. `None` means "not reported",
/// which a posture policy treats as failing any rule that needs the fact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Posture {
    /// Operating system family, lower case: `ios`, `android`, `macos`, `windows`, `linux`, ...
    pub platform: Option<String>,
    /// Operating system version, dotted numbers (`17.4.1`).
    pub os_version: Option<String>,
    /// Whether the system disk is encrypted.
    pub disk_encrypted: Option<bool>,
    /// Whether the endpoint detection and response agent is running.
    pub edr_running: Option<bool>,
    /// Whether the device is jailbroken or rooted.
    pub jailbroken: Option<bool>,
    /// When the facts were reported, in seconds since the Unix epoch.
    pub reported_at: Option<i64>,
}

/// One rule of a posture policy, named in signals, reason codes and audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PostureRule {
    /// The OS version is below the platform's minimum, or the platform is not allowed.
    OsVersion,
    /// Disk encryption is required and not reported on.
    DiskEncryption,
    /// A running EDR agent is required and not reported.
    Edr,
    /// The device is jailbroken or rooted (or does not say).
    Jailbroken,
    /// The posture report is older than the policy allows (or has no time).
    PostureAge,
}

impl PostureRule {
    /// The rule's stable name: `os_version`, `disk_encryption`, `edr`, `jailbroken`, `posture_age`.
    pub fn as_str(self) -> &'static str {
        match self {
            PostureRule::OsVersion => "os_version",
            PostureRule::DiskEncryption => "disk_encryption",
            PostureRule::Edr => "edr",
            PostureRule::Jailbroken => "jailbroken",
            PostureRule::PostureAge => "posture_age",
        }
    }
}

impl fmt::Display for PostureRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a device met the posture policy when its posture was last evaluated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Compliance {
    /// Never evaluated.
    #[default]
    Unknown,
    /// Every rule met.
    Compliant,
    /// The rules not met.
    NonCompliant(Vec<PostureRule>),
}

/// The SHA-256 digest of a device fingerprint. Registries store the digest, never the
/// fingerprint, and compare digests in constant time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FingerprintDigest([u8; 32]);

impl FingerprintDigest {
    /// The digest of a fingerprint as the device presented it.
    ///
    /// ```
    /// use zerotrust_core::device::FingerprintDigest;
    ///
    /// let a = FingerprintDigest::of("c2f1e0d3");
    /// assert!(a.matches(&FingerprintDigest::of("c2f1e0d3")));
    /// assert!(!a.matches(&FingerprintDigest::of("c2f1e0d4")));
    /// ```
    pub fn of(fingerprint: &str) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, fingerprint.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// A digest from its 32 bytes (as a registry stored them).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether two digests are equal, in constant time.
    pub fn matches(&self, other: &FingerprintDigest) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl fmt::Debug for FingerprintDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintDigest(..)")
    }
}

/// What a registry holds about one device.
///
/// Build one with struct-update syntax from [`DeviceRecord::new`] so fields added later keep your
/// code compiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device id: from the `X-Device-Id` header, a posture assertion or a certificate.
    pub id: String,
    /// The digest of the fingerprint bound to the device (header-identified devices).
    pub fingerprint: Option<FingerprintDigest>,
    /// The subjects the device belongs to. Empty: not bound to anyone yet.
    pub owners: Vec<String>,
    /// The last reported posture.
    pub posture: Posture,
    /// First seen, seconds since the Unix epoch.
    pub first_seen: i64,
    /// Last seen, seconds since the Unix epoch (updated coarsely, not on every request).
    pub last_seen: i64,
    /// The result of the last posture evaluation.
    pub compliance: Compliance,
}

impl DeviceRecord {
    /// A record for `id` first and last seen at `now`, with nothing else known.
    ///
    /// ```
    /// use zerotrust_core::DeviceRecord;
    ///
    /// let rec = DeviceRecord { owners: vec!["alice".into()], ..DeviceRecord::new("d-42", 1_900_000_000) };
    /// assert!(rec.is_owned_by("alice"));
    /// ```
    pub fn new(id: impl Into<String>, now: i64) -> Self {
        Self {
            id: id.into(),
            fingerprint: None,
            owners: Vec::new(),
            posture: Posture::default(),
            first_seen: now,
            last_seen: now,
            compliance: Compliance::Unknown,
        }
    }

    /// Whether `subject` is one of the owners.
    pub fn is_owned_by(&self, subject: &str) -> bool {
        self.owners.iter().any(|o| o == subject)
    }
}

/// What [`DeviceRegistry::register`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The record was stored: the device is new.
    Created(Arc<DeviceRecord>),
    /// A record with that id already existed and was left as it was (a concurrent request
    /// registered it first).
    Existing(Arc<DeviceRecord>),
}

/// The devices an organisation knows.
///
/// Every operation is atomic for one device, so two replicas registering the same device at once
/// end with one record (one sees [`Registration::Existing`]).
///
/// Implementations: [`MemoryDeviceRegistry`] here; a Redis registry in `zerotrust-redis`. All pass
/// `zerotrust_testkit::device_registry_tests!`.
pub trait DeviceRegistry: Send + Sync + 'static {
    /// The record for `id`.
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<DeviceRecord>>>;
    /// Stores `record` unless a device with its id exists.
    fn register(&self, record: DeviceRecord) -> StoreFuture<'_, Registration>;
    /// Replaces the posture and compliance of `id`, unless the stored posture was reported later.
    /// `false` when the device is unknown.
    fn update_posture<'a>(
        &'a self,
        id: &'a str,
        posture: Posture,
        compliance: Compliance,
    ) -> StoreFuture<'a, bool>;
    /// Adds `subject` to the owners of `id` (no change if already one). `false` when the device
    /// is unknown.
    fn bind_owner<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, bool>;
    /// Moves `last_seen` of `id` forward to `at` (never back). `false` when the device is unknown.
    fn touch<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, bool>;
    /// Forgets `id`. `false` when it was unknown.
    fn remove<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;
}

impl<R: DeviceRegistry + ?Sized> DeviceRegistry for Arc<R> {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<DeviceRecord>>> {
        (**self).get(id)
    }
    fn register(&self, record: DeviceRecord) -> StoreFuture<'_, Registration> {
        (**self).register(record)
    }
    fn update_posture<'a>(
        &'a self,
        id: &'a str,
        posture: Posture,
        compliance: Compliance,
    ) -> StoreFuture<'a, bool> {
        (**self).update_posture(id, posture, compliance)
    }
    fn bind_owner<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, bool> {
        (**self).bind_owner(id, subject)
    }
    fn touch<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, bool> {
        (**self).touch(id, at)
    }
    fn remove<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        (**self).remove(id)
    }
}

/// Devices held in this process.
///
/// Bounded (default 1,000,000 devices); past that the least used are evicted and reappear as
/// unknown devices, the safe direction. For many replicas use the Redis registry.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use zerotrust_core::{DeviceRecord, DeviceRegistry, MemoryDeviceRegistry};
///
/// let registry = MemoryDeviceRegistry::new();
/// registry.register(DeviceRecord::new("d-1", 1_900_000_000)).await.unwrap();
/// assert!(registry.bind_owner("d-1", "alice").await.unwrap());
/// let rec = registry.get("d-1").await.unwrap().unwrap();
/// assert!(rec.is_owned_by("alice"));
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryDeviceRegistry {
    devices: Cache<String, Arc<DeviceRecord>>,
}

impl fmt::Debug for MemoryDeviceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDeviceRegistry")
            .field("devices", &self.devices.entry_count())
            .finish()
    }
}

impl Default for MemoryDeviceRegistry {
    fn default() -> Self {
        Self::with_capacity(1_000_000)
    }
}

impl MemoryDeviceRegistry {
    /// A registry of up to 1,000,000 devices.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry of up to `max_devices` devices.
    pub fn with_capacity(max_devices: u64) -> Self {
        Self {
            devices: Cache::builder().max_capacity(max_devices).build(),
        }
    }

    /// The record for `id`, without going through a future.
    pub fn lookup(&self, id: &str) -> Option<Arc<DeviceRecord>> {
        self.devices.get(id)
    }

    /// Stores `record` unless its id exists, at once.
    pub fn insert_new(&self, record: DeviceRecord) -> Registration {
        let record = Arc::new(record);
        let mut existing = None;
        self.devices
            .entry_by_ref(record.id.as_str())
            .and_compute_with(|current| match current {
                Some(entry) => {
                    existing = Some(entry.into_value());
                    Op::Nop
                }
                None => Op::Put(Arc::clone(&record)),
            });
        match existing {
            Some(rec) => Registration::Existing(rec),
            None => Registration::Created(record),
        }
    }

    /// Applies `change` to the record of `id` atomically; `false` when unknown. `change` answers
    /// whether it changed anything (so an unchanged record is not rewritten).
    fn modify(&self, id: &str, change: impl FnOnce(&mut DeviceRecord) -> bool) -> bool {
        let mut found = false;
        self.devices.entry_by_ref(id).and_compute_with(|current| {
            let Some(entry) = current else {
                return Op::Nop;
            };
            found = true;
            let mut record = DeviceRecord::clone(entry.value());
            if change(&mut record) {
                Op::Put(Arc::new(record))
            } else {
                Op::Nop
            }
        });
        found
    }

    /// [`DeviceRegistry::update_posture`], at once.
    pub fn set_posture(&self, id: &str, posture: Posture, compliance: Compliance) -> bool {
        self.modify(id, |rec| {
            let older = matches!(
                (rec.posture.reported_at, posture.reported_at),
                (Some(stored), Some(new)) if stored > new
            ) || (rec.posture.reported_at.is_some() && posture.reported_at.is_none());
            if older {
                return false;
            }
            rec.posture = posture;
            rec.compliance = compliance;
            true
        })
    }

    /// [`DeviceRegistry::bind_owner`], at once.
    pub fn add_owner(&self, id: &str, subject: &str) -> bool {
        self.modify(id, |rec| {
            if rec.is_owned_by(subject) {
                return false;
            }
            rec.owners.push(subject.to_owned());
            true
        })
    }

    /// [`DeviceRegistry::touch`], at once.
    pub fn seen(&self, id: &str, at: i64) -> bool {
        self.modify(id, |rec| {
            if rec.last_seen >= at {
                return false;
            }
            rec.last_seen = at;
            true
        })
    }
}

impl DeviceRegistry for MemoryDeviceRegistry {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Arc<DeviceRecord>>> {
        Box::pin(std::future::ready(Ok(self.lookup(id))))
    }

    fn register(&self, record: DeviceRecord) -> StoreFuture<'_, Registration> {
        Box::pin(std::future::ready(Ok(self.insert_new(record))))
    }

    fn update_posture<'a>(
        &'a self,
        id: &'a str,
        posture: Posture,
        compliance: Compliance,
    ) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(
            self.set_posture(id, posture, compliance)
        )))
    }

    fn bind_owner<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.add_owner(id, subject))))
    }

    fn touch<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.seen(id, at))))
    }

    fn remove<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.devices.remove(id).is_some())))
    }
}

/// How a device proved which device it is, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DeviceBinding {
    /// `X-Device-Id` and `X-Device-Fingerprint` headers: anyone who learns them can replay them.
    Header,
    /// A posture assertion signed by the device-management service.
    Assertion,
    /// The client certificate of a mutual-TLS connection.
    Certificate,
}

impl DeviceBinding {
    /// Whether the binding is proven by a signature or a key (assertion, certificate), not by
    /// values a client could copy.
    pub fn is_cryptographic(self) -> bool {
        !matches!(self, DeviceBinding::Header)
    }

    /// The binding's stable name: `header`, `assertion`, `certificate`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceBinding::Header => "header",
            DeviceBinding::Assertion => "assertion",
            DeviceBinding::Certificate => "certificate",
        }
    }
}

/// Whether the registry knew the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceStatus {
    /// Registered before this request.
    Known,
    /// Registered by this request (auto-registration): first sight.
    New,
    /// Not registered, and not registered now.
    Unknown,
}

impl DeviceStatus {
    /// The status's stable name: `known`, `new`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Known => "known",
            DeviceStatus::New => "new",
            DeviceStatus::Unknown => "unknown",
        }
    }
}

/// What the device layer established about the request's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAssessment {
    /// The device id.
    pub device_id: Arc<str>,
    /// How the device proved it.
    pub binding: DeviceBinding,
    /// Whether the registry knew it.
    pub status: DeviceStatus,
    /// Whether the verified subject is one of the device's owners.
    pub owned_by_subject: bool,
    /// The posture the checks used (the assertion's, else the registry's).
    pub posture: Posture,
    /// The posture rules the device does not meet.
    pub violations: Vec<PostureRule>,
}
