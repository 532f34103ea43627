//! The storage conformance kit against `SledStorage`, one test per case.

use std::path::PathBuf;
use std::sync::Mutex;

use theta::persistence::conformance::Harness;
use theta_persistence_sled::SledStorage;

/// Each `open` is a new database in its own directory under one temp dir;
/// `reopen` closes the storage and opens the last directory again.
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
        let path = storage.path().map(PathBuf::from);
        let path = path.ok_or_else(|| anyhow::anyhow!("the storage has no directory"))?;
        anyhow::ensure!(
            self.opened.lock().unwrap().last() == Some(&path),
            "reopen of a store this harness did not open last"
        );
        // A store whose flush failed refuses to close cleanly (that is the
        // point); the reopen's own checks then decide what it finds.
        if let Err(error) = storage.close().await {
            eprintln!("closing before the reopen failed: {error}");
        }
        Ok(SledStorage::open(path)?)
    }

    /// What a crash, an operator or an editor leaves next to sled's files.
    async fn litter(&self, storage: &SledStorage) -> anyhow::Result<()> {
        let dir = storage
            .path()
            .ok_or_else(|| anyhow::anyhow!("the storage has no directory"))?;
        std::fs::write(dir.join("notes.txt"), b"an operator's notes")?;
        std::fs::write(dir.join(".FORMAT.tmp"), b"theta-persistence-sled lay")?;
        std::fs::write(dir.join("ACKED~"), [0u8; 40])?;
        std::fs::write(dir.join("db.bak"), b"not a log")?;
        std::fs::create_dir_all(dir.join("old"))?;
        std::fs::write(dir.join("old").join("db"), b"an old copy")?;
        Ok(())
    }

    /// The next flush fails as a failing disk's `fsync` would (EIO), through
    /// the `failpoints` feature.
    async fn fail_next_sync(&self, storage: &SledStorage) -> anyhow::Result<bool> {
        storage.fail_next_sync();
        Ok(true)
    }
}

theta::conformance_tests!(Sled::new());
