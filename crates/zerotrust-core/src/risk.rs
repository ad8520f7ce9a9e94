//! From risk signals to a score and a trust level.
//!
//! # The combination
//!
//! Each [`RiskSignal`] has a weight `w` in `0..=1`, read as the probability that the signal alone
//! means the request is hostile. Signals are combined as independent evidence (noisy-or):
//!
//! ```text
//! score = 1 - (1 - w1) * (1 - w2) * ... * (1 - wn)
//! ```
//!
//! so the score stays in `0..=1`, never falls when a signal is added, reaches 1 only with a signal
//! of weight 1, and two moderate signals add up to more than either. No signals: score 0.
//! A [`RiskModel`] may override the weight of any signal by name (to tune a deployment without
//! touching the layers).
//!
//! # The trust level
//!
//! The score is mapped to a [`TrustLevel`] by [`TrustThresholds`] (score at most `verified_max` →
//! `Verified`, at most `high_max` → `High`, and so on). Then two caps apply, because a low score
//! proves little when nothing was verified:
//! - without a verified identity the level is at most [`TrustLevel::Low`];
//! - `Verified` also needs a device bound cryptographically (a signed posture assertion or a client
//!   certificate); otherwise the level is at most [`TrustLevel::High`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use crate::RiskSignal;

/// How far a request is trusted, from `Untrusted` to `Verified`. Ordered: `Low < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrustLevel {
    /// Risk too high, or nothing verified.
    Untrusted,
    /// Some trust: an anonymous caller at best, or an identity with strong risk signals.
    Low,
    /// A verified identity with moderate risk.
    Medium,
    /// A verified identity with little risk.
    High,
    /// A verified identity on a cryptographically bound device, with almost no risk.
    Verified,
}

impl TrustLevel {
    /// The level's stable lower-case name, as written in audit records and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustLevel::Untrusted => "untrusted",
            TrustLevel::Low => "low",
            TrustLevel::Medium => "medium",
            TrustLevel::High => "high",
            TrustLevel::Verified => "verified",
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The highest score each trust level allows. A score above `low_max` is `Untrusted`.
///
/// Defaults: `verified_max` 0.05, `high_max` 0.2, `medium_max` 0.5, `low_max` 0.8.
///
/// ```
/// use zerotrust_core::{TrustLevel, TrustThresholds};
///
/// let t = TrustThresholds::default();
/// assert_eq!(t.level(0.0), TrustLevel::Verified);
/// assert_eq!(t.level(0.3), TrustLevel::Medium);
/// assert_eq!(t.level(0.81), TrustLevel::Untrusted);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrustThresholds {
    verified_max: f64,
    high_max: f64,
    medium_max: f64,
    low_max: f64,
}

/// Thresholds that are not in `0..=1` or not increasing.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("trust thresholds must satisfy 0 <= verified <= high <= medium <= low <= 1")]
pub struct InvalidThresholds;

impl Default for TrustThresholds {
    fn default() -> Self {
        Self {
            verified_max: 0.05,
            high_max: 0.2,
            medium_max: 0.5,
            low_max: 0.8,
        }
    }
}

impl TrustThresholds {
    /// Thresholds with the highest score allowed for each level; they must be in `0..=1` and
    /// non-decreasing from `verified_max` to `low_max`.
    ///
    /// ```
    /// use zerotrust_core::{TrustLevel, TrustThresholds};
    ///
    /// let strict = TrustThresholds::new(0.0, 0.1, 0.3, 0.6).unwrap();
    /// assert_eq!(strict.level(0.35), TrustLevel::Low);
    /// assert!(TrustThresholds::new(0.5, 0.1, 0.3, 0.6).is_err());
    /// ```
    pub fn new(
        verified_max: f64,
        high_max: f64,
        medium_max: f64,
        low_max: f64,
    ) -> Result<Self, InvalidThresholds> {
        let ordered = 0.0 <= verified_max
            && verified_max <= high_max
            && high_max <= medium_max
            && medium_max <= low_max
            && low_max <= 1.0;
        if ordered {
            Ok(Self {
                verified_max,
                high_max,
                medium_max,
                low_max,
            })
        } else {
            Err(InvalidThresholds)
        }
    }

    /// The level a score earns, before the caps of [`RiskModel`]. A NaN score is `Untrusted`.
    pub fn level(&self, score: f64) -> TrustLevel {
        if score <= self.verified_max {
            TrustLevel::Verified
        } else if score <= self.high_max {
            TrustLevel::High
        } else if score <= self.medium_max {
            TrustLevel::Medium
        } else if score <= self.low_max {
            TrustLevel::Low
        } else {
            TrustLevel::Untrusted
        }
    }
}

/// A request's risk: the score, the trust level, and the signals behind them, strongest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskAssessment {
    /// The combined score in `0..=1`.
    pub score: f64,
    /// The trust level the score, identity and device earn.
    pub trust_level: TrustLevel,
    /// The signals with their effective weights, strongest first.
    pub reasons: Vec<RiskSignal>,
}

