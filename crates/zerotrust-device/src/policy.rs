//! The posture policy: which facts a device must report, and what a failure costs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use zerotrust_core::{Posture, PostureRule};

/// What breaking a rule does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleAction {
    /// Refuse the request: 403 with reason `device.noncompliant.<rule>`.
    Block,
    /// Add the `device.noncompliant` signal with this weight (`0..=1`).
    Signal(f64),
}

/// The posture a device must have, declared once and evaluated on every request.
///
/// A fact the device does not report still breaks the rule that needs it (a device that cannot
/// show its disk is encrypted never passes as one that is), but a blocking rule broken only for
/// want of a report gives the `device.noncompliant` signal with weight 0.3 instead of a 403, so
/// that devices known only by id (no posture yet) can still be weighed by the decision layer.
/// [`block_unreported_posture`](PosturePolicyBuilder::block_unreported_posture) makes those
/// refusals too.
///
/// [`PosturePolicy::default`], used when the layer is given no policy: jailbroken or rooted devices are blocked, disk encryption
/// is required (signal 0.4), and a posture report older than 24 hours is stale (signal 0.2).
/// EDR and minimum OS versions are checked only when declared.
///
/// ```
/// use std::time::Duration;
/// use zerotrust_core::PostureRule;
/// use zerotrust_device::{PosturePolicy, RuleAction};
///
/// let policy = PosturePolicy::builder()
///     .min_os_version("macos", "14.4")
///     .min_os_version("ios", "17.2")
///     .require_disk_encryption(RuleAction::Block)
///     .require_edr(RuleAction::Signal(0.5))
///     .block_jailbroken()
///     .max_posture_age(Duration::from_secs(3600), RuleAction::Signal(0.3))
///     .build();
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
pub struct PosturePolicy {
    min_os: HashMap<String, (Vec<u64>, String)>,
    os_action: Option<RuleAction>,
    unlisted_platforms_allowed: bool,
    encryption: Option<RuleAction>,
    edr: Option<RuleAction>,
    jailbreak: Option<RuleAction>,
    max_age: Option<(u64, RuleAction)>,
    unreported: RuleAction,
}

impl Default for PosturePolicy {
    fn default() -> Self {
        Self {
            min_os: HashMap::new(),
            os_action: None,
            unlisted_platforms_allowed: false,
            encryption: Some(RuleAction::Signal(0.4)),
            edr: None,
            jailbreak: Some(RuleAction::Block),
            max_age: Some((24 * 3600, RuleAction::Signal(0.2))),
            unreported: RuleAction::Signal(0.3),
        }
    }
}

/// One broken rule and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The rule.
    pub rule: PostureRule,
    /// Its action.
    pub action: RuleAction,
    /// What was found, for the signal's evidence (never a secret). Fixed text for the common
    /// findings (nothing allocated per request), formatted when it names reported values.
    pub detail: Cow<'static, str>,
    /// Whether the device reported the fact (`false`: broken for want of a report).
    pub reported: bool,
}

impl PosturePolicy {
    /// A policy with nothing declared yet; unlike [`PosturePolicy::default`] it checks nothing
    /// until rules are added.
    pub fn builder() -> PosturePolicyBuilder {
        PosturePolicyBuilder {
            policy: PosturePolicy {
                min_os: HashMap::new(),
                os_action: None,
                unlisted_platforms_allowed: false,
                encryption: None,
                edr: None,
                jailbreak: None,
                max_age: None,
                unreported: RuleAction::Signal(0.3),
            },
        }
    }

