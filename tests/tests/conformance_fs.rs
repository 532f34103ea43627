//! The storage conformance kit against `FsStorage`, one test per case.

use std::path::PathBuf;
use std::sync::Mutex;

use theta::persistence::conformance::{Case, Harness, run_case};
use theta_persistence_fs::FsStorage;

/// Each `open` is a new store in its own directory under one temp dir; `reopen`
/// drops the storage (releasing the directory lock once the committer has
/// stopped) and opens the last directory again.
struct Fs {
    root: tempfile::TempDir,
    opened: Mutex<Vec<PathBuf>>,
}

impl Fs {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().expect("temp dir"),
            opened: Mutex::default(),
        }
    }
}

impl Harness for Fs {
    type Storage = FsStorage;

    async fn open(&self) -> anyhow::Result<FsStorage> {
        let path = {
            let mut opened = self.opened.lock().unwrap();
            let path = self.root.path().join(format!("store{}", opened.len()));
            opened.push(path.clone());
            path
        };
        Ok(FsStorage::open(path)?)
    }

    async fn reopen(&self, storage: FsStorage) -> anyhow::Result<FsStorage> {
        let path = storage.dir().to_path_buf();
        anyhow::ensure!(
            self.opened.lock().unwrap().last() == Some(&path),
            "reopen of a store this harness did not open last"
        );
        // The last clone: dropping it joins the committer and releases the lock.
        drop(storage);
        Ok(FsStorage::open(path)?)
    }
}

macro_rules! cases {
    ($($name:ident => $case:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            if let Err(e) = run_case(&Fs::new(), $case).await {
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

/// The harness itself: a reopen really reopens (the lock is held while a handle
/// lives, and released by the drop in `reopen`).
#[tokio::test]
async fn a_second_open_is_locked_out_until_reopen() {
    let fs = Fs::new();
    let storage = fs.open().await.unwrap();
    let dir = storage.dir().to_path_buf();
    assert!(
        FsStorage::open(&dir).is_err(),
        "a second open of a held directory must fail"
    );
    let storage = fs.reopen(storage).await.unwrap();
    assert_eq!(storage.dir(), dir);
}
