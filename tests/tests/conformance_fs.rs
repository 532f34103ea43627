//! The storage conformance kit against `FsStorage`, one test per case; the
//! failed-sync case injects the failure with the `failpoints` feature (enabled
//! for this crate's tests in its `Cargo.toml`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use theta::ActorId;
use theta::persistence::conformance::Harness;
use theta::persistence::{PersistentStorage, envelope};
use theta_persistence_fs::{Action, FsError, FsStorage, Step};

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

/// `EIO`, as a failing disk reports it.
const EIO: i32 = 5;

/// What a crash, an operator or another program could leave in a store
/// directory, none of it a snapshot: temp files of checkpoints and of marker
/// files, files with names this store never writes, in every directory.
fn litter(dir: &Path) -> std::io::Result<()> {
    let snapshots = dir.join("snapshots");
    let id = ActorId::new_v4();
    let shard = snapshots.join(format!(
        "{:02x}",
        id.as_bytes().iter().fold(0u8, |acc, b| acc ^ b)
    ));
    std::fs::create_dir_all(&shard)?;
    // A checkpoint's temp file, and a temp file of a (valid) envelope.
    std::fs::write(shard.join(format!(".{id}.42.tmp")), b"half a snaps")?;
    let whole = envelope::Seal::new(uuid::Uuid::nil())
        .actor_id(id)
        .seal(b"x");
    std::fs::write(shard.join(format!(".{id}.43.tmp")), whole)?;
    // Names this store does not write: not snapshots.
    std::fs::write(shard.join("notes.txt"), b"unrelated")?;
    std::fs::write(shard.join("not-a-uuid.snap"), b"junk")?;
    std::fs::write(
        shard.join(format!("{}.snap", id.to_string().to_uppercase())),
        b"a non-canonical name",
    )?;
    let mut misplaced = *id.as_bytes();
    misplaced[15] ^= 1;
    std::fs::write(
        shard.join(format!("{}.snap", ActorId::from_bytes(misplaced))),
        b"in the wrong shard",
    )?;
    std::fs::create_dir_all(snapshots.join("zz"))?;
    std::fs::write(snapshots.join("README"), b"hi")?;
    // Journal files that are not segments (or the start marker).
    let journal = dir.join("journal");
    std::fs::write(journal.join("notes.txt"), b"hi")?;
    std::fs::write(journal.join("0001.log"), b"short name")?;
    std::fs::write(journal.join("000000000000000A.log"), b"upper case")?;
    std::fs::write(journal.join("0000000000000001.log.bak"), b"a backup")?;
    std::fs::write(journal.join(".START.tmp"), b"a marker being replaced")?;
    std::fs::create_dir_all(journal.join("old"))?;
    // And in the store directory itself.
    std::fs::write(dir.join("unrelated"), b"hi")?;
    std::fs::write(dir.join(".GENERATION.tmp"), b"7")?;
    Ok(())
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

    async fn litter(&self, storage: &FsStorage) -> anyhow::Result<()> {
        Ok(litter(storage.dir())?)
    }

    async fn fail_next_sync(&self, storage: &FsStorage) -> anyhow::Result<bool> {
        storage.fail_next(Step::JournalSync, Action::Error(EIO));
        Ok(true)
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
    match FsStorage::open(&dir) {
        Err(FsError::Locked { path }) => assert_eq!(path, dir),
        other => panic!("a second open of a held directory must be Locked: {other:?}"),
    }
    let storage = fs.reopen(storage).await.unwrap();
    assert_eq!(storage.dir(), dir);
}

/// The litter really is in the store while it is open (so the stray-files case
/// tests something), and the store reads through it.
#[tokio::test]
async fn the_litter_lands_in_every_directory_of_the_store() {
    let fs = Fs::new();
    let storage = fs.open().await.unwrap();
    let id = ActorId::new_v4();
    let bytes = envelope::Seal::new(uuid::Uuid::nil())
        .actor_id(id)
        .sequence(1)
        .seal(b"kept");
    storage.try_write(id, bytes.clone()).await.unwrap();
    fs.litter(&storage).await.unwrap();
    let dir = storage.dir().to_path_buf();
    for path in ["unrelated", "journal/notes.txt", "snapshots/README"] {
        assert!(dir.join(path).is_file(), "{path}");
    }
    let storage = fs.reopen(storage).await.unwrap();
    assert_eq!(storage.try_read(id).await.unwrap(), bytes);
    assert_eq!(storage.try_list().await.unwrap(), vec![id]);
    assert!(
        dir.join("journal/notes.txt").is_file(),
        "stray files are left alone"
    );
}

/// A sled database is not an fs store: opening its directory with fs is refused
/// and says what is there, instead of starting every actor fresh.
#[tokio::test]
async fn a_sled_database_is_refused_not_adopted() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("db");
    let sled = theta_persistence_sled::SledStorage::open(&dir).unwrap();
    let id = ActorId::new_v4();
    let bytes = envelope::Seal::new(uuid::Uuid::nil())
        .actor_id(id)
        .sequence(1)
        .seal(b"sled's");
    sled.try_write(id, bytes).await.unwrap();
    sled.close().await.unwrap();
    let before: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    // A theta sled store carries its own layout marker, which fs names.
    match FsStorage::open(&dir) {
        Err(err @ FsError::UnsupportedFormat { .. }) => {
            assert!(err.to_string().contains("theta-persistence-sled"), "{err}");
        }
        other => panic!("opening a sled store must be refused: {other:?}"),
    }
    let after: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "nothing was written into the sled directory");

    // A bare sled database (no marker: another program's, or an old build's)
    // is refused by what it holds.
    let bare = temp.path().join("bare");
    let db = theta_persistence_sled::sled::open(&bare).unwrap();
    db.insert(b"key", b"value").unwrap();
    db.flush().unwrap();
    drop(db);
    match FsStorage::open(&bare) {
        Err(err @ FsError::NotAStore { .. }) => {
            assert!(err.to_string().contains("sled"), "{err}");
        }
        other => panic!("opening a sled database must be refused: {other:?}"),
    }
}