/// How signals become a score and a trust level: the thresholds and per-signal weight overrides.
/// See the [module docs](self) for the formula and the caps.
///
/// ```
/// use zerotrust_core::{RiskModel, RiskSignal, TrustThresholds};
///
/// let model = RiskModel::new(TrustThresholds::default())
///     .with_weight("time.outside_hours", 0.0); // this deployment runs around the clock
/// let signals = [RiskSignal::new("time.outside_hours", 0.2, "02:00 UTC")];
/// assert_eq!(model.score(&signals), 0.0);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RiskModel {
    thresholds: TrustThresholds,
    weights: HashMap<Cow<'static, str>, f64>,
}

impl RiskModel {
    /// A model with these thresholds and the layers' own weights.
    pub fn new(thresholds: TrustThresholds) -> Self {
        Self {
            thresholds,
            weights: HashMap::new(),
        }
    }

    /// The default model, shared.
    pub fn default_ref() -> &'static RiskModel {
        static DEFAULT: OnceLock<RiskModel> = OnceLock::new();
        DEFAULT.get_or_init(RiskModel::default)
    }

    /// Uses `weight` (clamped into `0..=1`; NaN counts as 1) for every signal named `name`,
    /// whatever weight the layer gave it.
    pub fn with_weight(mut self, name: impl Into<Cow<'static, str>>, weight: f64) -> Self {
        let weight = if weight.is_nan() {
            1.0
        } else {
            weight.clamp(0.0, 1.0)
        };
        self.weights.insert(name.into(), weight);
        self
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &TrustThresholds {
        &self.thresholds
    }

    /// The weight this model gives `signal`.
    pub fn weight(&self, signal: &RiskSignal) -> f64 {
        if self.weights.is_empty() {
            return signal.weight();
        }
        self.weights
            .get(signal.name())
            .copied()
            .unwrap_or(signal.weight())
    }

    /// The noisy-or score of `signals`.
    pub fn score(&self, signals: &[RiskSignal]) -> f64 {
        let keep = signals
            .iter()
            .fold(1.0, |keep, s| keep * (1.0 - self.weight(s)));
        (1.0 - keep).clamp(0.0, 1.0)
    }

    /// The trust level for a score, with the caps for a missing identity and a device that is not
    /// cryptographically bound.
    pub fn level(&self, score: f64, identified: bool, device_bound: bool) -> TrustLevel {
        let level = self.thresholds.level(score);
        let cap = match (identified, device_bound) {
            (false, _) => TrustLevel::Low,
            (true, false) => TrustLevel::High,
            (true, true) => TrustLevel::Verified,
        };
        level.min(cap)
    }

    /// Score, level and reasons for a request's signals.
    pub fn assess(
        &self,
        signals: &[RiskSignal],
        identified: bool,
        device_bound: bool,
    ) -> RiskAssessment {
        let score = self.score(signals);
        let mut reasons: Vec<RiskSignal> = signals
            .iter()
            .map(|s| {
                let w = self.weight(s);
                if w == s.weight() {
                    s.clone()
                } else {
                    RiskSignal::new(s.name().to_owned(), w, s.evidence().to_owned())
                }
            })
            .collect();
        reasons.sort_by(|a, b| b.weight().total_cmp(&a.weight()));
        RiskAssessment {
            score,
            trust_level: self.level(score, identified, device_bound),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(w: f64) -> RiskSignal {
        RiskSignal::new("s", w, "")
    }

    #[test]
    fn no_signals_score_zero_and_one_signal_scores_its_weight() {
        let m = RiskModel::default();
        assert_eq!(m.score(&[]), 0.0);
        assert!((m.score(&[sig(0.3)]) - 0.3).abs() < 1e-12);
    }

    #[test]
    fn adding_a_signal_never_lowers_the_score_and_one_certain_signal_is_certain() {
        let m = RiskModel::default();
        let mut signals = vec![];
        let mut last = 0.0;
        for w in [0.1, 0.0, 0.5, 0.2, 0.9] {
            signals.push(sig(w));
            let s = m.score(&signals);
            assert!(s >= last && s <= 1.0);
            last = s;
        }
        signals.push(sig(1.0));
        assert_eq!(m.score(&signals), 1.0);
    }

    #[test]
    fn anonymous_requests_are_never_above_low_and_unbound_devices_never_verified() {
        let m = RiskModel::default();
        assert_eq!(m.level(0.0, false, true), TrustLevel::Low);
        assert_eq!(m.level(0.0, true, false), TrustLevel::High);
        assert_eq!(m.level(0.0, true, true), TrustLevel::Verified);
        assert_eq!(m.level(0.9, true, true), TrustLevel::Untrusted);
    }

    #[test]
    fn nan_score_is_untrusted() {
        assert_eq!(
            TrustThresholds::default().level(f64::NAN),
            TrustLevel::Untrusted
        );
    }

    #[test]
    fn overrides_change_the_weight_and_show_in_the_reasons() {
        let m = RiskModel::default().with_weight("device.new", 0.5);
        let a = m.assess(
            &[RiskSignal::new("device.new", 0.1, "d1"), sig(0.2)],
            true,
            false,
        );
        assert_eq!(a.reasons[0].name(), "device.new");
        assert_eq!(a.reasons[0].weight(), 0.5);
        assert!((a.score - 0.6).abs() < 1e-12);
    }
}
