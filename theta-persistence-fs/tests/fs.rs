//! Behaviour of `FsStorage`: the storage contract, the on-disk layout, locking,
//! the journal and its checkpoints, and (feature `failpoints`) injected I/O
//! errors and crashes at each step of a write and of a checkpoint.

use std::collections::HashSet;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use theta::ActorId;
use theta::persistence::{PersistentStorage, SnapshotNotFound, StaleSnapshot, envelope};
use theta_persistence_fs::{Durability, FsError, FsStorage};

const TYPE: uuid::Uuid = uuid::uuid!("6d1b7c9e-0000-4000-8000-00000000f5f5");

async fn t<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("timed out")
}

fn env(sequence: u64, payload: &[u8]) -> Vec<u8> {
    envelope::seal(TYPE, 0, sequence, payload)
}

fn sequence(bytes: &[u8]) -> u64 {
    envelope::open(bytes, usize::MAX)
        .expect("valid envelope")
        .0
        .sequence
}

fn snapshots(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

/// The layout's shard of an id: the XOR of its bytes, in hex.
fn shard(dir: &Path, id: ActorId) -> PathBuf {
    let byte = id.as_bytes().iter().fold(0u8, |acc, b| acc ^ b);
    snapshots(dir).join(format!("{byte:02x}"))
}

fn snap_file(dir: &Path, id: ActorId) -> PathBuf {
    shard(dir, id).join(format!("{id}.snap"))
}

/// Every file under `snapshots/` whose name ends in `.tmp`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(snapshots(dir)) else {
        return out;
    };
    for shard in shards.flatten() {
        if let Ok(files) = std::fs::read_dir(shard.path()) {
            for file in files.flatten() {
                if file.file_name().to_string_lossy().ends_with(".tmp") {
                    out.push(file.path());
                }
            }
        }
    }
    out
}

/// The journal segment files, oldest first.
fn journal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "log"));
    out.sort();
    out
}