    /// The rules `posture` breaks at `now` (seconds since the epoch).
    pub fn evaluate(&self, posture: &Posture, now: i64) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut push = |rule, action, reported: bool, detail: Cow<'static, str>| {
            let action = match action {
                RuleAction::Block if !reported => self.unreported,
                action => action,
            };
            out.push(Violation {
                rule,
                action,
                detail,
                reported,
            });
        };
        if let Some(action) = self.os_action
            && let Some((reported, detail)) = self.os_problem(posture)
        {
            push(PostureRule::OsVersion, action, reported, detail);
        }
        if let Some(action) = self.encryption
            && posture.disk_encrypted != Some(true)
        {
            let detail = fact(
                posture.disk_encrypted,
                "disk encryption off",
                "disk encryption not reported",
            );
            push(
                PostureRule::DiskEncryption,
                action,
                posture.disk_encrypted.is_some(),
                detail,
            );
        }
        if let Some(action) = self.edr
            && posture.edr_running != Some(true)
        {
            let detail = fact(
                posture.edr_running,
                "EDR agent not running",
                "EDR agent not reported",
            );
            push(
                PostureRule::Edr,
                action,
                posture.edr_running.is_some(),
                detail,
            );
        }
        if let Some(action) = self.jailbreak
            && posture.jailbroken != Some(false)
        {
            let detail = match posture.jailbroken {
                Some(_) => Cow::Borrowed("device is jailbroken or rooted"),
                None => Cow::Borrowed("jailbreak status not reported"),
            };
            push(
                PostureRule::Jailbroken,
                action,
                posture.jailbroken.is_some(),
                detail,
            );
        }
        if let Some((max_age, action)) = self.max_age {
            let limit = i64::try_from(max_age).unwrap_or(i64::MAX);
            match posture.reported_at {
                Some(at) if now.saturating_sub(at) > limit => push(
                    PostureRule::PostureAge,
                    action,
                    true,
                    Cow::Owned(format!(
                        "posture reported {} s ago (max {max_age} s)",
                        now.saturating_sub(at)
                    )),
                ),
                Some(_) => {}
                None => push(
                    PostureRule::PostureAge,
                    action,
                    false,
                    Cow::Borrowed("posture never reported"),
                ),
            }
        }
        out
    }

    /// `(whether the facts were reported, what is wrong)` when the OS rule is broken.
    fn os_problem(&self, posture: &Posture) -> Option<(bool, Cow<'static, str>)> {
        let Some(platform) = posture.platform.as_deref() else {
            return Some((false, Cow::Borrowed("platform not reported")));
        };
        let platform = platform.to_ascii_lowercase();
        let Some((min, min_text)) = self.min_os.get(platform.as_str()) else {
            return (!self.unlisted_platforms_allowed).then(|| {
                (
                    true,
                    Cow::Owned(format!("platform {} is not allowed", printable(&platform))),
                )
            });
        };
        let Some(version) = posture.os_version.as_deref() else {
            return Some((
                false,
                Cow::Owned(format!("{} version not reported", printable(&platform))),
            ));
        };
        match at_least(version, min) {
            Some(true) => None,
            Some(false) => Some((
                true,
                Cow::Owned(format!(
                    "{} {} is below {min_text}",
                    printable(&platform),
                    printable(version)
                )),
            )),
            None => Some((
                true,
                Cow::Owned(format!(
                    "{} version {} cannot be read",
                    printable(&platform),
                    printable(version)
                )),
            )),
        }
    }
}

/// The detail of a broken yes/no rule: `bad` when the device reported the fact, else `unreported`.
fn fact(value: Option<bool>, bad: &'static str, unreported: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(if value.is_some() { bad } else { unreported })
}

/// Device-reported text in evidence: at most 32 printable ASCII characters.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect()
}

/// Parses a dotted version into its numbers (`"17.4.1"` → `[17, 4, 1]`); `None` for anything
/// else. A suffix after the numbers (`"14.2.1 (23C71)"`, `"10.0.19045-beta"`) is ignored.
pub(crate) fn parse_version(v: &str) -> Option<Vec<u64>> {
    let numeric = v
        .trim()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()?;
    let parts: Option<Vec<u64>> = numeric
        .split('.')
        .map(|p| if p.is_empty() { None } else { p.parse().ok() })
        .collect();
    parts.filter(|p| !p.is_empty() && p.len() <= 8)
}

/// Whether `version` is at least `min`, comparing component by component with missing
/// components as zero (`17.4` = `17.4.0`). `None` if `version` cannot be read.
fn at_least(version: &str, min: &[u64]) -> Option<bool> {
    let v = parse_version(version)?;
    let len = v.len().max(min.len());
    for i in 0..len {
        let a = v.get(i).copied().unwrap_or(0);
        let b = min.get(i).copied().unwrap_or(0);
        if a != b {
            return Some(a > b);
        }
    }
    Some(true)
}

/// Builds a [`PosturePolicy`].
#[derive(Debug, Clone)]
pub struct PosturePolicyBuilder {
    policy: PosturePolicy,
}

/// A minimum OS version that is not a dotted version number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("minimum OS version {0:?} is not a dotted version number")]
pub struct InvalidVersion(pub String);

