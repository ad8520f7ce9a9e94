//! One test suite per state-store trait, run against every implementation (in memory here, Redis
//! in `zerotrust-redis`), the way tower-sessions' `route_tests!` runs one suite per store.
//!
//! Each macro expands to one `#[test]` per behaviour, each with a fresh store made by the
//! expression it is given. The expression is evaluated inside an async block, so it may `.await`:
//!
//! ```text
//! zerotrust_testkit::device_registry_tests!(zerotrust_core::MemoryDeviceRegistry::new());
//! zerotrust_testkit::location_history_tests!(RedisStores::connect(&url).await.unwrap().locations());
//! ```
//!
//! Ids and subjects are unique per run, so stores that share a server do not see each other's
//! entries.

// A test suite: failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Runs a suite function on a two-worker runtime, so concurrent cases really race, and fails it
/// after 30 seconds instead of hanging.
pub fn run<F: Future<Output = ()>>(test: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime");
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), test)
            .await
            .expect("store suite case timed out after 30 s");
    });
}

/// A name no other test, process or run uses: `prefix-<nanos>-<counter>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{nanos:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_suite {
    ($suite:ident, $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::store_suite::run(async {
                    let store = ::std::sync::Arc::new($make);
                    $crate::store_suite::$suite::$case(store).await;
                });
            }
        )+
    };
}

/// The [`RevocationStore`](zerotrust_core::RevocationStore) suite.
#[macro_export]
macro_rules! revocation_store_tests {
    ($make:expr) => {
        $crate::__store_suite!(revocation, $make;
            a_token_never_revoked_is_not_revoked,
            a_revoked_token_is_revoked_until_its_time_passes,
            a_revocation_already_past_is_not_held,
            a_shorter_revocation_never_shortens_a_longer_one,
            concurrent_revocations_are_all_kept,
        );
    };
}

/// The [`DeviceRegistry`](zerotrust_core::DeviceRegistry) suite.
#[macro_export]
macro_rules! device_registry_tests {
    ($make:expr) => {
        $crate::__store_suite!(device_registry, $make;
            an_unknown_device_is_none,
            a_registered_device_reads_back_with_every_field,
            registering_twice_keeps_the_first_record,
            concurrent_registrations_create_exactly_one_record,
            binding_an_owner_adds_it_once,
            posture_updates_replace_but_never_with_an_older_report,
            touch_moves_last_seen_forward_only,
            operations_on_unknown_devices_report_false,
            a_removed_device_is_unknown,
        );
    };
}

/// The [`LocationHistory`](zerotrust_core::LocationHistory) suite.
#[macro_export]
macro_rules! location_history_tests {
    ($make:expr) => {
        $crate::__store_suite!(location_history, $make;
            a_subject_never_seen_has_no_sighting,
            swap_answers_the_previous_sighting,
            an_older_sighting_never_replaces_a_newer_one,
            subjects_are_independent,
            concurrent_swaps_keep_the_latest,
        );
    };
}

/// The [`BehaviorStore`](zerotrust_core::BehaviorStore) suite.
#[macro_export]
macro_rules! behavior_store_tests {
    ($make:expr) => {
        $crate::__store_suite!(behavior, $make;
            requests_are_counted_per_window,
            failures_are_counted_per_window,
            distinct_sensitive_routes_are_counted_once,
            a_lockout_holds_until_its_time_and_is_never_shortened,
            behavior_subjects_are_independent,
            concurrent_failures_are_all_counted,
        );
    };
}

/// Cases of the revocation store suite.
pub mod revocation {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use zerotrust_core::RevocationStore;

    use super::unique;

    /// A jti nobody revoked is not revoked.
    pub async fn a_token_never_revoked_is_not_revoked<S: RevocationStore>(store: Arc<S>) {
        let jti = unique("jti");
        assert!(!store.is_revoked(&jti).await.unwrap());
    }

