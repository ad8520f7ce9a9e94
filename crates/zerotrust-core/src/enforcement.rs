//! Enforce, report only, or neither: how a layer or a route policy applies its refusals, for
//! gradual roll-outs.

use std::fmt;

use crate::{Outcome, Rejection, ZeroTrust};

/// How a layer (or a route policy) applies what it decides.
///
/// - `Enforce` (the default): a refusal is answered.
/// - `ReportOnly`: the layer decides as usual, records the would-be refusal in [`ZeroTrust`] as a
///   [`Decision`](crate::Decision) with `enforced: false` (for the audit layer), and passes the
///   request on.
/// - `Off`: the layer does nothing at all.
/// - `Rollout(percent)`: enforces for `percent`% of subjects and reports for the rest. Subjects
///   are chosen by a stable hash of the subject (the same subject is always on the same side, in
///   every replica and across restarts); requests without a subject are enforced.
///
/// ```
/// use zerotrust_core::Enforcement;
///
/// let mode = Enforcement::rollout(25);
/// let enforced = (0..10_000)
///     .filter(|i| mode.enforces_for(Some(&format!("user-{i}"))))
///     .count();
/// assert!((2_200..2_800).contains(&enforced), "{enforced}");
/// // Stable: the same answer every time, and anonymous requests are enforced.
/// assert_eq!(mode.enforces_for(Some("alice")), mode.enforces_for(Some("alice")));
/// assert!(mode.enforces_for(None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Refusals are answered.
    #[default]
    Enforce,
    /// Refusals are recorded, not answered.
    ReportOnly,
    /// The check does not run.
    Off,
    /// Enforced for this percentage (0 to 100) of subjects, reported for the others.
    Rollout(u8),
}

impl Enforcement {
    /// A roll-out to `percent`% of subjects (values above 100 mean 100).
    pub fn rollout(percent: u8) -> Self {
        Enforcement::Rollout(percent.min(100))
    }

    /// Whether the check runs at all.
    pub fn is_on(self) -> bool {
        self != Enforcement::Off
    }

    /// Whether a refusal is answered for a request of `subject`.
    pub fn enforces_for(self, subject: Option<&str>) -> bool {
        match self {
            Enforcement::Enforce => true,
            Enforcement::ReportOnly | Enforcement::Off => false,
            Enforcement::Rollout(percent) => match subject {
                None => true,
                Some(subject) => bucket(subject) < u64::from(percent.min(100)),
            },
        }
    }

    /// Applies `rejection` to a request of `zt` under this mode: `Err(rejection)` to answer it,
    /// or, when not enforced, `Ok(())` after recording the would-be decision with
    /// `enforced: false` (an earlier refusal already recorded is kept: the first one explains the
    /// request best).
    pub fn apply(self, zt: &mut ZeroTrust, rejection: Rejection) -> Result<(), Rejection> {
        if self.enforces_for(zt.subject()) {
            return Err(rejection);
        }
        let mut decision = rejection.decision();
        decision.enforced = false;
        tracing::info!(
            target: "zerotrust::decision",
            layer = decision.layer,
            code = decision.reason.code(),
            "report-only: request would be refused"
        );
        metrics::counter!(
            "zerotrust_report_only_total",
            "layer" => decision.layer,
            "reason" => decision.reason.code()
        )
        .increment(1);
        if zt.decision().is_none_or(|d| d.outcome == Outcome::Allow) {
            zt.set_decision(decision);
        }
        Ok(())
    }

    /// The mode's stable name: `enforce`, `report_only`, `off`, `rollout`.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::ReportOnly => "report_only",
            Enforcement::Off => "off",
            Enforcement::Rollout(_) => "rollout",
        }
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Enforcement::Rollout(p) => write!(f, "rollout({p}%)"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// The subject's bucket in `0..100`: FNV-1a (64 bit), stable across processes, versions and
/// platforms, unlike `std`'s randomly keyed hasher. Not a secret: a subject can learn its side of
/// a roll-out, never change it.
fn bucket(subject: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in subject.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % 100
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Reason, RejectionKind};

    const R: Reason = Reason::new("x.denied", "Denied.");

    #[test]
    fn buckets_are_fixed_values_not_process_dependent() {
        // FNV-1a of "" is the offset basis; these pin the function so a change is noticed.
        assert_eq!(bucket(""), 0xcbf2_9ce4_8422_2325 % 100);
        assert_eq!(bucket("alice"), bucket("alice"));
    }

    #[test]
    fn rollout_extremes_are_enforce_and_report() {
        assert!((0..1000).all(|i| Enforcement::rollout(100).enforces_for(Some(&i.to_string()))));
        assert!((0..1000).all(|i| !Enforcement::rollout(0).enforces_for(Some(&i.to_string()))));
    }

    #[test]
    fn report_only_records_the_would_be_decision_and_passes() {
        let mut zt = ZeroTrust::new();
        let rejection = Rejection::new(RejectionKind::Forbidden, R).with_layer("geo");
        assert!(Enforcement::ReportOnly.apply(&mut zt, rejection).is_ok());
        let d = zt.decision().unwrap();
        assert!(!d.enforced);
        assert_eq!(d.reason.code(), "x.denied");
        assert_eq!(d.layer, "geo");
    }
}