impl PosturePolicyBuilder {
    /// Requires at least `version` on `platform` (case-insensitive). Once any minimum is declared,
    /// a platform with no minimum is not allowed (see
    /// [`allow_unlisted_platforms`](Self::allow_unlisted_platforms)). Breaking it is blocking
    /// unless [`os_version_action`](Self::os_version_action) says otherwise.
    ///
    /// # Panics
    ///
    /// At configuration time, if `version` is not a dotted number such as `17.4` (use
    /// [`try_min_os_version`](Self::try_min_os_version) for versions read from a file).
    ///
    /// ```
    /// let policy = zerotrust_device::PosturePolicy::builder().min_os_version("windows", "10.0.19045").build();
    /// # let _ = policy;
    /// ```
    #[allow(clippy::panic)]
    pub fn min_os_version(self, platform: &str, version: &str) -> Self {
        match self.try_min_os_version(platform, version) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`min_os_version`](Self::min_os_version), with an error instead of a panic.
    ///
    /// ```
    /// let b = zerotrust_device::PosturePolicy::builder();
    /// assert!(b.try_min_os_version("macos", "fourteen").is_err());
    /// ```
    pub fn try_min_os_version(
        mut self,
        platform: &str,
        version: &str,
    ) -> Result<Self, InvalidVersion> {
        let parsed = parse_version(version).ok_or_else(|| InvalidVersion(version.to_owned()))?;
        self.policy.min_os.insert(
            platform.to_ascii_lowercase(),
            (parsed, version.trim().to_owned()),
        );
        self.policy.os_action.get_or_insert(RuleAction::Block);
        Ok(self)
    }

    /// What breaking an OS minimum does (default: block).
    ///
    /// ```
    /// use zerotrust_device::{PosturePolicy, RuleAction};
    /// let policy = PosturePolicy::builder()
    ///     .min_os_version("android", "14")
    ///     .os_version_action(RuleAction::Signal(0.5))
    ///     .build();
    /// # let _ = policy;
    /// ```
    pub fn os_version_action(mut self, action: RuleAction) -> Self {
        self.policy.os_action = Some(action);
        self
    }

    /// Lets platforms without a declared minimum pass the OS rule.
    ///
    /// # Warning
    ///
    /// Any device that reports an unlisted platform name then passes the OS check, whatever its
    /// version.
    ///
    /// ```
    /// let policy = zerotrust_device::PosturePolicy::builder()
    ///     .min_os_version("ios", "17")
    ///     .allow_unlisted_platforms()
    ///     .build();
    /// # let _ = policy;
    /// ```
    pub fn allow_unlisted_platforms(mut self) -> Self {
        self.policy.unlisted_platforms_allowed = true;
        self
    }

    /// Requires disk encryption.
    ///
    /// ```
    /// use zerotrust_device::{PosturePolicy, RuleAction};
    /// let policy = PosturePolicy::builder().require_disk_encryption(RuleAction::Block).build();
    /// # let _ = policy;
    /// ```
    pub fn require_disk_encryption(mut self, action: RuleAction) -> Self {
        self.policy.encryption = Some(action);
        self
    }

    /// Requires a running EDR agent.
    ///
    /// ```
    /// use zerotrust_device::{PosturePolicy, RuleAction};
    /// let policy = PosturePolicy::builder().require_edr(RuleAction::Signal(0.5)).build();
    /// # let _ = policy;
    /// ```
    pub fn require_edr(mut self, action: RuleAction) -> Self {
        self.policy.edr = Some(action);
        self
    }

    /// Refuses jailbroken or rooted devices, and devices that do not say (403).
    ///
    /// ```
    /// let policy = zerotrust_device::PosturePolicy::builder().block_jailbroken().build();
    /// # let _ = policy;
    /// ```
    pub fn block_jailbroken(mut self) -> Self {
        self.policy.jailbreak = Some(RuleAction::Block);
        self
    }

    /// Treats jailbroken or rooted devices (and devices that do not say) with `action`.
    ///
    /// ```
    /// use zerotrust_device::{PosturePolicy, RuleAction};
    /// let policy = PosturePolicy::builder().jailbroken(RuleAction::Signal(0.8)).build();
    /// # let _ = policy;
    /// ```
    pub fn jailbroken(mut self, action: RuleAction) -> Self {
        self.policy.jailbreak = Some(action);
        self
    }

    /// A posture report older than `max_age` (or with no time) breaks the posture-age rule.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_device::{PosturePolicy, RuleAction};
    /// let policy = PosturePolicy::builder()
    ///     .max_posture_age(Duration::from_secs(4 * 3600), RuleAction::Signal(0.3))
    ///     .build();
    /// # let _ = policy;
    /// ```
    pub fn max_posture_age(mut self, max_age: Duration, action: RuleAction) -> Self {
        self.policy.max_age = Some((max_age.as_secs(), action));
        self
    }

    /// Refuses a request when a blocking rule is broken only because the device did not report
    /// the fact (by default that gives a `device.noncompliant` signal of weight 0.3).
    ///
    /// ```
    /// let policy = zerotrust_device::PosturePolicy::builder()
    ///     .block_jailbroken()
    ///     .block_unreported_posture()
    ///     .build();
    /// # let _ = policy;
    /// ```
    pub fn block_unreported_posture(mut self) -> Self {
        self.policy.unreported = RuleAction::Block;
        self
    }

