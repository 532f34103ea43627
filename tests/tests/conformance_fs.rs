//! The storage conformance kit against `FsStorage`, one test per case.

use std::path::PathBuf;
use std::sync::Mutex;

use theta::persistence::conformance::Harness;
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

theta::conformance_tests!(Fs::new());

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
