use std::borrow::Cow;

/// One piece of risk evidence a layer observed about a request.
///
/// A signal has a stable `name` (for example `device.unknown`), a `weight` in `0.0..=1.0` that says
/// how strongly it raises the risk, and human-readable `evidence` for the audit record. Evidence is
/// written by the layer from facts it established; it must never carry a token or a secret.
///
/// ```
/// use zerotrust_core::RiskSignal;
///
/// let s = RiskSignal::new("network.anonymizer", 0.6, "exit node 198.51.100.7");
/// assert_eq!(s.name(), "network.anonymizer");
/// assert_eq!(s.weight(), 0.6);
/// // Weights are clamped into 0..=1; a NaN weight counts as the strongest signal (fail closed).
/// assert_eq!(RiskSignal::new("x", 7.0, "").weight(), 1.0);
/// assert_eq!(RiskSignal::new("x", f64::NAN, "").weight(), 1.0);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RiskSignal {
    name: Cow<'static, str>,
    weight: f64,
    evidence: Cow<'static, str>,
}

impl RiskSignal {
    /// A signal with a name, a weight (clamped into `0.0..=1.0`) and evidence.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        weight: f64,
        evidence: impl Into<Cow<'static, str>>,
    ) -> Self {
        let weight = if weight.is_nan() {
            1.0
        } else {
            weight.clamp(0.0, 1.0)
        };
        Self {
            name: name.into(),
            weight,
            evidence: evidence.into(),
        }
    }

    /// The signal's stable name, such as `device.unknown`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How strongly the signal raises risk, in `0.0..=1.0`.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// What the layer observed, for the audit record.
    pub fn evidence(&self) -> &str {
        &self.evidence
    }
}
