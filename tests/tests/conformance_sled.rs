//! The storage conformance kit against `SledStorage`, one test per case.

use std::path::PathBuf;
use std::sync::Mutex;

use theta::persistence::conformance::{Case, Harness, run_case};
use theta_persistence_sled::SledStorage;

/// Each `open` is a new database in its own directory under one temp dir;
/// `reopen` opens the last one again.
struct Sled {
    root: tempfile::TempDir,
    opened: Mutex<Vec<PathBuf>>,
}

impl Sled {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temp dir"),
            opened: Mutex::default(),
        }
    }
}

impl Harness for Sled {
    type Storage = SledStorage;

    async fn open(&self) -> anyhow::Result<SledStorage> {
        let path = {
            let mut opened = self.opened.lock().unwrap();
            let path = self.root.path().join(format!("db{}", opened.len()));
            opened.push(path.clone());
            path
        };
        Ok(SledStorage::open(path)?)
    }

    async fn reopen(&self, storage: SledStorage) -> anyhow::Result<SledStorage> {
        let path = self.opened.lock().unwrap().last().cloned();
        let path = path.ok_or_else(|| anyhow::anyhow!("nothing was opened"))?;
        storage.close().await?;
        Ok(SledStorage::open(path)?)
    }
}

macro_rules! cases {
    ($($name:ident => $case:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if let Err(e) = run_case(&Sled::new(), $case).await {
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
