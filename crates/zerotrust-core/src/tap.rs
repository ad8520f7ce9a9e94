//! What an outer audit layer learns about a request the checking layers let through.
//!
//! A refused request is easy to audit: its [`Rejection`](crate::Rejection) puts the
//! [`ZeroTrust`] context into the response extensions. An allowed request is harder: its context
//! travels inward with the request and is gone (dropped with the request, or moved into a handler)
//! by the time the response comes back out. So the audit layer puts an [`AuditTap`] into the
//! request extensions, and every checking layer calls [`note_pass`] as it passes the request
//! inward: the tap keeps the latest snapshot of the context and the instant each layer passed it,
//! which gives the audit record its fields and every layer's latency.
//!
//! Without an audit layer there is no tap and [`note_pass`] costs one extension lookup.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http::Request;

use crate::ZeroTrust;

/// The most layer passes a tap keeps; later ones are counted but not timed.
pub const MAX_PASSES: usize = 8;

/// One checking layer letting a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPass {
    /// The layer, such as `jwt`.
    pub layer: &'static str,
    /// When it passed the request inward.
    pub at: Instant,
}

/// A request's audit tap: shared between the audit layer (which created it) and the checking
/// layers inside it (which find it in the request extensions).
///
/// ```
/// use zerotrust_core::tap::{AuditTap, note_pass};
/// use zerotrust_core::{RiskSignal, ZeroTrust};
///
/// let tap = AuditTap::new();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(tap.clone());
/// ZeroTrust::get_or_insert(req.extensions_mut())
///     .add_signal(RiskSignal::new("device.new", 0.3, "first sight"));
/// note_pass("device", &req);
///
/// let seen = tap.take();
/// assert_eq!(seen.passes()[0].layer, "device");
/// assert_eq!(seen.context.unwrap().signals().len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AuditTap(Arc<Mutex<Seen>>);

/// What a tap holds: the context as the innermost layer passed it, and every layer's pass.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Seen {
    /// The context as the last (innermost) layer passed the request on.
    pub context: Option<ZeroTrust>,
    // Inline, not a `Vec`: no allocation per request.
    passes: [LayerPass; MAX_PASSES],
    len: usize,
}

impl Default for Seen {
    fn default() -> Self {
        let unused = LayerPass {
            layer: "",
            at: Instant::now(),
        };
        Self {
            context: None,
            passes: [unused; MAX_PASSES],
            len: 0,
        }
    }
}

impl Seen {
    /// The layers that passed the request, outermost first (at most [`MAX_PASSES`]).
    pub fn passes(&self) -> &[LayerPass] {
        self.passes.get(..self.len).unwrap_or_default()
    }
}

impl AuditTap {
    /// An empty tap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes what the layers left, leaving the tap empty.
    pub fn take(&self) -> Seen {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = Seen {
            context: seen.context.take(),
            passes: seen.passes,
            len: seen.len,
        };
        seen.len = 0;
        taken
    }

    fn record(&self, layer: &'static str, context: Option<&ZeroTrust>) {
        let at = Instant::now();
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = &mut *guard;
        if let Some(slot) = seen.passes.get_mut(seen.len) {
            *slot = LayerPass { layer, at };
            seen.len += 1;
        }
        // A reference count, not a copy: the context is shared until the next layer changes it
        // (and `ZeroTrust::get_or_insert_to_pass` then calls `release` first).
        seen.context = context.cloned();
    }

    /// Gives up the snapshot if it is `zt` unchanged, so the layer about to change `zt` and pass
    /// the request in the same synchronous step can change it in place (see
    /// `ZeroTrust::get_or_insert_to_pass`).
    pub(crate) fn release(&self, zt: &ZeroTrust) {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if seen
            .context
            .as_ref()
            .is_some_and(|snapshot| snapshot.same_as(zt))
        {
            seen.context = None;
        }
    }
}

