//! The in-memory stores pass the same suites as every other implementation.

mod revocation {
    zerotrust_testkit::revocation_store_tests!(zerotrust_core::MemoryRevocationStore::new());
}

mod devices {
    zerotrust_testkit::device_registry_tests!(zerotrust_core::MemoryDeviceRegistry::new());
}

mod locations {
    zerotrust_testkit::location_history_tests!(zerotrust_core::MemoryLocationHistory::new());
}

mod behavior {
    zerotrust_testkit::behavior_store_tests!(zerotrust_core::MemoryBehaviorStore::new());
}
