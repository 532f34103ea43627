//! The storage conformance kit against `MemoryStorage`, one test per case.

use theta::persistence::MemoryStorage;
use theta::persistence::conformance::{Case, Harness};

struct Memory;

impl Harness for Memory {
    type Storage = MemoryStorage;

    async fn open(&self) -> anyhow::Result<MemoryStorage> {
        Ok(MemoryStorage::new())
    }

    async fn reopen(&self, storage: MemoryStorage) -> anyhow::Result<MemoryStorage> {
        Ok(storage)
    }
}

theta::conformance_tests!(Memory);

#[tokio::test]
async fn the_whole_kit_reports_every_case_by_name() {
    let report = theta::persistence::conformance::run(&Memory).await;
    assert_eq!(report.results.len(), Case::ALL.len());
    assert!(report.passed(), "{report}");
    assert!(report.to_string().contains("round_trip_16_mib ... ok"));
}