    /// A revocation holds until its time, then may be forgotten.
    pub async fn a_revoked_token_is_revoked_until_its_time_passes<S: RevocationStore>(
        store: Arc<S>,
    ) {
        let jti = unique("jti");
        let until = SystemTime::now() + Duration::from_millis(1200);
        store.revoke(&jti, until).await.unwrap();
        assert!(store.is_revoked(&jti).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!store.is_revoked(&jti).await.unwrap());
    }

    /// Revoking until a time already past holds nothing (the token is expired anyway).
    pub async fn a_revocation_already_past_is_not_held<S: RevocationStore>(store: Arc<S>) {
        let jti = unique("jti");
        store
            .revoke(&jti, SystemTime::now() - Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!store.is_revoked(&jti).await.unwrap());
    }

    /// A second, shorter revocation of the same jti keeps the longer one.
    pub async fn a_shorter_revocation_never_shortens_a_longer_one<S: RevocationStore>(
        store: Arc<S>,
    ) {
        let jti = unique("jti");
        let now = SystemTime::now();
        store
            .revoke(&jti, now + Duration::from_secs(60))
            .await
            .unwrap();
        store
            .revoke(&jti, now + Duration::from_millis(100))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(store.is_revoked(&jti).await.unwrap());
    }

    /// Fifty revocations made at once are all held.
    pub async fn concurrent_revocations_are_all_kept<S: RevocationStore>(store: Arc<S>) {
        let jtis: Vec<String> = (0..50).map(|_| unique("jti")).collect();
        let until = SystemTime::now() + Duration::from_secs(60);
        let tasks: Vec<_> = jtis
            .iter()
            .cloned()
            .map(|jti| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.revoke(&jti, until).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for jti in &jtis {
            assert!(store.is_revoked(jti).await.unwrap(), "{jti} lost");
        }
    }
}

/// Cases of the device registry suite.
pub mod device_registry {
    use std::sync::Arc;

    use zerotrust_core::device::FingerprintDigest;
    use zerotrust_core::{
        Compliance, DeviceRecord, DeviceRegistry, Posture, PostureRule, Registration,
    };

    use super::unique;

    const T0: i64 = 1_900_000_000;

    fn posture(version: &str, reported_at: i64) -> Posture {
        Posture {
            platform: Some("macos".into()),
            os_version: Some(version.into()),
            disk_encrypted: Some(true),
            edr_running: Some(false),
            jailbroken: Some(false),
            reported_at: Some(reported_at),
        }
    }

    /// An id never registered reads as `None`.
    pub async fn an_unknown_device_is_none<R: DeviceRegistry>(registry: Arc<R>) {
        assert_eq!(registry.get(&unique("dev")).await.unwrap(), None);
    }

    /// Every field of a record survives the round trip.
    pub async fn a_registered_device_reads_back_with_every_field<R: DeviceRegistry>(
        registry: Arc<R>,
    ) {
        let record = DeviceRecord {
            fingerprint: Some(FingerprintDigest::of("fp-1")),
            owners: vec!["alice".into(), "bob".into()],
            posture: posture("14.2.1", T0),
            last_seen: T0 + 5,
            compliance: Compliance::NonCompliant(vec![PostureRule::Edr, PostureRule::OsVersion]),
            ..DeviceRecord::new(unique("dev"), T0)
        };
        let created = registry.register(record.clone()).await.unwrap();
        assert!(matches!(&created, Registration::Created(r) if **r == record));
        let read = registry.get(&record.id).await.unwrap().unwrap();
        assert_eq!(*read, record);
    }

    /// A second registration of an id reports the first record and changes nothing.
    pub async fn registering_twice_keeps_the_first_record<R: DeviceRegistry>(registry: Arc<R>) {
        let id = unique("dev");
        let first = DeviceRecord {
            owners: vec!["alice".into()],
            ..DeviceRecord::new(id.clone(), T0)
        };
        let second = DeviceRecord {
            owners: vec!["mallory".into()],
            ..DeviceRecord::new(id.clone(), T0 + 1)
        };
        registry.register(first.clone()).await.unwrap();
        match registry.register(second).await.unwrap() {
            Registration::Existing(r) => assert_eq!(*r, first),
            Registration::Created(_) => panic!("second registration created a record"),
        }
        assert_eq!(*registry.get(&id).await.unwrap().unwrap(), first);
    }

