//! Behaviour of `FsStorage` beyond the storage contract (which the conformance
//! kit checks, in `tests/tests/conformance_fs.rs`): the on-disk layout,
//! locking, the journal and its checkpoints, the index, damage and attacks on
//! the directory, and (feature `failpoints`) injected I/O errors at each step
//! of a write, a checkpoint and a rotation. Crashes at each step are in
//! `tests/abort.rs`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use theta::ActorId;
use theta::persistence::{
    ClaimMode, Durability, OwnerId, PersistentStorage, SnapshotNotFound, SnapshotTooLarge,
    StaleSnapshot, StorageClosed, envelope,
};
use theta_persistence_fs::{FsError, FsStorage};

const TYPE: uuid::Uuid = uuid::uuid!("6d1b7c9e-0000-4000-8000-00000000f5f5");

async fn t<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("timed out")
}

fn env(sequence: u64, payload: &[u8]) -> Vec<u8> {
    envelope::seal(TYPE, 0, sequence, payload)
}

fn typed(actor_type: uuid::Uuid, id: ActorId, payload: &[u8]) -> Vec<u8> {
    envelope::Seal::new(actor_type)
        .actor_id(id)
        .sequence(1)
        .seal(payload)
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

/// Every file under `snapshots/` whose name ends in `.tmp`. The directory must
/// exist: a scan of nothing would prove nothing.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let shards = std::fs::read_dir(snapshots(dir))
        .unwrap_or_else(|e| panic!("{}: {e}", snapshots(dir).display()));
    let mut out = Vec::new();
    for shard in shards.map(Result::unwrap) {
        if !shard.file_type().unwrap().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(shard.path()).unwrap().map(Result::unwrap) {
            if file.file_name().to_string_lossy().ends_with(".tmp") {
                out.push(file.path());
            }
        }
    }
    out
}

/// The journal segment files, oldest first (the directory must exist).
fn journal_segments(dir: &Path) -> Vec<PathBuf> {
    let journal = dir.join("journal");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&journal)
        .unwrap_or_else(|e| panic!("{}: {e}", journal.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    out.sort();
    out
}

/// Segment files hold their header (60 bytes), then batches.
const SEGMENT_HEADER: u64 = 60;

/// A copy of an open store's directory: what a `kill -9` at this moment would
/// leave on disk (the page cache survives a process crash), provided no write is
/// in flight. A checkpoint may be: so the journal is copied first, and again
/// until it did not change while it was copied (a copy of a checkpoint moving
/// the journal's start and removing segments, half done, is no state a kill
/// leaves); the snapshot files after it are as new as the journal, or newer.
fn crash_copy(dir: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path, skip: &[&str]) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let name = entry.file_name();
            if skip.iter().any(|s| name == *s) {
                continue;
            }
            let target = to.join(&name);
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => copy(&entry.path(), &target, &[]),
                Ok(_) => match std::fs::copy(entry.path(), &target) {
                    Ok(_) => {}
                    // Removed (or renamed) by a checkpoint meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("copying {}: {e}", entry.path().display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("{}: {e}", entry.path().display()),
            }
        }
    }
    let journal_state = |dir: &Path| {
        let mut state: Vec<_> = std::fs::read_dir(dir.join("journal"))
            .unwrap()
            .flatten()
            .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).ok()))
            .collect();
        state.sort();
        (std::fs::read(dir.join("journal/START")).ok(), state)
    };
    let out = tempfile::tempdir().unwrap();
    loop {
        let before = journal_state(dir);
        let _ = std::fs::remove_dir_all(out.path().join("journal"));
        copy(&dir.join("journal"), &out.path().join("journal"), &[]);
        if journal_state(dir) == before {
            break;
        }
    }
    copy(dir, out.path(), &["journal", "LOCK"]);
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The `FsError` inside a storage error.
fn fs_error(err: &anyhow::Error) -> &FsError {
    err.downcast_ref::<FsError>()
        .unwrap_or_else(|| panic!("not an FsError: {err:#}"))
}

fn open_err(dir: &Path) -> FsError {
    match FsStorage::open(dir) {
        Ok(store) => panic!("{} opened: {store:?}", dir.display()),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_write_names_both_sequences_from_memory_files_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = ActorId::new_v4();
    let stale = |err: anyhow::Error| *err.downcast_ref::<StaleSnapshot>().expect("stale");
    let expected = StaleSnapshot {
        id,
        stored: 7,
        attempted: 6,
    };
    {
        let store = FsStorage::open(dir.path()).unwrap();
        t(store.try_write(id, env(7, b"seven"))).await.unwrap();
        // The stored stamp from the pending write, then from the index.
        let err = t(store.try_write(id, env(6, b"six"))).await.unwrap_err();
        assert_eq!(stale(err), expected);
        t(store.checkpoint()).await.unwrap();
        let err = t(store.try_write(id, env(6, b"six"))).await.unwrap_err();
        assert_eq!(stale(err), expected);
    }
    // ... and from the header the open read.
    let store = FsStorage::open(dir.path()).unwrap();
    let err = t(store.try_write(id, env(6, b"six"))).await.unwrap_err();
    assert_eq!(stale(err), expected);
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(7, b"seven"));
    t(store.try_write(id, env(8, b"eight"))).await.unwrap();
}

