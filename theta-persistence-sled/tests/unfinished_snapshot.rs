//! A crash while sled 0.34 writes a page-table snapshot leaves a truncated
//! `snap.<lsn>.generating` file, which sled itself then reads as its newest
//! snapshot and refuses to open (`Corruption`). `SledStorage::open` clears such
//! a file (under sled's lock) and recovers everything acknowledged; a finished
//! one is left for sled, and one that another open handle may be writing is not
//! touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use theta::ActorId;
use theta::persistence::PersistentStorage;
use theta::persistence::envelope::Seal;
use theta_persistence_sled::{SledError, SledStorage, sled};

const TYPE: ActorId = ActorId::from_u128(0x0000_0000_0000_4000_8000_0000_0000_05a9);

fn id(i: u64) -> ActorId {
    ActorId::from_u128(0x05a9_0000_0000_4000_8000_0000_0000_0000 | u128::from(i))
}

fn snapshot(id: ActorId, payload: &[u8]) -> Vec<u8> {
    Seal::new(TYPE).actor_id(id).sequence(1).seal(payload)
}

/// A store with 20 acknowledged snapshots, closed; returns them.
async fn populated(path: &Path) -> Vec<(ActorId, Vec<u8>)> {
    let storage = SledStorage::open(path).expect("open");
    let mut written = Vec::new();
    for i in 0..20 {
        let bytes = snapshot(id(i), format!("account {i}").as_bytes());
        timeout(storage.try_write(id(i), bytes.clone()))
            .await
            .unwrap_or_else(|e| panic!("write of {}: {e:#}", id(i)));
        written.push((id(i), bytes));
    }
    timeout(storage.close()).await.expect("close");
    written
}

async fn timeout<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out after 10 s")
}

/// What a kill in the middle of sled's snapshot write leaves: the start of a
/// snapshot under a name sorting after every finished one, no trailer.
fn plant_cut_short_snapshot(dir: &Path) -> PathBuf {
    let path = dir.join("snap.7FFFFFFFFFFFFFFF.generating");
    fs::write(&path, [0x5a; 37]).expect("planting the cut-short snapshot");
    path
}

/// The newest finished snapshot sled wrote, copied under the name of one being
/// written: what a crash between sled's sync and its rename leaves.
fn plant_finished_snapshot(dir: &Path) -> PathBuf {
    let mut finished: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect();
    finished.sort();
    let newest = finished.pop().expect("sled wrote a snapshot at close");
    let path = PathBuf::from(format!("{}.generating", newest.display()));
    fs::copy(&newest, &path).expect("planting the finished snapshot");
    path
}

#[tokio::test]
async fn a_snapshot_cut_short_by_a_crash_is_cleared_and_everything_acknowledged_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let written = populated(&path).await;
    let planted = plant_cut_short_snapshot(&path);

    // sled alone cannot open it: the state the crash loop found.
    match sled::Config::new().path(&path).open() {
        Err(sled::Error::Corruption { .. }) => {}
        other => panic!("sled should refuse the cut-short snapshot, got {other:?}"),
    }
    // sled's refusal may leave its lock held briefly; `open` waits for it.
    let storage = SledStorage::open(&path).expect("open clears the cut-short snapshot");
    assert!(!planted.exists(), "{} should be gone", planted.display());
    for (id, bytes) in &written {
        let read = timeout(storage.try_read(*id))
            .await
            .unwrap_or_else(|e| panic!("read of {id}: {e:#}"));
        assert_eq!(&read, bytes, "snapshot of {id}");
    }
}

#[tokio::test]
async fn a_finished_generating_snapshot_is_read_by_sled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let written = populated(&path).await;
    // sled takes a page-table snapshot as it opens a database that has a log:
    // open it once more to have one.
    {
        let db = sled::Config::new()
            .path(&path)
            .open()
            .expect("opening with sled");
        let storage = SledStorage::from_db_at(&db, &path).expect("from_db_at");
        for i in 20..40 {
            let bytes = snapshot(id(i), b"later");
            timeout(storage.try_write(id(i), bytes))
                .await
                .expect("write");
        }
        timeout(storage.close()).await.expect("close");
        db.flush().expect("flush");
    }
    let planted = plant_finished_snapshot(&path);
    let storage = SledStorage::open(&path).expect("open");
    // sled read it and, taking a snapshot of its own at open, removed it.
    assert!(
        !planted.exists(),
        "{} should be sled's to remove",
        planted.display()
    );
    for (id, bytes) in &written {
        let read = timeout(storage.try_read(*id))
            .await
            .unwrap_or_else(|e| panic!("read of {id}: {e:#}"));
        assert_eq!(&read, bytes, "snapshot of {id}");
    }
}

#[tokio::test]
async fn nothing_is_cleared_while_another_handle_holds_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    populated(&path).await;
    let first = SledStorage::open(&path).expect("first open");
    // A file the open handle could be writing right now.
    let planted = plant_cut_short_snapshot(&path);
    match SledStorage::open(&path) {
        Err(SledError::Locked { path: p, .. }) => assert_eq!(p, path),
        other => panic!("a second open should be refused as locked, got {other:?}"),
    }
    assert!(
        planted.exists(),
        "the open handle's file must not be touched"
    );
    drop(first);
}
