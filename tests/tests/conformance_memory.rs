//! The storage conformance kit against `MemoryStorage`, one test per case.

use theta::persistence::MemoryStorage;
use theta::persistence::conformance::{Case, Harness, run_case};

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

macro_rules! cases {
    ($($name:ident => $case:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if let Err(e) = run_case(&Memory, $case).await {
                panic!("{}: {e}", $case.name());
            }
        }
    )*};
}

cases! {
    absent_is_not_found => Case::AbsentIsNotFound,
    round_trip_0_bytes => Case::RoundTripEmpty,
    round_trip_1_byte => Case::RoundTripOneByte,
    round_trip_10_kib => Case::RoundTrip10KiB,
    round_trip_16_mib => Case::RoundTrip16MiB,
    overwrite_returns_latest => Case::OverwriteReturnsLatest,
    prefix_ids_independent => Case::PrefixIdsIndependent,
    parallel_100_ids_x_10_writes => Case::ParallelWrites,
    delete_semantics => Case::DeleteSemantics,
    stale_write_refused => Case::StaleWriteRefused,
    concurrent_writers_higher_sequence_wins => Case::ConcurrentWritersHigherWins,
    reopen_reads_identical_bytes => Case::ReopenIdentical,
    list_is_the_live_set => Case::ListIsLiveSet,
}

#[tokio::test]
async fn the_whole_kit_reports_every_case_by_name() {
    let report = theta::persistence::conformance::run(&Memory).await;
    assert_eq!(report.results.len(), Case::ALL.len());
    assert!(report.passed(), "{report}");
    assert!(report.to_string().contains("round_trip_16_mib ... ok"));
}