/// A copy of an open store's directory: what a `kill -9` at this moment would
/// leave on disk (the page cache survives a process crash), provided no write is
/// in flight. A checkpoint may be: so the journal is copied first, and every
/// segment that is gone by the time the files are copied had its files written
/// before it was removed.
fn crash_copy(dir: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        let mut entries: Vec<_> = std::fs::read_dir(from).unwrap().flatten().collect();
        entries.sort_by_key(|entry| entry.file_name() != "journal");
        for entry in entries {
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let out = tempfile::tempdir().unwrap();
    copy(dir, out.path());
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let err = t(store.try_read(ActorId::new_v4())).await.unwrap_err();
    assert!(err.is::<SnapshotNotFound>(), "{err:#}");
    assert!(t(store.try_list()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    for (i, len) in [0usize, 1, 10 << 10, 16 << 20].into_iter().enumerate() {
        let id = ActorId::new_v4();
        let payload: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
        let bytes = env(1, &payload);
        t(store.try_write(id, bytes.clone())).await.unwrap();
        let read = t(store.try_read(id)).await.unwrap();
        assert!(read == bytes, "payload of {len} bytes differs");
        assert_eq!(envelope::open(&read, usize::MAX).unwrap().1, &payload[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(1, b"one"))).await.unwrap();
    t(store.try_write(id, env(2, b"two, longer")))
        .await
        .unwrap();
    // An equal sequence number is a repeat, not a newer snapshot: refused.
    let repeat = t(store.try_write(id, env(2, b"2 again")))
        .await
        .unwrap_err();
    assert!(
        repeat.is::<theta::persistence::StaleSnapshot>(),
        "{repeat:#}"
    );
    t(store.try_write(id, env(3, b"three"))).await.unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(3, b"three"));
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_write_is_refused_and_newer_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(7, b"seven"))).await.unwrap();
    let err = t(store.try_write(id, env(6, b"six"))).await.unwrap_err();
    let stale = err.downcast_ref::<StaleSnapshot>().expect("StaleSnapshot");
    assert_eq!(
        *stale,
        StaleSnapshot {
            id,
            stored: 7,
            attempted: 6
        }
    );
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(7, b"seven"));
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_id_keep_the_higher_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    for round in 0..50u64 {
        let id = ActorId::new_v4();
        let (low, high) = (round * 2 + 1, round * 2 + 2);
        let (a, b) = (store.clone(), store.clone());
        // Alternate which one is submitted first.
        let (first, second) = if round % 2 == 0 {
            (low, high)
        } else {
            (high, low)
        };
        let ta = tokio::spawn(async move { a.try_write(id, env(first, b"x")).await });
        let tb = tokio::spawn(async move { b.try_write(id, env(second, b"y")).await });
        let (ra, rb) = (t(ta).await.unwrap(), t(tb).await.unwrap());
        for (seq, result) in [(first, ra), (second, rb)] {
            if let Err(e) = result {
                assert_eq!(seq, low, "only the lower write may be refused");
                assert!(e.is::<StaleSnapshot>(), "{e:#}");
            }
        }
        assert_eq!(sequence(&t(store.try_read(id)).await.unwrap()), high);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ids_many_writes_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let ids: Vec<ActorId> = (0..100).map(|_| ActorId::new_v4()).collect();
    let mut tasks = Vec::new();
    for &id in &ids {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 1..=10u64 {
                let payload = format!("{id}:{seq}");
                store.try_write(id, env(seq, payload.as_bytes())).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        t(task).await.unwrap().unwrap();
    }
    for &id in &ids {
        let bytes = t(store.try_read(id)).await.unwrap();
        assert_eq!(bytes, env(10, format!("{id}:10").as_bytes()));
    }
    let listed: HashSet<ActorId> = t(store.try_list()).await.unwrap().into_iter().collect();
    assert_eq!(listed, ids.iter().copied().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_existing_again_and_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(1, b"x"))).await.unwrap();
    t(store.try_delete(id)).await.unwrap();
    assert!(
        t(store.try_read(id))
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );
    t(store.try_delete(id)).await.unwrap();
    let never = ActorId::new_v4();
    t(store.try_delete(never)).await.unwrap();
    assert!(
        t(store.try_read(never))
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );
    // A deleted id can be written again from any sequence.
    t(store.try_write(id, env(0, b"again"))).await.unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(0, b"again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_exactly_the_live_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let ids: Vec<ActorId> = (0..40).map(|_| ActorId::new_v4()).collect();
    for &id in &ids {
        t(store.try_write(id, env(1, b"x"))).await.unwrap();
    }
    for &id in ids.iter().step_by(3) {
        t(store.try_delete(id)).await.unwrap();
    }
    let live: HashSet<ActorId> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, id)| *id)
        .collect();
    let listed = t(store.try_list()).await.unwrap();
    assert_eq!(listed.len(), live.len(), "no duplicates");
    assert_eq!(listed.into_iter().collect::<HashSet<_>>(), live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_reads_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    {
        let store = FsStorage::open(dir.path()).unwrap();
        for i in 0..20u64 {
            let id = ActorId::new_v4();
            let bytes = env(i, &vec![i as u8; (i * 100) as usize]);
            t(store.try_write(id, bytes.clone())).await.unwrap();
            written.push((id, bytes));
        }
    }
    let store = FsStorage::open(dir.path()).unwrap();
    for (id, bytes) in written {
        assert_eq!(t(store.try_read(id)).await.unwrap(), bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_is_locked_until_the_last_clone_drops() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let clone = store.clone();
    match FsStorage::open(dir.path()) {
        Err(FsError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let err = FsStorage::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    drop(store);
    assert!(matches!(
        FsStorage::open(dir.path()),
        Err(FsError::Locked { .. })
    ));
    // The clone still works.
    let id = ActorId::new_v4();
    t(clone.try_write(id, env(1, b"x"))).await.unwrap();
    drop(clone);
    let reopened = FsStorage::open(dir.path()).unwrap();
    assert_eq!(t(reopened.try_read(id)).await.unwrap(), env(1, b"x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_side_by_side() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s1 = FsStorage::open(d1.path()).unwrap();
    let s2 = FsStorage::builder(d2.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    assert_eq!(s2.durability(), Durability::Buffered);
    let id = ActorId::new_v4();
    t(s1.try_write(id, env(1, b"one"))).await.unwrap();
    t(s2.try_write(id, env(5, b"two"))).await.unwrap();
    assert_eq!(t(s1.try_read(id)).await.unwrap(), env(1, b"one"));
    assert_eq!(t(s2.try_read(id)).await.unwrap(), env(5, b"two"));
    // Independent sequences: s1 accepts 2 although s2 holds 5.
    t(s1.try_write(id, env(2, b"one'"))).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_handle_reaches_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let shared = store.shared().expect("cheap handle");
    let id = ActorId::new_v4();
    t(shared.try_write(id, env(1, b"x"))).await.unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_files_are_ignored_or_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let id = ActorId::new_v4();
    let good = env(3, b"good");
    {
        let store = FsStorage::open(dir.path()).unwrap();
        t(store.try_write(id, good.clone())).await.unwrap();
    }
    let sh = shard(dir.path(), id);
    let temp = sh.join(format!(".{id}.42.tmp"));
    std::fs::write(&temp, b"half a snaps").unwrap();
    std::fs::write(sh.join("notes.txt"), b"unrelated").unwrap();
    std::fs::write(sh.join("not-a-uuid.snap"), b"junk").unwrap();
    // A valid id in the wrong shard (its byte XOR differs by one), and a
    // non-canonical spelling.
    let mut other = *id.as_bytes();
    other[15] ^= 1;
    let other = ActorId::from_bytes(other);
    std::fs::write(sh.join(format!("{other}.snap")), b"misplaced").unwrap();
    std::fs::write(
        sh.join(format!("{}.snap", id.to_string().to_uppercase())),
        b"x",
    )
    .unwrap();
    std::fs::create_dir(snapshots(dir.path()).join("zz")).unwrap();
    std::fs::write(snapshots(dir.path()).join("README"), b"hi").unwrap();
    std::fs::write(dir.path().join("unrelated"), b"hi").unwrap();
    // A partial snapshot under a real name (not something this store writes).
    // (Same shard as `id`: two bytes flipped by the same mask keep the XOR.)
    let mut partial_id = *id.as_bytes();
    partial_id[14] ^= 0x5a;
    partial_id[15] ^= 0x5a;
    let partial_id = ActorId::from_bytes(partial_id);
    let mut partial = env(9, b"partial payload");
    partial.truncate(partial.len() - 5);
    std::fs::write(snap_file(dir.path(), partial_id), &partial).unwrap();

    let store = FsStorage::open(dir.path()).unwrap();
    assert!(!temp.exists(), "open removes leftover temp files");
    let listed: HashSet<ActorId> = t(store.try_list()).await.unwrap().into_iter().collect();
    assert_eq!(listed, HashSet::from([id, partial_id]));
    assert_eq!(t(store.try_read(id)).await.unwrap(), good);
    // The partial bytes are returned as they are (the core reports them corrupt);
    // a new valid snapshot replaces them.
    assert_eq!(t(store.try_read(partial_id)).await.unwrap(), partial);
    t(store.try_write(partial_id, env(1, b"fresh")))
        .await
        .unwrap();
    assert_eq!(
        t(store.try_read(partial_id)).await.unwrap(),
        env(1, b"fresh")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_0600_and_directories_0700() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested/store");
    let store = FsStorage::open(&dir).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(1, b"secret"))).await.unwrap();
    t(store.checkpoint()).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("journal")), 0o700);
    let segments = journal_segments(&dir);
    assert_eq!(segments.len(), 1);
    assert_eq!(mode(&segments[0]), 0o600);
    assert_eq!(mode(&parent.path().join("nested")), 0o700);
    assert_eq!(mode(&snapshots(&dir)), 0o700);
    assert_eq!(mode(&shard(&dir, id)), 0o700);
    assert_eq!(mode(&snap_file(&dir, id)), 0o600);
    assert_eq!(mode(&dir.join("LOCK")), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_on_a_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let err = FsStorage::open(&file).unwrap_err();
    assert!(err.to_string().contains("plain"), "{err}");
}

#[cfg(feature = "failpoints")]
mod failpoints {
    use super::*;
    use theta_persistence_fs::{Action, Step};

    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;

    /// A store with `old` written and checkpointed into its file.
    async fn setup() -> (tempfile::TempDir, FsStorage, ActorId) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path()).unwrap();
        let id = ActorId::new_v4();
        t(store.try_write(id, env(1, b"old"))).await.unwrap();
        t(store.checkpoint()).await.unwrap();
        (dir, store, id)
    }

    fn os_error(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
        let mut source = Some(err);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return io.raw_os_error();
            }
            source = e.source();
        }
        None
    }

    fn reopen_and_read(dir: &Path, id: ActorId) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = FsStorage::open(dir).unwrap();
        rt.block_on(t(store.try_read(id))).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journal_write_error_fails_the_write_and_keeps_the_old_snapshot() {
        for code in [EIO, ENOSPC] {
            let (dir, store, id) = setup().await;
            store.fail_next(Step::JournalWrite, Action::Error(code));
            let err = t(store.try_write(id, env(2, b"new"))).await.unwrap_err();
            assert_eq!(os_error(err.as_ref()), Some(code), "{err:#}");
            assert!(err.to_string().contains(&id.to_string()), "{err}");
            assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"old"));
            // Not a sync failure: the store keeps working, and the failed batch
            // was cut off the journal (the next write's record follows the good
            // ones, so a replay reads it).
            assert!(!store.is_poisoned());
            t(store.try_write(id, env(3, b"later"))).await.unwrap();
            let crashed = crash_copy(dir.path());
            drop(store);
            assert_eq!(
                tokio::task::block_in_place(|| reopen_and_read(crashed.path(), id)),
                env(3, b"later")
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journal_sync_error_fails_poisons_and_keeps_the_old_snapshot() {
        for code in [EIO, ENOSPC] {
            let (dir, store, id) = setup().await;
            store.fail_next(Step::JournalSync, Action::Error(code));
            let err = t(store.try_write(id, env(2, b"new"))).await.unwrap_err();
            assert!(err.to_string().contains(&id.to_string()), "{err}");
            assert!(format!("{err:#}").contains("syncing journal"), "{err:#}");
            assert!(store.is_poisoned());
            assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"old"));
            // Every later write fails, even a fresh id, until reopened.
            let err = t(store.try_write(ActorId::new_v4(), env(1, b"x")))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err.downcast_ref::<FsError>(),
                    Some(FsError::Poisoned { .. })
                ),
                "{err:#}"
            );
            assert!(t(store.try_delete(id)).await.is_err());
            assert!(matches!(
                t(store.checkpoint()).await,
                Err(FsError::Poisoned { .. })
            ));
            drop(store);
            let store = FsStorage::open(dir.path()).unwrap();
            assert!(!store.is_poisoned());
            assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"old"));
            t(store.try_write(id, env(2, b"new"))).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoint_file_errors_lose_nothing_and_are_retried() {
        for step in [Step::AfterTempWrite, Step::BeforeRename] {
            for code in [EIO, ENOSPC] {
                let (dir, store, id) = setup().await;
                t(store.try_write(id, env(2, b"new"))).await.unwrap();
                store.fail_next(step, Action::Error(code));
                let err = t(store.checkpoint()).await.unwrap_err();
                assert_eq!(os_error(&err), Some(code), "{step:?}: {err}");
                assert!(err.to_string().contains(&id.to_string()), "{err}");
                assert!(!store.is_poisoned());
                assert!(temp_files(dir.path()).is_empty(), "{step:?}");
                // The write is acknowledged and still read; the file is old.
                assert_eq!(t(store.try_read(id)).await.unwrap(), env(2, b"new"));
                assert_eq!(
                    std::fs::read(snap_file(dir.path(), id)).unwrap(),
                    env(1, b"old")
                );
                let crashed = crash_copy(dir.path());
                t(store.checkpoint()).await.unwrap();
                assert_eq!(
                    std::fs::read(snap_file(dir.path(), id)).unwrap(),
                    env(2, b"new")
                );
                drop(store);
                assert_eq!(
                    tokio::task::block_in_place(|| reopen_and_read(crashed.path(), id)),
                    env(2, b"new")
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoint_sync_error_poisons_and_loses_nothing() {
        let (dir, store, id) = setup().await;
        t(store.try_write(id, env(2, b"new"))).await.unwrap();
        store.fail_next(Step::CheckpointSync, Action::Error(EIO));
        assert!(t(store.checkpoint()).await.is_err());
        assert!(store.is_poisoned());
        assert_eq!(t(store.try_read(id)).await.unwrap(), env(2, b"new"));
        let err = t(store.try_write(id, env(3, b"x"))).await.unwrap_err();
        assert!(format!("{err:#}").contains("poisoned"), "{err:#}");
        drop(store);
        // The journal still holds the write; the open replays it.
        let store = FsStorage::open(dir.path()).unwrap();
        assert_eq!(t(store.try_read(id)).await.unwrap(), env(2, b"new"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segment_removal_error_keeps_the_journal() {
        let (dir, store, id) = setup().await;
        t(store.try_write(id, env(2, b"new"))).await.unwrap();
        store.fail_next(Step::SegmentDelete, Action::Error(EIO));
        assert!(t(store.checkpoint()).await.is_err());
        assert!(!store.is_poisoned());
        assert!(journal_segments(dir.path()).len() >= 2);
        // Segments are removed only after the files hold their writes.
        assert_eq!(
            std::fs::read(snap_file(dir.path(), id)).unwrap(),
            env(2, b"new")
        );
        t(store.try_write(id, env(3, b"newer"))).await.unwrap();
        t(store.checkpoint()).await.unwrap();
        assert_eq!(journal_segments(dir.path()).len(), 1);
        drop(store);
        let store = FsStorage::open(dir.path()).unwrap();
        assert_eq!(t(store.try_read(id)).await.unwrap(), env(3, b"newer"));
    }

    const CHILD_DIR: &str = "THETA_FS_ABORT_DIR";
    const CHILD_STEP: &str = "THETA_FS_ABORT_STEP";
    const STEPS: [Step; 6] = [
        Step::JournalWrite,
        Step::JournalSync,
        Step::AfterTempWrite,
        Step::BeforeRename,
        Step::CheckpointSync,
        Step::SegmentDelete,
    ];

    /// Runs only as the child of `abort_at_each_step_leaves_old_or_new`: writes
    /// `old` and checkpoints it, then aborts the process at the step, in the
    /// middle of writing `new` (journal steps) or of checkpointing the
    /// acknowledged `new` (checkpoint steps).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_child() {
        let (Ok(dir), Ok(step)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_STEP)) else {
            return;
        };
        let step = STEPS[step.parse::<usize>().unwrap()];
        let store = FsStorage::open(&dir).unwrap();
        let id = ActorId::from_u128(1);
        t(store.try_write(id, env(1, b"old"))).await.unwrap();
        t(store.checkpoint()).await.unwrap();
        if matches!(step, Step::JournalWrite | Step::JournalSync) {
            store.fail_next(step, Action::Abort);
            let _ = t(store.try_write(id, env(2, b"new"))).await;
        } else {
            t(store.try_write(id, env(2, b"new"))).await.unwrap();
            store.fail_next(step, Action::Abort);
            let _ = t(store.checkpoint()).await;
        }
        unreachable!("the failpoint aborts the process");
    }

    #[test]
    fn abort_at_each_step_leaves_old_or_new() {
        let exe = std::env::current_exe().unwrap();
        for (i, step) in STEPS.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let status = std::process::Command::new(&exe)
                .args(["--exact", "failpoints::abort_child", "--nocapture"])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_STEP, i.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "{step:?}: child must abort");
            let id = ActorId::from_u128(1);
            // Every abort comes after `new` reached the journal in the page cache
            // (which a process crash keeps): the replay brings it back whole. At
            // the checkpoint steps it was acknowledged, so it must.
            assert_eq!(reopen_and_read(dir.path(), id), env(2, b"new"), "{step:?}");
            assert!(temp_files(dir.path()).is_empty(), "{step:?}: temp cleaned");
            // ... and the orderly close of that store checkpointed it away.
            assert!(journal_segments(dir.path()).is_empty(), "{step:?}");
            assert_eq!(
                std::fs::read(snap_file(dir.path(), id)).unwrap(),
                env(2, b"new"),
                "{step:?}: the replay wrote the file"
            );
        }
    }
}

/// A (sparse) file longer than any envelope is refused without being read.
#[tokio::test]
async fn an_oversized_file_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let id = ActorId::new_v4();
    {
        let store = FsStorage::open(dir.path()).unwrap();
        t(store.try_write(id, env(1, b"small"))).await.unwrap();
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(snap_file(dir.path(), id))
        .unwrap();
    file.set_len(theta::persistence::envelope::MAX_ENVELOPE_LEN as u64 + 1)
        .unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let err = t(store.try_read(id)).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<theta_persistence_fs::FsError>(),
            Some(theta_persistence_fs::FsError::Oversized { .. })
        ),
        "{err:#}"
    );
    assert!(err.to_string().contains(&id.to_string()), "{err:#}");
}