/// Called by a checking layer as it passes `req` inward: if an audit layer is outside, records
/// the pass and a snapshot of the request's context. Costs one extension lookup otherwise.
pub fn note_pass<B>(layer: &'static str, req: &Request<B>) {
    if let Some(tap) = req.extensions().get::<AuditTap>() {
        tap.record(layer, req.extensions().get::<ZeroTrust>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RiskSignal;

    #[test]
    fn the_innermost_snapshot_wins_and_every_pass_is_timed_in_order() {
        let tap = AuditTap::new();
        let mut req = Request::new(());
        req.extensions_mut().insert(tap.clone());
        note_pass("jwt", &req);
        ZeroTrust::get_or_insert(req.extensions_mut()).add_signal(RiskSignal::new("a", 0.1, ""));
        note_pass("geo", &req);
        let seen = tap.take();
        assert_eq!(seen.context.as_ref().map(|zt| zt.signals().len()), Some(1));
        let layers: Vec<_> = seen.passes().iter().map(|p| p.layer).collect();
        assert_eq!(layers, ["jwt", "geo"]);
        assert!(seen.passes()[0].at <= seen.passes()[1].at);
        assert!(tap.take().passes().is_empty(), "take empties the tap");
    }

    #[test]
    fn passes_beyond_the_limit_are_not_kept() {
        let tap = AuditTap::new();
        let mut req = Request::new(());
        req.extensions_mut().insert(tap.clone());
        for _ in 0..MAX_PASSES + 3 {
            note_pass("x", &req);
        }
        assert_eq!(tap.take().passes().len(), MAX_PASSES);
    }

    #[test]
    fn the_snapshot_is_the_context_as_passed_and_changes_after_do_not_reach_it() {
        use crate::{DeviceAssessment, DeviceBinding, DeviceStatus, Identity, Posture};
        let tap = AuditTap::new();
        let mut req = Request::new(());
        req.extensions_mut().insert(tap.clone());
        note_pass("outer", &req);
        let zt = ZeroTrust::get_or_insert(req.extensions_mut());
        zt.set_identity(Arc::new(Identity::new("alice", "https://idp", 1)));
        zt.add_signal(RiskSignal::new("a", 0.1, "first"));
        note_pass("jwt", &req);
        let zt = ZeroTrust::get_or_insert(req.extensions_mut());
        zt.add_signal(RiskSignal::new("b", 0.2, "second"));
        zt.set_device(DeviceAssessment {
            device_id: Arc::from("d-1"),
            binding: DeviceBinding::Header,
            status: DeviceStatus::Known,
            owned_by_subject: true,
            posture: Posture::default(),
            violations: Vec::new(),
        });
        note_pass("device", &req);
        let seen = tap.take();
        let snapshot = seen.context.unwrap();
        let current = req.extensions().get::<ZeroTrust>().unwrap();
        assert_eq!(format!("{snapshot:?}"), format!("{current:?}"));

        // A change made without `get_or_insert` (a handler's own copy, say) is copied on write:
        // the snapshot keeps what was passed.
        note_pass("stepup", &req);
        let mut copy = req.extensions().get::<ZeroTrust>().unwrap().clone();
        copy.add_signal(RiskSignal::new("c", 0.3, "later"));
        let snapshot = tap.take().context.unwrap();
        assert_eq!(snapshot.signals().len(), 2);
        assert_eq!(copy.signals().len(), 3);
    }

    #[test]
    fn a_layer_changing_the_context_takes_it_back_from_the_tap_without_a_copy() {
        let tap = AuditTap::new();
        let mut req = Request::new(());
        req.extensions_mut().insert(tap.clone());
        ZeroTrust::get_or_insert(req.extensions_mut()).add_signal(RiskSignal::new("a", 0.1, ""));
        note_pass("jwt", &req);
        let before: *const ZeroTrust = req.extensions().get::<ZeroTrust>().unwrap();
        let passed = tap.0.lock().unwrap().context.clone().unwrap();
        assert!(passed.same_as(req.extensions().get::<ZeroTrust>().unwrap()));
        drop(passed);
        // The next layer changes it and passes: the tap gives the snapshot up, the change is in
        // place.
        ZeroTrust::get_or_insert_to_pass(req.extensions_mut())
            .add_signal(RiskSignal::new("b", 0.2, ""));
        assert!(tap.0.lock().unwrap().context.is_none());
        let after: *const ZeroTrust = req.extensions().get::<ZeroTrust>().unwrap();
        assert_eq!(before, after);
        note_pass("device", &req);
        assert_eq!(tap.take().context.unwrap().signals().len(), 2);
    }

    #[test]
    fn a_change_made_before_an_await_leaves_the_last_snapshot_in_the_tap() {
        let tap = AuditTap::new();
        let mut req = Request::new(());
        req.extensions_mut().insert(tap.clone());
        ZeroTrust::get_or_insert(req.extensions_mut())
            .set_identity(Arc::new(crate::Identity::new("alice", "https://idp", 1)));
        note_pass("jwt", &req);
        // A layer adds a signal, then would wait for a store: the copy on write leaves the
        // snapshot of the last pass, so a request cancelled now is still audited with it.
        ZeroTrust::get_or_insert(req.extensions_mut()).add_signal(RiskSignal::new("a", 0.1, ""));
        let seen = tap.take().context.unwrap();
        assert_eq!(seen.subject(), Some("alice"));
        assert!(seen.signals().is_empty());
    }

    #[test]
    fn without_a_tap_nothing_happens() {
        note_pass("jwt", &Request::new(()));
    }
}