    /// What a blocking rule broken for want of a report does (default `Signal(0.3)`).
    ///
    /// ```
    /// use zerotrust_device::{PosturePolicy, RuleAction};
    /// let policy = PosturePolicy::builder().unreported_posture(RuleAction::Signal(0.5)).build();
    /// # let _ = policy;
    /// ```
    pub fn unreported_posture(mut self, action: RuleAction) -> Self {
        self.policy.unreported = action;
        self
    }

    /// The policy.
    pub fn build(self) -> PosturePolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(version: &str) -> Posture {
        Posture {
            platform: Some("macOS".into()),
            os_version: Some(version.into()),
            disk_encrypted: Some(true),
            edr_running: Some(true),
            jailbroken: Some(false),
            reported_at: Some(1000),
        }
    }

    #[test]
    fn versions_compare_by_number_not_by_text() {
        assert_eq!(at_least("14.10", &[14, 9]), Some(true));
        assert_eq!(at_least("14.2.1", &[14, 2, 1]), Some(true));
        assert_eq!(at_least("14.2", &[14, 2, 1]), Some(false));
        assert_eq!(at_least("9.9", &[10]), Some(false));
        assert_eq!(at_least("14.2.1 (23C71)", &[14, 2]), Some(true));
        assert_eq!(at_least("fourteen", &[14]), None);
        assert_eq!(at_least("14..1", &[14]), None);
        assert_eq!(at_least("", &[14]), None);
    }

    #[test]
    fn a_compliant_device_breaks_nothing() {
        let p = PosturePolicy::builder()
            .min_os_version("macos", "14.4")
            .require_disk_encryption(RuleAction::Block)
            .require_edr(RuleAction::Block)
            .block_jailbroken()
            .max_posture_age(Duration::from_secs(60), RuleAction::Block)
            .build();
        assert!(p.evaluate(&mac("14.4.1"), 1030).is_empty());
    }

    #[test]
    fn missing_facts_break_the_rules_that_need_them() {
        let p = PosturePolicy::builder()
            .min_os_version("macos", "14")
            .require_disk_encryption(RuleAction::Signal(0.4))
            .require_edr(RuleAction::Signal(0.4))
            .block_jailbroken()
            .max_posture_age(Duration::from_secs(60), RuleAction::Signal(0.1))
            .build();
        let rules: Vec<_> = p
            .evaluate(&Posture::default(), 1000)
            .into_iter()
            .map(|v| v.rule)
            .collect();
        assert_eq!(
            rules,
            vec![
                PostureRule::OsVersion,
                PostureRule::DiskEncryption,
                PostureRule::Edr,
                PostureRule::Jailbroken,
                PostureRule::PostureAge
            ]
        );
    }

    #[test]
    fn unlisted_platforms_fail_unless_allowed() {
        let strict = PosturePolicy::builder().min_os_version("ios", "17").build();
        let v = strict.evaluate(&mac("14"), 1000);
        assert_eq!(v[0].detail, "platform macos is not allowed");
        let relaxed = PosturePolicy::builder()
            .min_os_version("ios", "17")
            .allow_unlisted_platforms()
            .build();
        assert!(relaxed.evaluate(&mac("14"), 1000).is_empty());
    }

    #[test]
    fn a_blocking_rule_broken_for_want_of_a_report_signals_unless_told_to_block() {
        let lenient = PosturePolicy::builder().block_jailbroken().build();
        let v = lenient.evaluate(&Posture::default(), 0);
        assert_eq!(v[0].action, RuleAction::Signal(0.3));
        assert!(!v[0].reported);
        let known_bad = Posture {
            jailbroken: Some(true),
            ..Posture::default()
        };
        assert_eq!(lenient.evaluate(&known_bad, 0)[0].action, RuleAction::Block);
        let strict = PosturePolicy::builder()
            .block_jailbroken()
            .block_unreported_posture()
            .build();
        assert_eq!(
            strict.evaluate(&Posture::default(), 0)[0].action,
            RuleAction::Block
        );
    }

    #[test]
    fn stale_posture_is_reported_with_its_age() {
        let p = PosturePolicy::builder()
            .max_posture_age(Duration::from_secs(60), RuleAction::Signal(0.2))
            .build();
        let v = p.evaluate(&mac("14"), 1100);
        assert_eq!(v[0].rule, PostureRule::PostureAge);
        assert_eq!(v[0].detail, "posture reported 100 s ago (max 60 s)");
    }
}