/// A store of another layout is refused at open, never read as "no snapshots".
#[tokio::test]
async fn another_layout_is_refused_not_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let id = ActorId::new_v4();
    {
        let store = FsStorage::open(dir.path()).unwrap();
        t(store.try_write(id, env(1, b"state"))).await.unwrap();
    }
    let marker = dir.path().join("FORMAT");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "theta-persistence-fs layout 2\n"
    );

    std::fs::write(&marker, "theta-persistence-fs layout 3\n").unwrap();
    let Err(err) = FsStorage::open(dir.path()) else {
        panic!("a newer layout must be refused");
    };
    assert!(
        matches!(err, theta_persistence_fs::FsError::UnsupportedFormat { .. }),
        "{err}"
    );

    // Snapshots without any marker are not this layout's either.
    std::fs::remove_file(&marker).unwrap();
    let Err(err) = FsStorage::open(dir.path()) else {
        panic!("snapshots without a marker must be refused");
    };
    assert!(err.to_string().contains("no FORMAT file"), "{err}");
    assert!(snap_file(dir.path(), id).exists(), "nothing was touched");

    // An empty directory gets the marker and opens.
    let fresh = tempfile::tempdir().unwrap();
    FsStorage::open(fresh.path()).unwrap();
    assert!(fresh.path().join("FORMAT").exists());
}

