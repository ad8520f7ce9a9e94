//! The last place each subject was seen, for impossible-travel checks across requests (and, with
//! a shared store, across replicas).

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::sync::Cache;

use crate::geo::{CountryCode, GeoPoint};
use crate::revocation::StoreFuture;

/// Where and when a subject was seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sighting {
    /// When, in seconds since the Unix epoch.
    pub at: i64,
    /// Where (a city's coordinates, or a country's centroid).
    pub point: GeoPoint,
    /// How far, in kilometres, the subject may have been from `point`.
    pub accuracy_km: f64,
    /// The country, when known.
    pub country: Option<CountryCode>,
    /// The client address seen.
    pub ip: IpAddr,
}

/// The last [`Sighting`] of each subject.
///
/// One operation does the work: [`swap`](LocationHistory::swap) stores the new sighting and answers
/// the previous one, atomically, so two requests racing on two replicas each compare against a real
/// earlier sighting and none is lost. Entries may be forgotten after a retention period (a
/// sighting older than a day cannot make travel impossible).
///
/// Implementations: [`MemoryLocationHistory`] here; a Redis store in `zerotrust-redis`. All pass
/// `zerotrust_testkit::location_history_tests!`.
pub trait LocationHistory: Send + Sync + 'static {
    /// The subject's last sighting, if any.
    fn last<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Option<Sighting>>;
    /// Records `sighting` as the subject's last and answers the one it replaces. A sighting older
    /// than the stored one is not stored (requests finish out of order), but the stored one is
    /// still answered.
    fn swap<'a>(
        &'a self,
        subject: &'a str,
        sighting: Sighting,
    ) -> StoreFuture<'a, Option<Sighting>>;
}

impl<H: LocationHistory + ?Sized> LocationHistory for Arc<H> {
    fn last<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Option<Sighting>> {
        (**self).last(subject)
    }

    fn swap<'a>(
        &'a self,
        subject: &'a str,
        sighting: Sighting,
    ) -> StoreFuture<'a, Option<Sighting>> {
        (**self).swap(subject, sighting)
    }
}

/// Last sightings held in this process, bounded in number and forgotten after a retention period
/// without sightings.
///
/// Each subject's slot is a small mutex inside a moka cache: a swap is one cache lookup and one
/// uncontended lock (held for a copy, never across an `.await`), several times cheaper than
/// moka's atomic compute on every request.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use zerotrust_core::geo::GeoPoint;
/// use zerotrust_core::{LocationHistory, MemoryLocationHistory, Sighting};
///
/// let history = MemoryLocationHistory::new();
/// let seen = Sighting {
///     at: 1_900_000_000,
///     point: GeoPoint::new(52.52, 13.40).unwrap(),
///     accuracy_km: 20.0,
///     country: None,
///     ip: "192.0.2.1".parse().unwrap(),
/// };
/// assert_eq!(history.swap("alice", seen).await.unwrap(), None);
/// assert_eq!(history.last("alice").await.unwrap(), Some(seen));
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryLocationHistory {
    entries: Cache<String, Arc<Mutex<Option<Sighting>>>>,
}

impl std::fmt::Debug for MemoryLocationHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLocationHistory")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl Default for MemoryLocationHistory {
    fn default() -> Self {
        Self::with_limits(1_000_000, Duration::from_secs(24 * 3600))
    }
}

impl MemoryLocationHistory {
    /// Up to 1,000,000 subjects, each forgotten a day after its last sighting.
    pub fn new() -> Self {
        Self::default()
    }

    /// Up to `max_subjects` subjects, each forgotten `retention` after its last sighting.
    pub fn with_limits(max_subjects: u64, retention: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_subjects)
                .time_to_idle(retention)
                .build(),
        }
    }

    /// The subject's last sighting, without going through a future.
    pub fn get(&self, subject: &str) -> Option<Sighting> {
        let slot = self.entries.get(subject)?;
        let guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// Stores `sighting` unless a later one is stored; answers the previous one.
    pub fn replace(&self, subject: &str, sighting: Sighting) -> Option<Sighting> {
        let slot = self
            .entries
            .get_with_by_ref(subject, || Arc::new(Mutex::new(None)));
        // A panic elsewhere while holding the lock cannot leave a torn `Sighting` (it is `Copy`
        // and written in one assignment), so a poisoned lock is still usable.
        let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = *guard;
        match previous {
            Some(stored) if stored.at > sighting.at => {}
            _ => *guard = Some(sighting),
        }
        previous
    }
}

impl LocationHistory for MemoryLocationHistory {
    fn last<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(std::future::ready(Ok(self.get(subject))))
    }

    fn swap<'a>(
        &'a self,
        subject: &'a str,
        sighting: Sighting,
    ) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(std::future::ready(Ok(self.replace(subject, sighting))))
    }
}