    /// Twenty registrations of one id racing: exactly one creates it.
    pub async fn concurrent_registrations_create_exactly_one_record<R: DeviceRegistry>(
        registry: Arc<R>,
    ) {
        let id = unique("dev");
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let registry = Arc::clone(&registry);
                let record = DeviceRecord {
                    owners: vec![format!("subject-{i}")],
                    ..DeviceRecord::new(id.clone(), T0)
                };
                tokio::spawn(async move { registry.register(record).await.unwrap() })
            })
            .collect();
        let mut created = Vec::new();
        for t in tasks {
            if let Registration::Created(r) = t.await.unwrap() {
                created.push(r);
            }
        }
        assert_eq!(created.len(), 1, "exactly one registration must win");
        let stored = registry.get(&id).await.unwrap().unwrap();
        assert_eq!(stored, created[0]);
    }

    /// Binding an owner adds it; binding it again changes nothing.
    pub async fn binding_an_owner_adds_it_once<R: DeviceRegistry>(registry: Arc<R>) {
        let id = unique("dev");
        registry
            .register(DeviceRecord::new(id.clone(), T0))
            .await
            .unwrap();
        assert!(registry.bind_owner(&id, "alice").await.unwrap());
        assert!(registry.bind_owner(&id, "alice").await.unwrap());
        assert!(registry.bind_owner(&id, "bob").await.unwrap());
        let rec = registry.get(&id).await.unwrap().unwrap();
        assert_eq!(rec.owners, vec!["alice".to_owned(), "bob".to_owned()]);
    }

    /// A posture update replaces posture and compliance, unless the stored report is newer.
    pub async fn posture_updates_replace_but_never_with_an_older_report<R: DeviceRegistry>(
        registry: Arc<R>,
    ) {
        let id = unique("dev");
        registry
            .register(DeviceRecord::new(id.clone(), T0))
            .await
            .unwrap();
        assert!(
            registry
                .update_posture(&id, posture("14.0", T0 + 100), Compliance::Compliant)
                .await
                .unwrap()
        );
        // An older report arriving late is ignored.
        registry
            .update_posture(
                &id,
                posture("13.0", T0 + 50),
                Compliance::NonCompliant(vec![PostureRule::OsVersion]),
            )
            .await
            .unwrap();
        let rec = registry.get(&id).await.unwrap().unwrap();
        assert_eq!(rec.posture, posture("14.0", T0 + 100));
        assert_eq!(rec.compliance, Compliance::Compliant);
        // A newer one replaces it.
        registry
            .update_posture(
                &id,
                posture("14.1", T0 + 200),
                Compliance::NonCompliant(vec![PostureRule::Edr]),
            )
            .await
            .unwrap();
        let rec = registry.get(&id).await.unwrap().unwrap();
        assert_eq!(rec.posture.os_version.as_deref(), Some("14.1"));
        assert_eq!(
            rec.compliance,
            Compliance::NonCompliant(vec![PostureRule::Edr])
        );
    }

    /// `touch` moves `last_seen` forward, never back.
    pub async fn touch_moves_last_seen_forward_only<R: DeviceRegistry>(registry: Arc<R>) {
        let id = unique("dev");
        registry
            .register(DeviceRecord::new(id.clone(), T0))
            .await
            .unwrap();
        assert!(registry.touch(&id, T0 + 60).await.unwrap());
        assert!(registry.touch(&id, T0 + 30).await.unwrap());
        let rec = registry.get(&id).await.unwrap().unwrap();
        assert_eq!(rec.last_seen, T0 + 60);
        assert_eq!(rec.first_seen, T0);
    }

    /// Updating, binding, touching or removing an unknown id answers `false` and creates nothing.
    pub async fn operations_on_unknown_devices_report_false<R: DeviceRegistry>(registry: Arc<R>) {
        let id = unique("dev");
        assert!(
            !registry
                .update_posture(&id, posture("1", T0), Compliance::Compliant)
                .await
                .unwrap()
        );
        assert!(!registry.bind_owner(&id, "alice").await.unwrap());
        assert!(!registry.touch(&id, T0).await.unwrap());
        assert!(!registry.remove(&id).await.unwrap());
        assert_eq!(registry.get(&id).await.unwrap(), None);
    }

    /// A removed device reads as unknown and can be registered afresh.
    pub async fn a_removed_device_is_unknown<R: DeviceRegistry>(registry: Arc<R>) {
        let id = unique("dev");
        registry
            .register(DeviceRecord::new(id.clone(), T0))
            .await
            .unwrap();
        assert!(registry.remove(&id).await.unwrap());
        assert_eq!(registry.get(&id).await.unwrap(), None);
        let again = registry
            .register(DeviceRecord::new(id.clone(), T0 + 1))
            .await
            .unwrap();
        assert!(matches!(again, Registration::Created(_)));
    }
}