/// Layout 1 (no journal) is layout 2 with an empty journal: it is upgraded, and
/// its snapshots read as they were.
#[tokio::test]
async fn layout_1_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let id = ActorId::new_v4();
    {
        let store = FsStorage::open(dir.path()).unwrap();
        t(store.try_write(id, env(4, b"state"))).await.unwrap();
    }
    // What a layout-1 build left: snapshot files, a marker, no journal.
    std::fs::remove_dir_all(dir.path().join("journal")).unwrap();
    let marker = dir.path().join("FORMAT");
    std::fs::write(&marker, "theta-persistence-fs layout 1\n").unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "theta-persistence-fs layout 2\n"
    );
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(4, b"state"));
    t(store.try_write(id, env(5, b"next"))).await.unwrap();
}

/// Acknowledged writes live in the journal until a checkpoint; a crash before
/// it is repaired by the next open, which replays the journal into the files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_checkpoint_is_replayed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let ids: Vec<ActorId> = (0..50).map(|_| ActorId::new_v4()).collect();
    let mut expected = std::collections::HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        for sequence in 1..=3u64 {
            let bytes = env(sequence, format!("{i}:{sequence}").as_bytes());
            t(store.try_write(*id, bytes.clone())).await.unwrap();
            expected.insert(*id, bytes);
        }
    }
    // Checkpoint, then change some more: a deleted one, a rewritten one, and
    // one deleted and written again with a lower sequence number.
    t(store.checkpoint()).await.unwrap();
    t(store.try_delete(ids[0])).await.unwrap();
    expected.remove(&ids[0]);
    t(store.try_write(ids[1], env(9, b"newer"))).await.unwrap();
    expected.insert(ids[1], env(9, b"newer"));
    t(store.try_delete(ids[2])).await.unwrap();
    t(store.try_write(ids[2], env(1, b"reborn"))).await.unwrap();
    expected.insert(ids[2], env(1, b"reborn"));
    // The files do not have the changes yet; reads do.
    assert!(snap_file(dir.path(), ids[0]).exists());
    assert_eq!(t(store.try_read(ids[1])).await.unwrap(), env(9, b"newer"));
    assert!(
        t(store.try_read(ids[0]))
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );

    let crashed = crash_copy(dir.path());
    drop(store);
    let reopened = FsStorage::open(crashed.path()).unwrap();
    for id in &ids {
        match expected.get(id) {
            Some(bytes) => assert_eq!(&t(reopened.try_read(*id)).await.unwrap(), bytes),
            None => assert!(
                t(reopened.try_read(*id))
                    .await
                    .unwrap_err()
                    .is::<SnapshotNotFound>()
            ),
        }
    }
    let listed: HashSet<ActorId> = t(reopened.try_list()).await.unwrap().into_iter().collect();
    assert_eq!(listed, expected.keys().copied().collect::<HashSet<_>>());
    // The replay wrote the files and emptied the journal (one fresh segment).
    assert!(!snap_file(crashed.path(), ids[0]).exists());
    assert_eq!(
        std::fs::read(snap_file(crashed.path(), ids[1])).unwrap(),
        env(9, b"newer")
    );
    assert_eq!(journal_segments(crashed.path()).len(), 1);
    // And the stale check sees the replayed sequence numbers.
    let err = t(reopened.try_write(ids[1], env(8, b"older")))
        .await
        .unwrap_err();
    assert!(err.is::<StaleSnapshot>(), "{err:#}");
}

