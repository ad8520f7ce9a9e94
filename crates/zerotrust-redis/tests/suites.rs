//! The Redis stores pass the same suites as the in-memory ones, each case against its own
//! `redis-server` on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod revocation {
    zerotrust_testkit::revocation_store_tests!(
        crate::common::served_store(|s| s.revocations()).await
    );
}

mod devices {
    zerotrust_testkit::device_registry_tests!(crate::common::served_store(|s| s.devices()).await);
}

mod locations {
    zerotrust_testkit::location_history_tests!(
        crate::common::served_store(|s| s.locations()).await
    );
}

mod behavior {
    zerotrust_testkit::behavior_store_tests!(crate::common::served_store(|s| s.behavior()).await);
}

/// The same suites through the cluster client, on a one-node Redis Cluster: keys of one id
/// share a hash slot, scripts run where their keys live.
mod cluster {
    mod revocation {
        zerotrust_testkit::revocation_store_tests!(
            crate::common::served_cluster_store(|s| s.revocations()).await
        );
    }

    mod devices {
        zerotrust_testkit::device_registry_tests!(
            crate::common::served_cluster_store(|s| s.devices()).await
        );
    }

    mod locations {
        zerotrust_testkit::location_history_tests!(
            crate::common::served_cluster_store(|s| s.locations()).await
        );
    }

    mod behavior {
        zerotrust_testkit::behavior_store_tests!(
            crate::common::served_cluster_store(|s| s.behavior()).await
        );
    }
}