/// A deleted snapshot's stamp outlives the checkpoint that removes its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_outlives_the_checkpoint_that_removes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(5, b"five"))).await.unwrap();
    t(store.checkpoint()).await.unwrap();
    assert!(snap_file(dir.path(), id).exists());
    t(store.try_delete(id)).await.unwrap();
    t(store.checkpoint()).await.unwrap();
    assert!(!snap_file(dir.path(), id).exists());
    for (sequence, what) in [(3, "older"), (5, "equal")] {
        let err = t(store.try_write(id, env(sequence, b"old")))
            .await
            .unwrap_err();
        assert_eq!(
            err.downcast_ref::<StaleSnapshot>(),
            Some(&StaleSnapshot {
                id,
                stored: 5,
                attempted: sequence
            }),
            "{what}: {err:#}"
        );
    }
    t(store.try_write(id, env(6, b"newer"))).await.unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(6, b"newer"));
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
    assert_eq!(s1.durability(), Durability::PowerLoss);
    let s2 = FsStorage::builder(d2.path())
        .durability(Durability::ProcessKill)
        .open()
        .unwrap();
    assert_eq!(s2.durability(), Durability::ProcessKill);
    let id = ActorId::new_v4();
    t(s1.try_write(id, env(1, b"one"))).await.unwrap();
    t(s2.try_write(id, env(5, b"two"))).await.unwrap();
    assert_eq!(t(s1.try_read(id)).await.unwrap(), env(1, b"one"));
    assert_eq!(t(s2.try_read(id)).await.unwrap(), env(5, b"two"));
    // Independent sequences: s1 accepts 2 although s2 holds 5.
    t(s1.try_write(id, env(2, b"one'"))).await.unwrap();
}

#[tokio::test]
async fn volatile_durability_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let err = FsStorage::builder(dir.path())
        .durability(Durability::Volatile)
        .open()
        .unwrap_err();
    match &err {
        FsError::UnsupportedDurability(unsupported) => {
            assert_eq!(unsupported.requested, Durability::Volatile);
            assert_eq!(
                unsupported.offered,
                &[Durability::PowerLoss, Durability::ProcessKill]
            );
        }
        other => panic!("expected UnsupportedDurability, got {other:?}"),
    }
    assert!(err.to_string().contains("theta-persistence-fs"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
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
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());
    let listed: HashSet<ActorId> = t(store.try_list()).await.unwrap().into_iter().collect();
    assert_eq!(listed, HashSet::from([id, partial_id]));
    assert!(
        t(store.try_read(other))
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>(),
        "a file in the wrong shard is not the id's snapshot"
    );
    assert_eq!(t(store.try_read(id)).await.unwrap(), good);
    // The partial bytes are returned as they are (the core reports them corrupt).
    assert_eq!(t(store.try_read(partial_id)).await.unwrap(), partial);
    // Listing by type cannot tell its type: it fails, naming it.
    let err = t(store.try_list_type(TYPE)).await.unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains(&partial_id.to_string()), "{message}");
    assert!(
        message.contains(&snap_file(dir.path(), partial_id).display().to_string()),
        "{message}"
    );
    // A new valid snapshot replaces it, and listing works again.
    t(store.try_write(partial_id, env(1, b"fresh")))
        .await
        .unwrap();
    assert_eq!(
        t(store.try_read(partial_id)).await.unwrap(),
        env(1, b"fresh")
    );
    let mut of_type = t(store.try_list_type(TYPE)).await.unwrap();
    of_type.sort();
    let mut want = vec![id, partial_id];
    want.sort();
    assert_eq!(of_type, want);
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
    for file in ["LOCK", "FORMAT", "GENERATION", "journal/START"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_on_a_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    match open_err(&file) {
        FsError::Io { path, source, .. } => {
            assert_eq!(path, file);
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists);
        }
        other => panic!("expected an I/O error naming the file, got {other:?}"),
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
    let limit = envelope::MAX_ENVELOPE_LEN as u64;
    file.set_len(limit + 1).unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let err = t(store.try_read(id)).await.unwrap_err();
    match fs_error(&err) {
        FsError::Oversized {
            path,
            len,
            limit: refused_over,
        } => {
            assert_eq!(path, &snap_file(dir.path(), id));
            assert_eq!((*len, *refused_over), (limit + 1, limit));
        }
        other => panic!("expected Oversized, got {other:?}"),
    }
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
        "theta-persistence-fs layout 3\n"
    );

    std::fs::write(&marker, "theta-persistence-fs layout 4\n").unwrap();
    match open_err(dir.path()) {
        FsError::UnsupportedFormat { path, found } => {
            assert_eq!(path, marker);
            assert_eq!(found, "theta-persistence-fs layout 4");
        }
        other => panic!("a newer layout must be refused: {other:?}"),
    }

    // Snapshots without any marker are not this layout's either.
    std::fs::remove_file(&marker).unwrap();
    match open_err(dir.path()) {
        FsError::NotAStore { path, found } => {
            assert_eq!(path, dir.path());
            assert!(found.contains("no layout marker"), "{found}");
            assert!(found.contains("`snapshots/`"), "{found}");
        }
        other => panic!("snapshots without a marker must be refused: {other:?}"),
    }
    assert!(snap_file(dir.path(), id).exists(), "nothing was touched");

    // An empty directory gets the marker and opens.
    let fresh = tempfile::tempdir().unwrap();
    FsStorage::open(fresh.path()).unwrap();
    assert!(fresh.path().join("FORMAT").exists());
}

/// Layout 1 (no journal) is layout 3 with an empty journal: it is upgraded, and
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
    std::fs::remove_file(dir.path().join("GENERATION")).unwrap();
    let marker = dir.path().join("FORMAT");
    std::fs::write(&marker, "theta-persistence-fs layout 1\n").unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "theta-persistence-fs layout 3\n"
    );
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(4, b"state"));
    t(store.try_write(id, env(5, b"next"))).await.unwrap();
    drop(store);
    let store = FsStorage::open(dir.path()).unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(5, b"next"));
}

/// Puts of snapshots: (id, envelope).
type Puts = Vec<(ActorId, Vec<u8>)>;

/// A version-1 segment (layout 2) holding one batch of puts.
fn v1_segment(number: u64, puts: &[(ActorId, Vec<u8>)]) -> Vec<u8> {
    let salt = 0x5eed_0000 + number;
    let mut bytes = b"THETAJNL".to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes()); // version
    bytes.extend_from_slice(&1u32.to_le_bytes()); // SYNCED
    bytes.extend_from_slice(&number.to_le_bytes());
    bytes.extend_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let mut records = Vec::new();
    for (id, snapshot) in puts {
        records.push(1);
        records.extend_from_slice(id.as_bytes());
        records.extend_from_slice(&(snapshot.len() as u32).to_le_bytes());
        records.extend_from_slice(snapshot);
    }
    let offset = bytes.len() as u64;
    let mut crc = crc32c::crc32c(&salt.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &offset.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &(records.len() as u32).to_le_bytes());
    crc = crc32c::crc32c_append(crc, &records);
    bytes.extend_from_slice(&(records.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&offset.to_le_bytes());
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes.extend_from_slice(&records);
    bytes
}