/// With a small journal limit, checkpoints run while writes go on; nothing is
/// lost or reordered, and the journal stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_run_while_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::builder(dir.path())
        .journal_limit(4096)
        .open()
        .unwrap();
    let ids: Vec<ActorId> = (0..16).map(|_| ActorId::new_v4()).collect();
    let mut tasks = Vec::new();
    for id in ids.clone() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for sequence in 1..=100u64 {
                let bytes = env(sequence, &[sequence as u8; 200]);
                store.try_write(id, bytes).await.unwrap();
                if sequence % 25 == 0 {
                    // A stale write is still refused mid-checkpoint.
                    let err = store.try_write(id, env(1, b"old")).await.unwrap_err();
                    assert!(err.is::<StaleSnapshot>(), "{err:#}");
                }
            }
        }));
    }
    for task in tasks {
        t(task).await.unwrap();
    }
    let last = env(100, &[100; 200]);
    for id in &ids {
        assert_eq!(t(store.try_read(*id)).await.unwrap(), last);
    }
    // 16 × 100 records of ~250 bytes passed through a 4 KiB journal: files were
    // written by checkpoints before the store closed, and old segments removed.
    let files = ids
        .iter()
        .filter(|id| snap_file(dir.path(), **id).exists())
        .count();
    assert!(files > 0, "no checkpoint ran");
    assert!(journal_segments(dir.path()).len() <= 3);
    let crashed = crash_copy(dir.path());
    drop(store);
    for path in [dir.path(), crashed.path()] {
        let reopened = FsStorage::open(path).unwrap();
        for id in &ids {
            assert_eq!(t(reopened.try_read(*id)).await.unwrap(), last);
        }
    }
    // The orderly close checkpointed everything.
    for id in &ids {
        assert_eq!(std::fs::read(snap_file(dir.path(), *id)).unwrap(), last);
    }
}

