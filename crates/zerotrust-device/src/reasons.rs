//! The stable reason codes of the device layer's refusals.

use zerotrust_core::{PostureRule, Reason};

/// The request identifies no device and the layer requires one (403).
pub const REQUIRED: Reason = Reason::new("device.required", "A managed device is required.");
/// Device headers repeated, one without the other, or not well formed (400).
pub const MALFORMED: Reason = Reason::new(
    "device.malformed_headers",
    "The request's device headers are malformed.",
);
/// The fingerprint does not match the one registered for the device (403).
pub const FINGERPRINT_MISMATCH: Reason = Reason::new(
    "device.fingerprint_mismatch",
    "The device could not be verified.",
);
/// The device belongs to another subject (403).
pub const OWNER_MISMATCH: Reason = Reason::new(
    "device.owner_mismatch",
    "The device is not registered to this user.",
);
/// The posture assertion is malformed, forged, or not for this service (403).
pub const ASSERTION_INVALID: Reason = Reason::new(
    "device.assertion_invalid",
    "The device posture assertion is not valid.",
);
/// The posture assertion is expired or older than allowed (403).
pub const ASSERTION_EXPIRED: Reason = Reason::new(
    "device.assertion_expired",
    "The device posture assertion has expired.",
);
/// Two kinds of device evidence name different devices (403).
pub const ID_CONFLICT: Reason = Reason::new(
    "device.id_conflict",
    "The request's device evidence is inconsistent.",
);
/// The client certificate carries no device id the layer accepts (403).
pub const CERTIFICATE_UNRECOGNIZED: Reason = Reason::new(
    "device.certificate_unrecognized",
    "The client certificate does not identify a device.",
);
/// The OS version is below the minimum, or the platform is not allowed (403).
pub const NONCOMPLIANT_OS_VERSION: Reason = Reason::new(
    "device.noncompliant.os_version",
    "The device's operating system does not meet the security policy.",
);
/// Disk encryption required and not reported (403).
pub const NONCOMPLIANT_DISK_ENCRYPTION: Reason = Reason::new(
    "device.noncompliant.disk_encryption",
    "The device's disk must be encrypted.",
);
/// A running EDR agent required and not reported (403).
pub const NONCOMPLIANT_EDR: Reason = Reason::new(
    "device.noncompliant.edr",
    "The device must run the endpoint protection agent.",
);
/// Jailbroken or rooted, or not saying (403).
pub const NONCOMPLIANT_JAILBROKEN: Reason = Reason::new(
    "device.noncompliant.jailbroken",
    "Jailbroken or rooted devices are not allowed.",
);
/// The posture report is too old (403).
pub const NONCOMPLIANT_POSTURE_AGE: Reason = Reason::new(
    "device.noncompliant.posture_age",
    "The device's security posture must be reported again.",
);

/// The refusal reason for breaking a blocking `rule`.
pub fn noncompliant(rule: PostureRule) -> Reason {
    match rule {
        PostureRule::OsVersion => NONCOMPLIANT_OS_VERSION,
        PostureRule::DiskEncryption => NONCOMPLIANT_DISK_ENCRYPTION,
        PostureRule::Edr => NONCOMPLIANT_EDR,
        PostureRule::Jailbroken => NONCOMPLIANT_JAILBROKEN,
        _ => NONCOMPLIANT_POSTURE_AGE,
    }
}