/// What a layout-2 build left after a crash: a marker, no snapshot files, and
/// version-1 segments.
fn legacy_store(dir: &Path, segments: &[(u64, Puts)]) {
    std::fs::write(dir.join("FORMAT"), "theta-persistence-fs layout 2\n").unwrap();
    std::fs::create_dir(snapshots(dir)).unwrap();
    let journal = dir.join("journal");
    std::fs::create_dir(&journal).unwrap();
    for (number, puts) in segments {
        std::fs::write(
            journal.join(format!("{number:016x}.log")),
            v1_segment(*number, puts),
        )
        .unwrap();
    }
}

/// A layout-2 store whose journal a crash left (version-1 segments, with a gap
/// in their numbers, which layout 2 could leave) is replayed and upgraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_2_with_a_journal_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (ActorId::new_v4(), ActorId::new_v4());
    legacy_store(
        dir.path(),
        &[
            (3, vec![(a, env(1, b"a1")), (b, env(1, b"b1"))]),
            (5, vec![(a, env(2, b"a2"))]),
        ],
    );
    {
        let store = FsStorage::open(dir.path()).unwrap();
        assert_eq!(t(store.try_read(a)).await.unwrap(), env(2, b"a2"));
        assert_eq!(t(store.try_read(b)).await.unwrap(), env(1, b"b1"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
            "theta-persistence-fs layout 3\n"
        );
        t(store.try_write(b, env(2, b"b2"))).await.unwrap();
        // A crash now: the upgraded journal (v1 segments and a v2 one) replays.
        let crashed = crash_copy(dir.path());
        let store = FsStorage::open(crashed.path()).unwrap();
        assert_eq!(t(store.try_read(a)).await.unwrap(), env(2, b"a2"));
        assert_eq!(t(store.try_read(b)).await.unwrap(), env(2, b"b2"));
    }
    let store = FsStorage::open(dir.path()).unwrap();
    assert_eq!(t(store.try_read(a)).await.unwrap(), env(2, b"a2"));
    assert_eq!(t(store.try_read(b)).await.unwrap(), env(2, b"b2"));
}

/// Acknowledged writes live in the journal until a checkpoint; a crash before
/// it is repaired by the next open, which replays the journal (and a
/// checkpoint then writes the files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_checkpoint_is_replayed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let ids: Vec<ActorId> = (0..50).map(|_| ActorId::new_v4()).collect();
    let mut expected = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        for sequence in 1..=3u64 {
            let bytes = env(sequence, format!("{i}:{sequence}").as_bytes());
            t(store.try_write(*id, bytes.clone())).await.unwrap();
            expected.insert(*id, bytes);
        }
    }
    // Checkpoint, then change some more: a deleted one, a rewritten one, and
    // one deleted and written again.
    t(store.checkpoint()).await.unwrap();
    t(store.try_delete(ids[0])).await.unwrap();
    expected.remove(&ids[0]);
    t(store.try_write(ids[1], env(9, b"newer"))).await.unwrap();
    expected.insert(ids[1], env(9, b"newer"));
    t(store.try_delete(ids[2])).await.unwrap();
    t(store.try_write(ids[2], env(4, b"reborn"))).await.unwrap();
    expected.insert(ids[2], env(4, b"reborn"));
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
    // A checkpoint writes the files and leaves the journal one fresh segment.
    t(reopened.checkpoint()).await.unwrap();
    assert!(!snap_file(crashed.path(), ids[0]).exists());
    assert_eq!(
        std::fs::read(snap_file(crashed.path(), ids[1])).unwrap(),
        env(9, b"newer")
    );
    let segments = journal_segments(crashed.path());
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(
        std::fs::metadata(&segments[0]).unwrap().len(),
        SEGMENT_HEADER
    );
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

    // A bit flipped in the first batch (after the segment header).
    let mut damaged = whole.clone();
    damaged[SEGMENT_HEADER as usize + 30] ^= 0x01;
    std::fs::write(segment, &damaged).unwrap();
    match open_err(crashed.path()) {
        err @ FsError::CorruptJournal { .. } => {
            assert!(
                matches!(&err, FsError::CorruptJournal { path, offset, .. }
                    if path == segment && *offset == SEGMENT_HEADER),
                "{err}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
        other => panic!("expected CorruptJournal, got {other:?}"),
    }
    // Nothing was changed: the same open fails the same way.
    assert!(matches!(
        open_err(crashed.path()),
        FsError::CorruptJournal { offset, .. } if offset == SEGMENT_HEADER
    ));

    // The same flip in the last batch is a torn tail: the first write stands.
    let mut torn = whole.clone();
    let last = whole.len() - 10;
    torn[last] ^= 0x01;
    std::fs::write(segment, &torn).unwrap();
    let store = FsStorage::open(crashed.path()).unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"first"));
}

/// A write larger than any envelope is refused before it goes anywhere, naming
/// the actor; the store goes on.
#[tokio::test]
async fn a_write_larger_than_any_envelope_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    let huge = vec![0u8; envelope::MAX_ENVELOPE_LEN + 1];
    let err = t(store.try_write(id, huge)).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<SnapshotTooLarge>(),
        Some(&SnapshotTooLarge {
            id,
            len: envelope::MAX_ENVELOPE_LEN + 1,
            limit: envelope::MAX_ENVELOPE_LEN
        }),
        "{err:#}"
    );
    t(store.try_write(id, env(1, b"fine"))).await.unwrap();
}

