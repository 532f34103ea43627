//! Behaviour of `FsStorage`: the storage contract, the on-disk layout, locking,
//! and (feature `failpoints`) injected I/O errors and crashes at each commit step.

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
    t(store.try_write(id, env(2, b"2 again"))).await.unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(2, b"2 again"));
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
    assert_eq!(mode(&dir), 0o700);
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

    async fn setup() -> (tempfile::TempDir, FsStorage, ActorId) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path()).unwrap();
        let id = ActorId::new_v4();
        t(store.try_write(id, env(1, b"old"))).await.unwrap();
        (dir, store, id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_and_rename_errors_fail_the_write_and_keep_the_old_snapshot() {
        for step in [Step::AfterTempWrite, Step::BeforeRename] {
            for code in [EIO, ENOSPC] {
                let (dir, store, id) = setup().await;
                store.fail_next(step, Action::Error(code));
                let err = t(store.try_write(id, env(2, b"new"))).await.unwrap_err();
                let io = err
                    .chain()
                    .find_map(|e| e.downcast_ref::<std::io::Error>())
                    .expect("io error in chain");
                assert_eq!(io.raw_os_error(), Some(code), "{step:?}: {err:#}");
                assert!(err.to_string().contains(&id.to_string()), "{err}");
                assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"old"));
                assert!(temp_files(dir.path()).is_empty(), "{step:?}");
                // Not a sync failure: the store keeps working.
                assert!(!store.is_poisoned());
                t(store.try_write(id, env(3, b"later"))).await.unwrap();
                assert_eq!(t(store.try_read(id)).await.unwrap(), env(3, b"later"));
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_sync_error_fails_poisons_and_keeps_the_old_snapshot() {
        for code in [EIO, ENOSPC] {
            let (dir, store, id) = setup().await;
            store.fail_next(Step::DataSync, Action::Error(code));
            let err = t(store.try_write(id, env(2, b"new"))).await.unwrap_err();
            assert!(err.to_string().contains("syncing"), "{err:#}");
            assert!(store.is_poisoned());
            assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"old"));
            assert!(temp_files(dir.path()).is_empty());
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
            drop(store);
            let store = FsStorage::open(dir.path()).unwrap();
            assert!(!store.is_poisoned());
            assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"old"));
            t(store.try_write(id, env(2, b"new"))).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metadata_sync_error_fails_and_poisons() {
        let (dir, store, id) = setup().await;
        store.fail_next(Step::DirSync, Action::Error(EIO));
        assert!(t(store.try_write(id, env(2, b"new"))).await.is_err());
        assert!(store.is_poisoned());
        // The rename happened but was not acknowledged: whole old or whole new.
        let bytes = t(store.try_read(id)).await.unwrap();
        assert!(bytes == env(1, b"old") || bytes == env(2, b"new"));
        let err = t(store.try_write(id, env(3, b"x"))).await.unwrap_err();
        assert!(err.to_string().contains("poisoned"), "{err:#}");
        drop(store);
        FsStorage::open(dir.path()).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_sync_error_poisons() {
        let (_dir, store, id) = setup().await;
        store.fail_next(Step::DirSync, Action::Error(EIO));
        assert!(t(store.try_delete(id)).await.is_err());
        assert!(store.is_poisoned());
    }

    const CHILD_DIR: &str = "THETA_FS_ABORT_DIR";
    const CHILD_STEP: &str = "THETA_FS_ABORT_STEP";
    const STEPS: [Step; 4] = [
        Step::AfterTempWrite,
        Step::DataSync,
        Step::BeforeRename,
        Step::DirSync,
    ];

    /// Runs only as the child of `abort_at_each_step`: writes `old` durably, then
    /// aborts the process in the middle of writing `new`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_child() {
        let (Ok(dir), Ok(step)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_STEP)) else {
            return;
        };
        let step = STEPS[step.parse::<usize>().unwrap()];
        let store = FsStorage::open(&dir).unwrap();
        let id = ActorId::from_u128(1);
        t(store.try_write(id, env(1, b"old"))).await.unwrap();
        store.fail_next(step, Action::Abort);
        let _ = t(store.try_write(id, env(2, b"new"))).await;
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
            // The child wrote a temp file and then died.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let store = FsStorage::open(dir.path()).unwrap();
            assert!(temp_files(dir.path()).is_empty(), "{step:?}: temp cleaned");
            let id = ActorId::from_u128(1);
            let bytes = rt.block_on(t(store.try_read(id))).unwrap();
            let expected = match step {
                // Killed after the rename: the page cache has the new file.
                Step::DirSync => env(2, b"new"),
                _ => env(1, b"old"),
            };
            assert_eq!(bytes, expected, "{step:?}");
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
        "theta-persistence-fs layout 1\n"
    );

    std::fs::write(&marker, "theta-persistence-fs layout 2\n").unwrap();
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