/// Damage to acknowledged journal records fails the open, naming the segment;
/// it is never skipped (which would bring back older snapshots), even in the
/// newest segment, where a torn tail is expected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_fails_open_naming_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    // Two acknowledged writes, one after the other: two batches.
    t(store.try_write(id, env(1, b"first"))).await.unwrap();
    t(store.try_write(id, env(2, b"second"))).await.unwrap();
    let crashed = crash_copy(dir.path());
    drop(store);
    let segments = journal_segments(crashed.path());
    assert_eq!(segments.len(), 1);
    let segment = &segments[0];
    let whole = std::fs::read(segment).unwrap();
    let name = segment.file_name().unwrap().to_str().unwrap();

    // A bit flipped in the first batch (header 36 bytes, then the batch).
    let mut damaged = whole.clone();
    damaged[36 + 30] ^= 0x01;
    std::fs::write(segment, &damaged).unwrap();
    let err = FsStorage::open(crashed.path()).unwrap_err();
    assert!(
        matches!(&err, FsError::CorruptJournal { path, offset: 36, .. } if path == segment),
        "{err}"
    );
    assert!(err.to_string().contains(name), "{err}");
    // Nothing was changed: the same open fails the same way.
    assert!(matches!(
        FsStorage::open(crashed.path()),
        Err(FsError::CorruptJournal { .. })
    ));

    // The same flip in the last batch is a torn tail: the first write stands.
    let mut torn = whole.clone();
    let last = whole.len() - 10;
    torn[last] ^= 0x01;
    std::fs::write(segment, &torn).unwrap();
    let store = FsStorage::open(crashed.path()).unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"first"));
}

/// A write larger than any envelope is refused with a typed error naming the
/// actor; the store goes on.
#[tokio::test]
async fn a_write_larger_than_any_envelope_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    let huge = vec![0u8; theta::persistence::envelope::MAX_ENVELOPE_LEN + 1];
    let err = t(store.try_write(id, huge)).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<FsError>(),
            Some(FsError::TooLarge { .. })
        ),
        "{err:#}"
    );
    assert!(err.to_string().contains(&id.to_string()), "{err:#}");
    t(store.try_write(id, env(1, b"fine"))).await.unwrap();
}