/// A takeover racing a write of the previous owner: the write is fenced, or
/// acknowledged before the takeover, whose snapshot then holds it. Never
/// acknowledged after the takeover without the takeover seeing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_racing_a_write_either_fences_it_or_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let (mut fenced, mut seen) = (0, 0);
    for round in 0..300u64 {
        let id = ActorId::new_v4();
        let (a, b) = (OwnerId::new(), OwnerId::new());
        let old = t(store.try_claim(id, a, ClaimMode::Exclusive))
            .await
            .unwrap();
        let bytes = envelope::Seal::new(TYPE)
            .actor_id(id)
            .epoch(old.epoch)
            .sequence(1)
            .seal(&round.to_le_bytes());
        let writer = {
            let (store, bytes) = (store.clone(), bytes.clone());
            tokio::spawn(async move { store.try_write(id, bytes).await })
        };
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        let new = t(store.try_claim(id, b, ClaimMode::Takeover))
            .await
            .unwrap();
        match t(writer).await.unwrap() {
            Ok(()) => {
                assert_eq!(
                    new.snapshot.as_ref(),
                    Some(&bytes),
                    "round {round}: the old owner's write was acknowledged, the takeover did not see it"
                );
                seen += 1;
            }
            Err(e) => {
                assert!(e.is::<theta::persistence::Fenced>(), "round {round}: {e:#}");
                assert_eq!(new.snapshot, None, "round {round}");
                fenced += 1;
            }
        }
    }
    eprintln!("{fenced} fenced, {seen} seen by the takeover");
}

/// A snapshot file removed behind the open store's back is reported missing
/// (the index remembers the store wrote it); after a reopen nothing records it,
/// and it reads as absent (see "What cannot be detected", ARCHITECTURE.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_removed_behind_the_store_is_reported_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(1, b"x"))).await.unwrap();
    t(store.checkpoint()).await.unwrap();
    std::fs::remove_file(snap_file(dir.path(), id)).unwrap();
    let err = t(store.try_read(id)).await.unwrap_err();
    match fs_error(&err) {
        FsError::Missing { id: missing, path } => {
            assert_eq!((*missing, path), (id, &snap_file(dir.path(), id)));
        }
        other => panic!("expected Missing, got {other:?}"),
    }
    drop(store);
    let store = FsStorage::open(dir.path()).unwrap();
    assert!(
        t(store.try_read(id))
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );
}

/// `rm -r` of the store directory while it writes: a sync of the unlinked
/// segment succeeds and makes nothing durable, so every write submitted after
/// the removal is refused (naming the segment), and the store stays poisoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_store_directory_refuses_every_later_write() {
    for durability in [Durability::PowerLoss, Durability::ProcessKill] {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("store");
        let store = FsStorage::builder(&dir)
            .durability(durability)
            .open()
            .unwrap();
        let removed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        for i in 0..16u128 {
            let (store, removed) = (store.clone(), removed.clone());
            writers.push(tokio::spawn(async move {
                let id = ActorId::from_u128(i + 1);
                let mut acked_after_removal = 0;
                for sequence in 1.. {
                    let after = removed.load(std::sync::atomic::Ordering::SeqCst);
                    match store.try_write(id, env(sequence, b"state")).await {
                        Ok(()) if after => acked_after_removal += 1,
                        Ok(()) => {}
                        Err(e) => return (acked_after_removal, e),
                    }
                }
                unreachable!()
            }));
        }
        // Let the writers get going, then remove the directory under them.
        t(async {
            while journal_segments(&dir)
                .first()
                .is_none_or(|s| std::fs::metadata(s).unwrap().len() < 10_000)
            {
                tokio::task::yield_now().await;
            }
        })
        .await;
        std::fs::remove_dir_all(&dir).unwrap();
        removed.store(true, std::sync::atomic::Ordering::SeqCst);
        for writer in writers {
            let (acked_after_removal, err) = t(writer).await.unwrap();
            assert_eq!(
                acked_after_removal, 0,
                "{durability:?}: acknowledged into a removed directory"
            );
            match fs_error(&err) {
                FsError::Vanished { path, .. } => {
                    assert!(path.starts_with(&dir), "{}", path.display());
                }
                other => panic!("{durability:?}: expected Vanished, got {other:?}"),
            }
        }
        assert!(store.is_poisoned());
        let err = t(store.try_write(ActorId::new_v4(), env(1, b"x")))
            .await
            .unwrap_err();
        assert!(
            matches!(fs_error(&err), FsError::Vanished { .. }),
            "{err:#}"
        );
        let err = t(store.try_claim(ActorId::new_v4(), OwnerId::new(), ClaimMode::Exclusive))
            .await
            .unwrap_err();
        assert!(
            matches!(fs_error(&err), FsError::Vanished { .. }),
            "{err:#}"
        );
        assert!(matches!(
            t(store.checkpoint()).await,
            Err(FsError::Vanished { .. })
        ));
    }
}

/// A store directory moved (or replaced) while open is noticed at the next
/// checkpoint: writes are refused, and nothing acknowledged is lost (it is in
/// the moved directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_store_directory_is_noticed_at_the_next_checkpoint() {
    let parent = tempfile::tempdir().unwrap();
    let (dir, moved) = (parent.path().join("store"), parent.path().join("moved"));
    let store = FsStorage::open(&dir).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(1, b"kept"))).await.unwrap();
    std::fs::rename(&dir, &moved).unwrap();
    match t(store.checkpoint()).await {
        Err(FsError::Vanished { path, cause }) => {
            assert_eq!(path, dir);
            assert!(cause.contains("moved"), "{cause}");
        }
        other => panic!("expected Vanished, got {other:?}"),
    }
    let err = t(store.try_write(id, env(2, b"lost"))).await.unwrap_err();
    assert!(matches!(fs_error(&err), FsError::Vanished { path, .. } if *path == dir));
    drop(store);
    let store = FsStorage::open(&moved).unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"kept"));

    // Replaced: the directory removed and made again, empty (once the open's
    // checkpoint of the replayed journal is done: nothing else writes then).
    drop(store);
    let store = FsStorage::open(&moved).unwrap();
    t(store.checkpoint()).await.unwrap();
    std::fs::remove_dir_all(&moved).unwrap();
    std::fs::create_dir(&moved).unwrap();
    let err = t(store.try_write(id, env(2, b"lost"))).await.unwrap_err();
    assert!(
        matches!(fs_error(&err), FsError::Vanished { .. }),
        "{err:#}"
    );
}

