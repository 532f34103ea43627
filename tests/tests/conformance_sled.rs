//! The storage conformance kit against `SledStorage`, one test per case.

use std::path::PathBuf;
use std::sync::Mutex;

use theta::persistence::conformance::Harness;
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

theta::conformance_tests!(Sled::new());