/// Cases of the location history suite.
pub mod location_history {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    use zerotrust_core::geo::{CountryCode, GeoPoint};
    use zerotrust_core::{LocationHistory, Sighting};

    use super::unique;

    fn sighting(at: i64, lat: f64) -> Sighting {
        Sighting {
            at,
            point: GeoPoint { lat, lon: 13.4 },
            accuracy_km: 25.0,
            country: CountryCode::new("DE"),
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, (at % 250) as u8)),
        }
    }

    /// A new subject has no sighting.
    pub async fn a_subject_never_seen_has_no_sighting<H: LocationHistory>(history: Arc<H>) {
        assert_eq!(history.last(&unique("sub")).await.unwrap(), None);
    }

    /// Each swap stores the new sighting and answers the one before.
    pub async fn swap_answers_the_previous_sighting<H: LocationHistory>(history: Arc<H>) {
        let sub = unique("sub");
        let (a, b) = (sighting(1_900_000_000, 52.5), sighting(1_900_000_600, 40.7));
        assert_eq!(history.swap(&sub, a).await.unwrap(), None);
        assert_eq!(history.swap(&sub, b).await.unwrap(), Some(a));
        assert_eq!(history.last(&sub).await.unwrap(), Some(b));
    }

    /// A sighting older than the stored one is answered the stored one and not stored.
    pub async fn an_older_sighting_never_replaces_a_newer_one<H: LocationHistory>(history: Arc<H>) {
        let sub = unique("sub");
        let (newer, older) = (sighting(1_900_000_600, 52.5), sighting(1_900_000_000, 40.7));
        history.swap(&sub, newer).await.unwrap();
        assert_eq!(history.swap(&sub, older).await.unwrap(), Some(newer));
        assert_eq!(history.last(&sub).await.unwrap(), Some(newer));
    }

    /// One subject's sightings never show for another.
    pub async fn subjects_are_independent<H: LocationHistory>(history: Arc<H>) {
        let (alice, bob) = (unique("sub"), unique("sub"));
        history
            .swap(&alice, sighting(1_900_000_000, 52.5))
            .await
            .unwrap();
        assert_eq!(history.last(&bob).await.unwrap(), None);
    }

    /// Thirty swaps racing: the latest sighting is the one kept.
    pub async fn concurrent_swaps_keep_the_latest<H: LocationHistory>(history: Arc<H>) {
        let sub = unique("sub");
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let history = Arc::clone(&history);
                let sub = sub.clone();
                tokio::spawn(async move {
                    history
                        .swap(&sub, sighting(1_900_000_000 + i, 10.0 + i as f64))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let last = history.last(&sub).await.unwrap().unwrap();
        assert_eq!(last.at, 1_900_000_029);
    }
}

/// Cases of the behaviour store suite. Times are chosen on window boundaries (multiples of the
/// window lengths since the epoch), as the counters are fixed windows.
pub mod behavior {
    use std::sync::Arc;

    use zerotrust_core::{BehaviorStore, BehaviorWindows};

    use super::unique;

    /// A time on a boundary of every default window (a multiple of 600 s).
    const T0: i64 = 1_900_000_200;

    fn windows() -> BehaviorWindows {
        BehaviorWindows::default()
    }

    /// Requests add up within a window and start again in the next.
    pub async fn requests_are_counted_per_window<S: BehaviorStore>(store: Arc<S>) {
        let (sub, w) = (unique("sub"), windows());
        for i in 0..5 {
            let seen = store.observe(&sub, T0 + i, None, &w).await.unwrap();
            assert_eq!(seen.requests, u32::try_from(i + 1).unwrap());
        }
        let next = store.observe(&sub, T0 + 60, None, &w).await.unwrap();
        assert_eq!(next.requests, 1);
    }

    /// Failures add up within their window, show in `observe`, and expire with it.
    pub async fn failures_are_counted_per_window<S: BehaviorStore>(store: Arc<S>) {
        let (sub, w) = (unique("sub"), windows());
        assert_eq!(store.record_failure(&sub, T0, &w).await.unwrap(), 1);
        assert_eq!(store.record_failure(&sub, T0 + 10, &w).await.unwrap(), 2);
        assert_eq!(
            store
                .observe(&sub, T0 + 20, None, &w)
                .await
                .unwrap()
                .failures,
            2
        );
        let later = T0 + i64::try_from(w.failures.as_secs()).unwrap();
        assert_eq!(
            store.observe(&sub, later, None, &w).await.unwrap().failures,
            0
        );
        assert_eq!(store.record_failure(&sub, later, &w).await.unwrap(), 1);
    }

    /// A route touched twice counts once.
    pub async fn distinct_sensitive_routes_are_counted_once<S: BehaviorStore>(store: Arc<S>) {
        let (sub, w) = (unique("sub"), windows());
        store.observe(&sub, T0, Some("/admin/a"), &w).await.unwrap();
        store
            .observe(&sub, T0 + 1, Some("/admin/a"), &w)
            .await
            .unwrap();
        store.observe(&sub, T0 + 2, None, &w).await.unwrap();
        let seen = store
            .observe(&sub, T0 + 3, Some("/admin/b"), &w)
            .await
            .unwrap();
        assert_eq!(seen.sensitive_routes, 2);
    }

    /// A lockout shows until its time, and a shorter one never replaces a longer one.
    pub async fn a_lockout_holds_until_its_time_and_is_never_shortened<S: BehaviorStore>(
        store: Arc<S>,
    ) {
        let (sub, w) = (unique("sub"), windows());
        store.lock_out(&sub, T0 + 300).await.unwrap();
        store.lock_out(&sub, T0 + 100).await.unwrap();
        let seen = store.observe(&sub, T0 + 200, None, &w).await.unwrap();
        assert_eq!(seen.locked_until, Some(T0 + 300));
        let after = store.observe(&sub, T0 + 301, None, &w).await.unwrap();
        assert_eq!(after.locked_until, None);
    }

    /// One subject's counts never show for another.
    pub async fn behavior_subjects_are_independent<S: BehaviorStore>(store: Arc<S>) {
        let (alice, bob, w) = (unique("sub"), unique("sub"), windows());
        store.record_failure(&alice, T0, &w).await.unwrap();
        store.lock_out(&alice, T0 + 100).await.unwrap();
        let seen = store.observe(&bob, T0, Some("/x"), &w).await.unwrap();
        assert_eq!(
            (seen.failures, seen.requests, seen.locked_until),
            (0, 1, None)
        );
    }

    /// Forty failures recorded at once all count.
    pub async fn concurrent_failures_are_all_counted<S: BehaviorStore>(store: Arc<S>) {
        let sub = unique("sub");
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let store = Arc::clone(&store);
                let sub = sub.clone();
                tokio::spawn(async move {
                    store
                        .record_failure(&sub, T0 + 5, &windows())
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        answers.sort_unstable();
        assert_eq!(answers, (1..=40).collect::<Vec<u32>>());
    }
}