/// A store opened by a relative path is not taken for a moved one when the
/// process changes its working directory. (Every other test here uses absolute
/// paths, so the change of directory does not disturb them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_store_path_survives_a_change_of_working_directory() {
    let parent = tempfile::tempdir().unwrap();
    std::env::set_current_dir(parent.path()).unwrap();
    let store = FsStorage::open("relative-store").unwrap();
    std::env::set_current_dir(std::env::temp_dir()).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(1, b"x"))).await.unwrap();
    t(store.checkpoint()).await.unwrap();
    assert!(!store.is_poisoned());
    assert_eq!(
        std::fs::read(snap_file(&parent.path().join("relative-store"), id)).unwrap(),
        env(1, b"x")
    );
}

/// Listing one type reads no snapshot file (of that type or another): the
/// files of type B, damaged behind the store's back, do not disturb listing A,
/// and B is listed from the index too. After a reopen the damage is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_a_type_reads_no_snapshot_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let of_a: Vec<ActorId> = (0..5).map(|_| ActorId::new_v4()).collect();
    let of_b: Vec<ActorId> = (0..5).map(|_| ActorId::new_v4()).collect();
    let store = FsStorage::open(dir.path()).unwrap();
    for id in &of_a {
        t(store.try_write(*id, typed(a, *id, b"a"))).await.unwrap();
    }
    for id in &of_b {
        t(store.try_write(*id, typed(b, *id, b"b"))).await.unwrap();
    }
    t(store.checkpoint()).await.unwrap();
    for id in &of_b {
        std::fs::write(snap_file(dir.path(), *id), b"not an envelope").unwrap();
    }
    let sorted = |mut ids: Vec<ActorId>| {
        ids.sort();
        ids
    };
    assert_eq!(
        sorted(t(store.try_list_type(a)).await.unwrap()),
        sorted(of_a.clone())
    );
    assert_eq!(
        sorted(t(store.try_list_type(b)).await.unwrap()),
        sorted(of_b.clone())
    );
    drop(store);
    let store = FsStorage::open(dir.path()).unwrap();
    let err = t(store.try_list_type(a)).await.unwrap_err();
    assert!(
        of_b.iter()
            .any(|id| format!("{err:#}").contains(&id.to_string())),
        "{err:#}"
    );
}

/// The index after a reopen, from the files' headers and a replayed journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_survive_reopen_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let ids: Vec<ActorId> = (0..12).map(|_| ActorId::new_v4()).collect();
    let store = FsStorage::open(dir.path()).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let actor_type = if i % 2 == 0 { a } else { b };
        t(store.try_write(*id, typed(actor_type, *id, b"x")))
            .await
            .unwrap();
        if i == 5 {
            t(store.checkpoint()).await.unwrap();
        }
    }
    t(store.try_delete(ids[0])).await.unwrap(); // in a file, deleted in the journal
    t(store.try_delete(ids[11])).await.unwrap(); // in the journal only
    let sorted = |mut ids: Vec<ActorId>| {
        ids.sort();
        ids
    };
    let want_a = sorted((2..12).step_by(2).map(|i| ids[i]).collect());
    let want_b = sorted((1..11).step_by(2).map(|i| ids[i]).collect());
    let crashed = crash_copy(dir.path());
    drop(store);
    for path in [dir.path(), crashed.path()] {
        let store = FsStorage::open(path).unwrap();
        assert_eq!(sorted(t(store.try_list_type(a)).await.unwrap()), want_a);
        assert_eq!(sorted(t(store.try_list_type(b)).await.unwrap()), want_b);
        assert_eq!(t(store.try_list()).await.unwrap().len(), 10);
    }
}

/// Epochs grow across opens: each open bumps the generation, the floor of its
/// claims' epochs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_open_bumps_the_generation_and_the_epoch_floor() {
    let dir = tempfile::tempdir().unwrap();
    let id = ActorId::new_v4();
    for generation in 1..=3u64 {
        let store = FsStorage::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("GENERATION")).unwrap(),
            format!("{generation}\n")
        );
        let claim = t(store.try_claim(id, OwnerId::new(), ClaimMode::Takeover))
            .await
            .unwrap();
        assert!(
            claim.epoch > generation << 32 && claim.epoch < (generation + 1) << 32,
            "generation {generation}: epoch {:#x}",
            claim.epoch
        );
    }
    // A missing or damaged generation is not quietly started again.
    let generation = dir.path().join("GENERATION");
    std::fs::write(&generation, "three\n").unwrap();
    assert!(matches!(open_err(dir.path()), FsError::Damaged { path, .. } if path == generation));
    std::fs::remove_file(&generation).unwrap();
    assert!(matches!(open_err(dir.path()), FsError::Damaged { path, .. } if path == generation));
}

/// `try_close` checkpoints, then refuses writes, deletes and claims with an
/// error naming the directory, releases the lock, and still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_checkpoints_then_refuses_changes_and_unlocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    let id = ActorId::new_v4();
    t(store.try_write(id, env(1, b"kept"))).await.unwrap();
    t(store.try_close()).await.unwrap();
    assert!(store.is_closed());
    assert_eq!(
        std::fs::read(snap_file(dir.path(), id)).unwrap(),
        env(1, b"kept")
    );
    let refused = [
        t(store.try_write(id, env(2, b"late"))).await.unwrap_err(),
        t(store.try_delete(id)).await.unwrap_err(),
        t(store.try_claim(id, OwnerId::new(), ClaimMode::Exclusive))
            .await
            .unwrap_err(),
    ];
    for err in refused {
        assert!(
            matches!(fs_error(&err), FsError::Closed { path } if path == dir.path()),
            "{err:#}"
        );
        assert_eq!(
            err.downcast_ref::<StorageClosed>()
                .map(|c| c.location.clone()),
            Some(dir.path().display().to_string())
        );
    }
    assert!(matches!(
        t(store.checkpoint()).await,
        Err(FsError::Closed { .. })
    ));
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"kept"));
    t(store.try_close()).await.unwrap();
    // The directory is free again, while the closed handle lives.
    let reopened = FsStorage::open(dir.path()).unwrap();
    t(reopened.try_write(id, env(2, b"next"))).await.unwrap();
    drop(store);
    assert_eq!(t(reopened.try_read(id)).await.unwrap(), env(2, b"next"));
}

/// A directory that holds something else is refused untouched, saying what is
/// there; an empty one, or one a cut-short creation left, is a new store.
#[tokio::test]
async fn a_directory_that_is_not_a_store_is_refused_untouched() {
    let sled_like = tempfile::tempdir().unwrap();
    std::fs::write(sled_like.path().join("conf"), b"segment_size: 524288").unwrap();
    std::fs::write(sled_like.path().join("db"), b"\0\0\0").unwrap();
    std::fs::create_dir(sled_like.path().join("blobs")).unwrap();
    match open_err(sled_like.path()) {
        FsError::NotAStore { path, found } => {
            assert_eq!(path, sled_like.path());
            assert!(found.contains("sled"), "{found}");
            assert!(found.contains("`blobs/`, `conf`, `db`"), "{found}");
        }
        other => panic!("expected NotAStore, got {other:?}"),
    }
    assert!(
        !sled_like.path().join("LOCK").exists(),
        "nothing was written"
    );

    let other = tempfile::tempdir().unwrap();
    for i in 0..9 {
        std::fs::write(other.path().join(format!("file{i}.txt")), b"data").unwrap();
    }
    let err = open_err(other.path());
    let message = err.to_string();
    assert!(matches!(err, FsError::NotAStore { .. }), "{err}");
    assert!(message.contains("`file0.txt`"), "{message}");
    assert!(message.contains("and 3 more"), "{message}");

    // A creation cut short (everything but the marker, nothing written) is
    // finished.
    let cut_short = tempfile::tempdir().unwrap();
    drop(FsStorage::open(cut_short.path()).unwrap());
    std::fs::remove_file(cut_short.path().join("FORMAT")).unwrap();
    let store = FsStorage::open(cut_short.path()).unwrap();
    assert!(cut_short.path().join("FORMAT").exists());
    t(store.try_write(ActorId::new_v4(), env(1, b"x")))
        .await
        .unwrap();
    drop(store);
    // But a store without its marker that holds writes is not.
    std::fs::remove_file(cut_short.path().join("FORMAT")).unwrap();
    assert!(matches!(
        open_err(cut_short.path()),
        FsError::NotAStore { .. }
    ));
}

/// A layout-3 store whose `snapshots/` or `journal/` is gone is refused, not
/// read as empty.
#[tokio::test]
async fn a_store_missing_a_directory_is_refused() {
    for missing in ["snapshots", "journal"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FsStorage::open(dir.path()).unwrap();
            t(store.try_write(ActorId::new_v4(), env(1, b"x")))
                .await
                .unwrap();
        }
        std::fs::remove_dir_all(dir.path().join(missing)).unwrap();
        match open_err(dir.path()) {
            FsError::Damaged { path, .. } => assert_eq!(path, dir.path().join(missing)),
            other => panic!("{missing}: expected Damaged, got {other:?}"),
        }
    }
}

/// An empty stray file with the largest segment name: a typed error, no panic
/// (the next segment number used to overflow).
#[tokio::test]
async fn a_stray_segment_with_the_largest_name_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let id = ActorId::new_v4();
    {
        let store = FsStorage::open(dir.path()).unwrap();
        t(store.try_write(id, env(1, b"x"))).await.unwrap();
    }
    let stray = dir.path().join("journal/ffffffffffffffff.log");
    std::fs::write(&stray, b"").unwrap();
    match open_err(dir.path()) {
        FsError::IncompleteJournal { path, cause } => {
            assert!(
                path.starts_with(dir.path().join("journal")),
                "{}",
                path.display()
            );
            assert!(cause.contains("ffffffffffffffff"), "{cause}");
        }
        other => panic!("expected IncompleteJournal, got {other:?}"),
    }
    std::fs::remove_file(&stray).unwrap();
    let store = FsStorage::open(dir.path()).unwrap();
    assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"x"));
}

/// A store whose journal fills most of a small disk opens with a few KiB free:
/// the open writes no snapshot file (it used to write them all, before it
/// removed the journal, and fail with ENOSPC until as much space was free as
/// the journal took). Needs a tmpfs mount (root); says so and does nothing
/// otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opens_on_a_nearly_full_disk() {
    struct Mount(PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let point = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(point.path())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED a_store_opens_on_a_nearly_full_disk: cannot mount a tmpfs (not root?)");
        return;
    }
    let _mount = Mount(point.path().to_path_buf());
    // A journal of 3 MiB of acknowledged snapshots (1500 ids), no files; the
    // files will take 6 MiB (a page each).
    let source = tempfile::tempdir().unwrap();
    let ids: Vec<ActorId> = (0..1500).map(|_| ActorId::new_v4()).collect();
    let store = FsStorage::builder(source.path())
        .journal_limit(64 << 20)
        .open()
        .unwrap();
    for id in &ids {
        t(store.try_write(*id, env(1, &[7; 2048]))).await.unwrap();
    }
    let crashed = crash_copy(source.path());
    drop(store);
    let dir = point.path().join("store");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(crashed.path())
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    // Fill the disk, then free 64 KiB.
    let filler_path = point.path().join("filler");
    let mut filler = std::fs::File::create(&filler_path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    filler.sync_all().unwrap();
    let full = filler.metadata().unwrap().len();
    filler.set_len(full.saturating_sub(64 << 10)).unwrap();

    let store = FsStorage::open(&dir).unwrap();
    for id in &ids {
        assert_eq!(t(store.try_read(*id)).await.unwrap(), env(1, &[7; 2048]));
    }
    // With space freed, the checkpoint writes the files.
    drop(filler);
    std::fs::remove_file(&filler_path).unwrap();
    t(store.checkpoint()).await.unwrap();
    assert_eq!(
        std::fs::read(snap_file(&dir, ids[0])).unwrap(),
        env(1, &[7; 2048])
    );
    drop(store);
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
            assert_eq!(os_error(err.as_ref()), Some(code), "{err:#}");
            assert!(
                matches!(
                    fs_error(&err),
                    FsError::Io {
                        op: "syncing journal segment",
                        ..
                    }
                ),
                "{err:#}"
            );
            assert!(store.is_poisoned());
            assert_eq!(t(store.try_read(id)).await.unwrap(), env(1, b"old"));
            // Every later write fails, even a fresh id, until reopened.
            let poisoned = |err: &anyhow::Error| {
                matches!(fs_error(err), FsError::Poisoned { path, cause }
                    if path == dir.path() && cause.contains("syncing journal segment"))
            };
            let err = t(store.try_write(ActorId::new_v4(), env(1, b"x")))
                .await
                .unwrap_err();
            assert!(poisoned(&err), "{err:#}");
            let err = t(store.try_delete(id)).await.unwrap_err();
            assert!(poisoned(&err), "{err:#}");
            assert!(matches!(
                t(store.checkpoint()).await,
                Err(FsError::Poisoned { path, .. }) if path == dir.path()
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
        match t(store.checkpoint()).await {
            Err(FsError::Io { op, path, source }) => {
                assert_eq!(op, "syncing the file system of");
                assert_eq!(path, snapshots(dir.path()));
                assert_eq!(source.raw_os_error(), Some(EIO));
            }
            other => panic!("expected the syncfs error, got {other:?}"),
        }
        assert!(store.is_poisoned());
        assert_eq!(t(store.try_read(id)).await.unwrap(), env(2, b"new"));
        let err = t(store.try_write(id, env(3, b"x"))).await.unwrap_err();
        assert!(
            matches!(fs_error(&err), FsError::Poisoned { .. }),
            "{err:#}"
        );
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
        match t(store.checkpoint()).await {
            Err(FsError::Io { path, source, .. }) => {
                assert_eq!(path, dir.path().join("journal/START"));
                assert_eq!(source.raw_os_error(), Some(EIO));
            }
            other => panic!("expected the failpoint's error, got {other:?}"),
        }
        assert!(!store.is_poisoned());
        assert_eq!(journal_segments(dir.path()).len(), 2);
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

    /// A rotation that fails (a full disk) is logged, naming the segment, and
    /// is not retried (nor logged again) after every batch; writes go on into
    /// the current segment, and once the disk has room the journal rotates.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_rotation_is_logged_once_and_retried_later() {
        use std::sync::Mutex;
        static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
        struct Log;
        impl std::io::Write for Log {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                LOG.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        // The only test of this binary that installs a subscriber.
        tracing_subscriber::fmt()
            .with_writer(|| Log)
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .try_init()
            .unwrap();
        let logged = || {
            let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
            log.matches("starting a new journal segment failed").count()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::builder(dir.path())
            .journal_limit(4096)
            .open()
            .unwrap();
        store.fail_next(Step::SegmentCreate, Action::ErrorEveryTime(ENOSPC));
        let id = ActorId::new_v4();
        // A write is 417 bytes in the journal: the segment is full after 10
        // (the first attempt), and the next waits for another quarter of the
        // limit (1 KiB, after 13). Retried after every batch, 10 to 14 would
        // each log.
        for sequence in 1..=14u64 {
            t(store.try_write(id, env(sequence, &[1; 300])))
                .await
                .unwrap();
        }
        assert_eq!(journal_segments(dir.path()).len(), 1);
        let once = logged();
        assert!((1..=2).contains(&once), "logged {once} times");
        let log = String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned();
        assert!(log.contains(".log"), "the segment is named: {log}");
        // Room again: the next attempt rotates.
        store.clear_failpoints();
        for sequence in 15..=30u64 {
            t(store.try_write(id, env(sequence, &[1; 300])))
                .await
                .unwrap();
        }
        t(store.checkpoint()).await.unwrap();
        assert_eq!(logged(), once);
        drop(store);
        let store = FsStorage::open(dir.path()).unwrap();
        assert_eq!(t(store.try_read(id)).await.unwrap(), env(30, &[1; 300]));
    }

    /// A checkpoint of an upgraded journal whose version-1 segments skip a
    /// number stops between two segments: `START` names the next segment that
    /// exists, so the journal still opens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_always_names_a_segment_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (ActorId::new_v4(), ActorId::new_v4());
        legacy_store(
            dir.path(),
            &[(3, vec![(a, env(1, b"a1"))]), (5, vec![(b, env(1, b"b1"))])],
        );
        let store = FsStorage::builder(dir.path())
            .fail_next(Step::SegmentDelete, Action::ErrorOnHit { n: 2, code: EIO })
            .open()
            .unwrap();
        // The open's checkpoint: segment 3 done (`START` moves on), then it
        // fails before 5.
        let start = dir.path().join("journal/START");
        t(async {
            while std::fs::read(&start).ok().as_deref() == Some(b"0000000000000003\n") {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(std::fs::read(&start).unwrap(), b"0000000000000005\n");
        let crashed = crash_copy(dir.path());
        drop(store);
        let store = FsStorage::open(crashed.path()).unwrap();
        assert_eq!(t(store.try_read(a)).await.unwrap(), env(1, b"a1"));
        assert_eq!(t(store.try_read(b)).await.unwrap(), env(1, b"b1"));
    }

    /// A failed rotation keeps the current segment, and the next one uses the
    /// same number: the journal has no gap, so the store reopens whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_rotation_leaves_no_gap_in_the_journal() {
        let (dir, store, id) = setup().await;
        let before = journal_segments(dir.path());
        store.fail_next(Step::SegmentCreate, Action::Error(ENOSPC));
        let err = t(store.checkpoint()).await.unwrap_err();
        assert_eq!(os_error(&err), Some(ENOSPC), "{err}");
        assert!(!store.is_poisoned());
        assert_eq!(journal_segments(dir.path()), before);
        t(store.try_write(id, env(2, b"new"))).await.unwrap();
        t(store.checkpoint()).await.unwrap();
        let after = journal_segments(dir.path());
        assert_eq!(after.len(), 1);
        let number =
            |p: &Path| u64::from_str_radix(p.file_stem().unwrap().to_str().unwrap(), 16).unwrap();
        assert_eq!(number(&after[0]), number(&before[0]) + 1);
        t(store.try_write(id, env(3, b"newer"))).await.unwrap();
        let crashed = crash_copy(dir.path());
        drop(store);
        assert_eq!(
            tokio::task::block_in_place(|| reopen_and_read(crashed.path(), id)),
            env(3, b"newer")
        );
    }

    /// A store whose checkpoints cannot move the journal's start: three
    /// segments, each holding acknowledged writes; a crash copy of it.
    async fn three_segments() -> (tempfile::TempDir, Vec<(ActorId, Vec<u8>)>) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path()).unwrap();
        store.fail_next(Step::SegmentDelete, Action::ErrorEveryTime(EIO));
        let mut written = Vec::new();
        for round in 0..3u8 {
            for _ in 0..4 {
                let id = ActorId::new_v4();
                let bytes = env(1, &[round; 100]);
                t(store.try_write(id, bytes.clone())).await.unwrap();
                written.push((id, bytes));
            }
            if round < 2 {
                match t(store.checkpoint()).await {
                    Err(FsError::Io { path, source, .. }) => {
                        assert_eq!(path, dir.path().join("journal/START"));
                        assert_eq!(source.raw_os_error(), Some(EIO));
                    }
                    other => panic!("expected the segment removal's error, got {other:?}"),
                }
            }
        }
        // Forget the files, to be sure what reopens comes from the journal.
        let crashed = crash_copy(dir.path());
        std::fs::remove_dir_all(snapshots(crashed.path())).unwrap();
        std::fs::create_dir(snapshots(crashed.path())).unwrap();
        assert_eq!(journal_segments(crashed.path()).len(), 3);
        (crashed, written)
    }

    /// Segments deleted or cut short at a batch boundary (every batch left
    /// valid) fail the open naming the segment, instead of opening without
    /// their writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_or_shortened_segment_fails_open_naming_it() {
        let (whole, written) = three_segments().await;
        let segments = journal_segments(whole.path());
        for (what, victim) in [("oldest", 0), ("middle", 1)] {
            let copy = crash_copy(whole.path());
            let path = copy
                .path()
                .join("journal")
                .join(segments[victim].file_name().unwrap());
            std::fs::remove_file(&path).unwrap();
            match open_err(copy.path()) {
                FsError::IncompleteJournal {
                    path: reported,
                    cause,
                } => {
                    assert_eq!(reported, path, "{what}");
                    assert!(cause.contains("missing"), "{what}: {cause}");
                }
                other => panic!("{what} deleted: expected IncompleteJournal, got {other:?}"),
            }
        }
        for victim in [0, 1] {
            let copy = crash_copy(whole.path());
            let path = copy
                .path()
                .join("journal")
                .join(segments[victim].file_name().unwrap());
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(SEGMENT_HEADER).unwrap();
            match open_err(copy.path()) {
                FsError::IncompleteJournal {
                    path: reported,
                    cause,
                } => {
                    assert_eq!(reported, path);
                    assert!(cause.contains("cut short"), "{cause}");
                }
                other => panic!("segment {victim} cut: expected IncompleteJournal, got {other:?}"),
            }
        }
        // Untouched, every write is there.
        let store = FsStorage::open(whole.path()).unwrap();
        for (id, bytes) in &written {
            assert_eq!(&t(store.try_read(*id)).await.unwrap(), bytes);
        }
    }

    /// The open writes no snapshot file: with every file write failing
    /// (a full disk), it opens, and reads come from the replayed journal.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_open_writes_no_snapshot_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStorage::open(dir.path()).unwrap();
        let ids: Vec<ActorId> = (0..20).map(|_| ActorId::new_v4()).collect();
        for id in &ids {
            t(store.try_write(*id, env(1, id.as_bytes())))
                .await
                .unwrap();
        }
        let crashed = crash_copy(dir.path());
        drop(store);
        let store = FsStorage::builder(crashed.path())
            .fail_next(Step::AfterTempWrite, Action::ErrorEveryTime(ENOSPC))
            .open()
            .unwrap();
        for id in &ids {
            assert_eq!(t(store.try_read(*id)).await.unwrap(), env(1, id.as_bytes()));
        }
        let err = t(store.checkpoint()).await.unwrap_err();
        assert_eq!(os_error(&err), Some(ENOSPC), "{err}");
        assert!(
            ids.iter()
                .all(|id| !snap_file(crashed.path(), *id).exists())
        );
        // Space again: the next checkpoint writes them.
        store.clear_failpoints();
        t(store.checkpoint()).await.unwrap();
        for id in &ids {
            assert_eq!(
                std::fs::read(snap_file(crashed.path(), *id)).unwrap(),
                env(1, id.as_bytes())
            );
        }
    }

    /// `try_close` reports a failed last checkpoint, and closes anyway; the
    /// journal keeps the writes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_reports_a_failed_last_checkpoint() {
        let (dir, store, id) = setup().await;
        t(store.try_write(id, env(2, b"new"))).await.unwrap();
        store.fail_next(Step::AfterTempWrite, Action::ErrorEveryTime(ENOSPC));
        let err = t(store.try_close()).await.unwrap_err();
        assert_eq!(os_error(err.as_ref()), Some(ENOSPC), "{err:#}");
        assert!(store.is_closed());
        let err = t(store.try_write(id, env(3, b"late"))).await.unwrap_err();
        assert!(matches!(fs_error(&err), FsError::Closed { .. }), "{err:#}");
        let reopened = FsStorage::open(dir.path()).unwrap();
        assert_eq!(t(reopened.try_read(id)).await.unwrap(), env(2, b"new"));
        drop(store);
    }
}
