//! What `SledStorage` does beyond the storage contract (which the conformance
//! kit checks in `tests/tests/conformance_sled.rs`): its durability levels,
//! close, the directories it refuses or adopts, the damage it detects at open,
//! tombstones and generations across reopens, sharing a sled database, errors.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use theta::ActorId;
use theta::persistence::envelope::{EnvelopeError, Seal};
use theta::persistence::{
    ClaimMode, Durability, OwnerId, PersistentStorage, SnapshotNotFound, StaleSnapshot,
    StorageClosed, UnsupportedDurability,
};
use theta_persistence_sled::{OFFERED_DURABILITY, SledError, SledStorage, TREE_NAME, sled};

const TYPE: ActorId = ActorId::from_u128(0x0000_0000_0000_4000_8000_0000_0000_00aa);
const OTHER_TYPE: ActorId = ActorId::from_u128(0x0000_0000_0000_4000_8000_0000_0000_00bb);

/// Every await in these tests: a hang fails fast instead of stalling the suite.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out after 10 s")
}

fn snapshot(id: ActorId, sequence: u64, payload: &[u8]) -> Vec<u8> {
    Seal::new(TYPE)
        .actor_id(id)
        .sequence(sequence)
        .seal(payload)
}

fn storage() -> (tempfile::TempDir, SledStorage) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = SledStorage::open(dir.path().join("db")).expect("open");
    (dir, storage)
}

async fn read(storage: &SledStorage, id: ActorId) -> Vec<u8> {
    within(storage.try_read(id))
        .await
        .unwrap_or_else(|e| panic!("read of {id}: {e:#}"))
}

async fn expect_absent(storage: &SledStorage, id: ActorId) {
    match within(storage.try_read(id)).await {
        Err(e) if e.is::<SnapshotNotFound>() => {}
        other => panic!("{id} should be absent, read {other:?}"),
    }
}

async fn write(storage: &SledStorage, id: ActorId, bytes: Vec<u8>) {
    within(storage.try_write(id, bytes))
        .await
        .unwrap_or_else(|e| panic!("write of {id}: {e:#}"));
}

fn id(i: u64) -> ActorId {
    ActorId::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | u128::from(i))
}

// --- durability, close -------------------------------------------------------

#[test]
fn process_kill_durability_is_refused_by_name() {
    let (_dir, storage) = storage();
    assert_eq!(storage.durability(), Durability::PowerLoss);
    let err = storage
        .clone()
        .with_durability(Durability::ProcessKill)
        .unwrap_err();
    assert_eq!(
        err,
        UnsupportedDurability {
            backend: "theta-persistence-sled",
            requested: Durability::ProcessKill,
            offered: OFFERED_DURABILITY,
        }
    );
    for offered in OFFERED_DURABILITY {
        let handle = storage.clone().with_durability(*offered).unwrap();
        assert_eq!(handle.durability(), *offered);
    }
}

#[tokio::test]
async fn volatile_writes_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let id = id(1);
    {
        let storage = SledStorage::open(&path)
            .unwrap()
            .with_durability(Durability::Volatile)
            .unwrap();
        write(&storage, id, snapshot(id, 1, b"volatile")).await;
        within(storage.close()).await.unwrap();
    }
    let storage = SledStorage::open(&path).unwrap();
    assert_eq!(read(&storage, id).await, snapshot(id, 1, b"volatile"));
}

#[tokio::test]
async fn a_closed_store_refuses_changes_naming_its_directory_and_still_reads() {
    let (dir, storage) = storage();
    let path = dir.path().join("db");
    let id = id(2);
    write(&storage, id, snapshot(id, 1, b"kept")).await;
    let other = storage.clone();
    within(storage.try_close()).await.unwrap();
    let closed = StorageClosed {
        location: path.display().to_string(),
    };
    let refused = [
        within(other.try_write(id, snapshot(id, 2, b"late"))).await,
        within(other.try_delete(id)).await,
        within(other.try_claim(id, OwnerId::new(), ClaimMode::Exclusive))
            .await
            .map(drop),
    ];
    for result in refused {
        let err = result.unwrap_err();
        assert_eq!(
            err.downcast_ref::<StorageClosed>(),
            Some(&closed),
            "{err:#}"
        );
    }
    assert_eq!(read(&other, id).await, snapshot(id, 1, b"kept"));
    // Closing again, flushing and closing the last handle are fine.
    within(other.try_close()).await.unwrap();
    within(other.flush()).await.unwrap();
    within(other.close()).await.unwrap();
}

#[test]
fn flush_works_outside_a_tokio_runtime() {
    // With no runtime current, the flush loop runs on a plain thread.
    let (_dir, storage) = storage();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(block_on(storage.flush()));
    });
    result
        .recv_timeout(Duration::from_secs(10))
        .expect("timed out after 10 s")
        .unwrap();
}

/// Polls `future` to completion on this thread, outside any runtime.
fn block_on<T>(future: impl Future<Output = T>) -> T {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

// --- the write rule, in sled's terms -----------------------------------------

#[tokio::test]
async fn a_stale_write_names_both_sequence_numbers() {
    let (_dir, storage) = storage();
    let id = id(3);
    write(&storage, id, snapshot(id, 7, b"newer")).await;
    for attempted in [6, 7] {
        let err = within(storage.try_write(id, snapshot(id, attempted, b"older")))
            .await
            .unwrap_err();
        assert_eq!(
            err.downcast_ref::<StaleSnapshot>(),
            Some(&StaleSnapshot {
                id,
                stored: 7,
                attempted
            }),
            "{err:#}"
        );
    }
    assert_eq!(read(&storage, id).await, snapshot(id, 7, b"newer"));
}

#[tokio::test]
async fn tombstones_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let id = id(4);
    {
        let storage = SledStorage::open(&path).unwrap();
        write(&storage, id, snapshot(id, 5, b"deleted later")).await;
        within(storage.try_delete(id)).await.unwrap();
        within(storage.close()).await.unwrap();
    }
    let storage = SledStorage::open(&path).unwrap();
    expect_absent(&storage, id).await;
    assert_eq!(
        within(storage.try_list()).await.unwrap(),
        Vec::<ActorId>::new()
    );
    let err = within(storage.try_write(id, snapshot(id, 3, b"stale")))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<StaleSnapshot>(),
        Some(&StaleSnapshot {
            id,
            stored: 5,
            attempted: 3
        })
    );
    write(&storage, id, snapshot(id, 6, b"newer")).await;
    assert_eq!(read(&storage, id).await, snapshot(id, 6, b"newer"));
}

#[tokio::test]
async fn a_delete_leaves_ids_sharing_its_prefix_alone() {
    let (_dir, storage) = storage();
    let base = 0xabcd_ef01_2345_6789_abcd_ef01_2345_6700u128;
    let ids: Vec<ActorId> = (0..8u128)
        .map(|i| ActorId::from_u128(base + i))
        .chain([ActorId::from_u128(base >> 8), ActorId::from_u128(base << 8)])
        .collect();
    for (i, id) in ids.iter().enumerate() {
        write(&storage, *id, snapshot(*id, 1, &[i as u8; 4])).await;
    }
    within(storage.try_delete(ids[3])).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        if i == 3 {
            expect_absent(&storage, *id).await;
        } else {
            assert_eq!(read(&storage, *id).await, snapshot(*id, 1, &[i as u8; 4]));
        }
    }
}

#[tokio::test]
async fn the_type_index_follows_an_id_that_changes_type() {
    let (_dir, storage) = storage();
    let id = id(5);
    write(&storage, id, snapshot(id, 1, b"of TYPE")).await;
    let other = Seal::new(OTHER_TYPE)
        .actor_id(id)
        .sequence(2)
        .seal(b"now OTHER");
    write(&storage, id, other.clone()).await;
    assert_eq!(
        within(storage.try_list_type(TYPE)).await.unwrap(),
        Vec::<ActorId>::new()
    );
    assert_eq!(
        within(storage.try_list_type(OTHER_TYPE)).await.unwrap(),
        vec![id]
    );
    within(storage.try_delete(id)).await.unwrap();
    assert_eq!(
        within(storage.try_list_type(OTHER_TYPE)).await.unwrap(),
        Vec::<ActorId>::new()
    );
}

#[tokio::test]
async fn generations_and_epochs_grow_with_every_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut last = 0;
    for round in 1..=3u64 {
        let storage = SledStorage::open(&path).unwrap();
        assert_eq!(storage.generation(), round);
        let claim = within(storage.try_claim(id(6), OwnerId::new(), ClaimMode::Takeover))
            .await
            .unwrap();
        assert!(claim.epoch > round << 32 && claim.epoch > last);
        last = claim.epoch;
        within(storage.close()).await.unwrap();
    }
}

// --- damage is reported at open ----------------------------------------------

/// Writes 64 snapshots durably and closes the store.
async fn populate(path: &Path) {
    let storage = SledStorage::open(path).unwrap();
    for i in 0..64 {
        write(&storage, id(i), snapshot(id(i), 1, &[i as u8; 200])).await;
    }
    within(storage.close()).await.unwrap();
}

/// Damage done to a file: a byte flipped, or the file cut, at a fraction of
/// its length.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip(f64),
    Truncate(f64),
}

impl Damage {
    fn apply(self, file: &Path) {
        match self {
            Damage::Flip(at) => flip_byte(file, at),
            Damage::Truncate(at) => truncate_to(file, at),
        }
    }
}

fn flip_byte(file: &Path, at: f64) {
    let mut bytes = std::fs::read(file).unwrap();
    let offset = (bytes.len() as f64 * at) as usize;
    bytes[offset] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

fn truncate_to(file: &Path, fraction: f64) {
    let len = std::fs::metadata(file).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    file.set_len((len as f64 * fraction) as u64).unwrap();
}

/// sled reads a damaged log up to the damage and drops the rest silently
/// (3 to 56 of 64 snapshots lost at these offsets, before theta checked): the
/// open must fail, naming the directory and how many snapshots are missing.
#[tokio::test]
async fn a_damaged_or_truncated_log_is_an_open_error() {
    for damage in [
        Damage::Flip(0.1),
        Damage::Flip(0.3),
        Damage::Flip(0.5),
        Damage::Flip(0.7),
        Damage::Flip(0.9),
        Damage::Truncate(0.5),
    ] {
        let what = format!("{damage:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        populate(&path).await;
        damage.apply(&path.join("db"));
        match SledStorage::open(&path) {
            Err(SledError::Damaged {
                path: named,
                what: missing,
            }) => {
                assert_eq!(named, path, "{what}");
                assert!(
                    missing.starts_with("64 snapshots (64 ids including deleted ones) were stored"),
                    "{what}: {missing}"
                );
            }
            // sled itself may notice some damage; that is an error too.
            Err(SledError::Open { path: named, .. }) => assert_eq!(named, path, "{what}"),
            Err(other) => panic!("{what}: unexpected error {other}"),
            Ok(storage) => {
                let mut missing = 0;
                for i in 0..64 {
                    let read = within(storage.try_read(id(i))).await;
                    missing += u32::from(read.is_err_and(|e| e.is::<SnapshotNotFound>()));
                }
                panic!("{what}: opened with {missing} of 64 snapshots missing");
            }
        }
    }
}

/// The same after a crash (no close): a copy of the directory taken while the
/// store runs is what a crash leaves. Intact, it opens with every snapshot;
/// truncated, it is refused by the count of acknowledged ids.
#[tokio::test]
async fn a_crashed_store_missing_acknowledged_ids_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let storage = SledStorage::open(&path).unwrap();
    for i in 0..64 {
        write(&storage, id(i), snapshot(id(i), 1, &[i as u8; 200])).await;
    }
    let intact = dir.path().join("intact");
    let damaged = dir.path().join("damaged");
    copy_dir(&path, &intact);
    copy_dir(&path, &damaged);
    drop(storage);

    let copy = SledStorage::open(&intact).expect("an intact crash image opens");
    for i in 0..64 {
        assert_eq!(
            read(&copy, id(i)).await,
            snapshot(id(i), 1, &[i as u8; 200])
        );
    }

    truncate_to(&damaged.join("db"), 0.5);
    match SledStorage::open(&damaged) {
        Err(SledError::Damaged { path: named, what }) => {
            assert_eq!(named, damaged);
            assert!(
                what.starts_with("64 ids had acknowledged snapshots"),
                "{what}"
            );
        }
        other => panic!("a truncated crash image: {other:?}"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_missing_or_damaged_acked_record_is_an_open_error() {
    for (what, damage) in [
        (
            "removed",
            (|p: &Path| std::fs::remove_file(p).unwrap()) as fn(&Path),
        ),
        ("overwritten", |p: &Path| {
            std::fs::write(p, [0x5a; 1024]).unwrap()
        }),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        populate(&path).await;
        damage(&path.join("ACKED"));
        match SledStorage::open(&path) {
            Err(SledError::Damaged {
                path: named,
                what: missing,
            }) => {
                assert_eq!(named, path);
                assert!(missing.contains("`ACKED`"), "{what}: {missing}");
            }
            other => panic!("ACKED {what}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_database_file_replaced_by_an_empty_one_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    populate(&path).await;
    for name in ["db", "conf"] {
        std::fs::remove_file(path.join(name)).unwrap();
    }
    std::fs::remove_dir_all(path.join("blobs")).unwrap();
    match SledStorage::open(&path) {
        Err(SledError::Damaged { what, .. }) => {
            assert!(what.contains("0 (0) are present"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

/// The type index is derived from the snapshots: an entry lost behind the
/// store's back is put back at the next open.
#[tokio::test]
async fn the_type_index_is_repaired_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    populate(&path).await;
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree(TREE_NAME).unwrap();
        let index: Vec<_> = tree
            .iter()
            .keys()
            .map(|k| k.unwrap())
            .filter(|k| k.len() > 16)
            .filter(|k| k.ends_with(id(7).as_bytes()))
            .collect();
        assert_eq!(index.len(), 1, "one index entry for id 7");
        tree.remove(&index[0]).unwrap();
        db.flush().unwrap();
    }
    let storage = SledStorage::open(&path).unwrap();
    let mut listed = within(storage.try_list_type(TYPE)).await.unwrap();
    listed.sort();
    assert_eq!(listed, (0..64).map(id).collect::<Vec<_>>());
}

// --- directories: refused, adopted, created ----------------------------------

#[test]
fn an_fs_store_is_refused_by_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("fs-store");
    std::fs::create_dir_all(store.join("snapshots/aa")).unwrap();
    std::fs::create_dir_all(store.join("journal")).unwrap();
    std::fs::write(store.join("LOCK"), b"").unwrap();
    std::fs::write(store.join("FORMAT"), b"theta-persistence-fs layout 2\n").unwrap();
    match SledStorage::open(&store) {
        Err(SledError::UnsupportedLayout { path, found }) => {
            assert_eq!(path, store.join("FORMAT"));
            assert_eq!(found, "theta-persistence-fs layout 2");
        }
        other => panic!("{other:?}"),
    }
    // Nothing of sled's was created in it.
    assert!(!store.join("db").exists() && !store.join("conf").exists());
}

#[test]
fn a_non_empty_directory_without_a_marker_is_refused_naming_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(store.join("snapshots")).unwrap();
    std::fs::create_dir_all(store.join("journal")).unwrap();
    std::fs::write(store.join("notes.txt"), b"mine").unwrap();
    let err = SledStorage::open(&store).unwrap_err();
    match &err {
        SledError::NotAStore { path, found } => {
            assert_eq!(path, &store);
            assert_eq!(
                found,
                "a non-empty directory without a FORMAT marker, holding `journal`, `notes.txt`, `snapshots`"
            );
        }
        other => panic!("{other}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("{} is not a theta sled store", store.display())),
        "{err}"
    );
    assert!(!store.join("db").exists());
}

#[test]
fn open_on_a_regular_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-directory");
    std::fs::write(&path, b"plain file").unwrap();
    let err = SledStorage::open(&path).unwrap_err();
    assert!(
        matches!(&err, SledError::NotAStore { path: p, .. } if *p == path),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a theta sled store: it is a file that is not a directory",
            path.display()
        )
    );
}

#[test]
fn a_newer_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("FORMAT"), b"theta-persistence-sled layout 9\n").unwrap();
    let err = SledStorage::open(&store).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "the layout marker {} says \"theta-persistence-sled layout 9\"; this build reads \"theta-persistence-sled layout 1\"",
            store.join("FORMAT").display()
        )
    );
}

#[test]
fn a_sled_database_of_another_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let db = sled::open(&path).unwrap();
        db.open_tree("app.data")
            .unwrap()
            .insert(b"k", b"v".as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledStorage::open(&path).unwrap_err();
    match err {
        SledError::NotAStore { path: named, found } => {
            assert_eq!(named, path);
            assert_eq!(
                found,
                "a sled database without theta's tree `theta.snapshots`"
            );
        }
        other => panic!("{other}"),
    }
    assert!(!path.join("FORMAT").exists());
}

/// A database written by a theta build before the layout marker (and before the
/// write rule refused non-envelopes): adopted, indexed, every value readable.
#[tokio::test]
async fn a_database_of_an_older_theta_build_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (a, b, raw) = (id(10), id(11), id(12));
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree(TREE_NAME).unwrap();
        tree.insert(a.as_bytes(), snapshot(a, 4, b"old a")).unwrap();
        tree.insert(b.as_bytes(), snapshot(b, 2, b"old b")).unwrap();
        tree.insert(raw.as_bytes(), b"stored as is".as_slice())
            .unwrap();
        db.flush().unwrap();
    }
    let storage = SledStorage::open(&path).expect("adopted");
    assert_eq!(
        std::fs::read_to_string(path.join("FORMAT")).unwrap(),
        "theta-persistence-sled layout 1\n"
    );
    assert_eq!(read(&storage, a).await, snapshot(a, 4, b"old a"));
    assert_eq!(read(&storage, raw).await, b"stored as is");
    let mut typed = within(storage.try_list_type(TYPE)).await.unwrap();
    typed.sort();
    assert_eq!(typed, vec![a, b]);
    let mut all = within(storage.try_list()).await.unwrap();
    all.sort();
    assert_eq!(all, vec![a, b, raw]);
    // The stored stamps fence older writes; the old foreign bytes have none.
    let err = within(storage.try_write(a, snapshot(a, 3, b"stale")))
        .await
        .unwrap_err();
    assert!(err.is::<StaleSnapshot>(), "{err:#}");
    write(&storage, raw, snapshot(raw, 1, b"now an envelope")).await;
    // New writes are envelopes only.
    let err = within(storage.try_write(b, b"raw again".to_vec()))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<EnvelopeError>(),
        Some(&EnvelopeError::BadMagic)
    );
    within(storage.close()).await.unwrap();
    let storage = SledStorage::open(&path).expect("reopened as this layout");
    assert_eq!(
        read(&storage, raw).await,
        snapshot(raw, 1, b"now an envelope")
    );
}

#[test]
fn open_while_open_reports_the_lock() {
    let (dir, _storage) = storage();
    let path = dir.path().join("db");
    let err = SledStorage::open(&path).unwrap_err();
    assert!(matches!(err, SledError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn large_snapshots_live_in_synced_blob_files() {
    // The durable flush also fsyncs sled's blob files; this pins the layout it
    // relies on (`<dir>/db`, `<dir>/blobs/<lsn>`).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let storage = SledStorage::open(&path).unwrap();
    let id = id(13);
    let bytes = snapshot(id, 1, &vec![3u8; 1 << 20]);
    write(&storage, id, bytes.clone()).await;
    assert!(path.join("db").is_file());
    let blobs = std::fs::read_dir(path.join("blobs")).unwrap().count();
    assert!(blobs >= 1, "a 1 MiB value should be a blob file");
    within(storage.close()).await.unwrap();
    let storage = SledStorage::open(&path).unwrap();
    assert_eq!(read(&storage, id).await, bytes);
}

/// The `fsync`s after sled's own flush (the file-sync path: the log, the blob
/// files written since the last flush, the blob directory) are part of every
/// acknowledgement. When they fail (here the blob directory is replaced by a
/// file, so it cannot be listed) the write is not acknowledged, the store
/// refuses writes until it is opened again, and what was acknowledged before
/// reads back after the reopen.
#[tokio::test]
async fn a_failed_file_sync_fails_the_write_and_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let storage = SledStorage::open(&path).unwrap();
    let kept = snapshot(id(1), 1, b"kept");
    write(&storage, id(1), kept.clone()).await;
    let blobs = path.join("blobs");
    let moved = dir.path().join("moved-blobs");
    std::fs::rename(&blobs, &moved).unwrap();
    std::fs::write(&blobs, b"not a directory").unwrap();

    let refused = snapshot(id(1), 2, b"refused");
    let err = within(storage.try_write(id(1), refused.clone()))
        .await
        .unwrap_err();
    match err.downcast_ref::<SledError>() {
        Some(SledError::Flush {
            location,
            source: sled::Error::Io(e),
        }) => {
            assert_eq!(location, storage.location());
            assert_eq!(e.kind(), std::io::ErrorKind::NotADirectory, "{e}");
        }
        other => panic!("expected the file sync's error, got {other:?}: {err:#}"),
    }
    // Poisoned: a write of another id is refused too, naming the first failure.
    let err = within(storage.try_write(id(2), snapshot(id(2), 1, b"x")))
        .await
        .unwrap_err();
    match err.downcast_ref::<SledError>() {
        Some(SledError::Poisoned { location, cause }) => {
            assert_eq!(location, storage.location());
            assert!(cause.to_lowercase().contains("not a directory"), "{cause}");
        }
        other => panic!("expected Poisoned, got {other:?}: {err:#}"),
    }

    std::fs::remove_file(&blobs).unwrap();
    std::fs::rename(&moved, &blobs).unwrap();
    drop(storage);
    let storage = SledStorage::open(&path).unwrap();
    // The refused write may have reached the disk; the acknowledged one is
    // never lost, and what reads is whole.
    let stored = read(&storage, id(1)).await;
    assert!(
        stored == kept || stored == refused,
        "{} bytes that are neither the acknowledged nor the refused snapshot",
        stored.len()
    );
    write(&storage, id(2), snapshot(id(2), 1, b"x")).await;
    assert_eq!(read(&storage, id(2)).await, snapshot(id(2), 1, b"x"));
}

// --- sharing a sled database -------------------------------------------------

#[tokio::test]
async fn from_db_leaves_other_data_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let other = db.open_tree("app.data").unwrap();
    other.insert(b"config", b"keep me".as_slice()).unwrap();
    db.insert(b"default tree key", b"also mine".as_slice())
        .unwrap();

    let storage = SledStorage::from_db(&db).unwrap();
    let id = id(14);
    write(&storage, id, snapshot(id, 1, b"s")).await;
    assert_eq!(within(storage.try_list()).await.unwrap(), vec![id]);
    within(storage.try_delete(id)).await.unwrap();
    write(&storage, ActorId::new_v4(), snapshot(id, 1, b"t")).await;

    assert_eq!(other.get(b"config").unwrap().unwrap(), b"keep me");
    assert_eq!(other.len(), 1);
    assert_eq!(db.get(b"default tree key").unwrap().unwrap(), b"also mine");
    assert_eq!(db.len(), 1);
}

#[tokio::test]
async fn from_tree_ignores_foreign_keys_in_list() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let tree = db.open_tree("my.snapshots").unwrap();
    tree.insert(b"short", b"x".as_slice()).unwrap();
    let storage = SledStorage::from_tree(tree).unwrap();
    assert_eq!(storage.location(), "the sled tree `my.snapshots`");
    let id = id(15);
    write(&storage, id, snapshot(id, 1, b"s")).await;
    assert_eq!(within(storage.try_list()).await.unwrap(), vec![id]);
    let shared = storage.shared().unwrap();
    assert_eq!(
        within(shared.try_read(id)).await.unwrap(),
        snapshot(id, 1, b"s")
    );
}

#[tokio::test]
async fn from_db_at_checks_and_syncs_the_named_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let id = id(16);
    {
        let db = sled::open(&path).unwrap();
        let storage = SledStorage::from_db_at(&db, &path).unwrap();
        assert_eq!(
            storage.location(),
            format!("the sled database at {}", path.display())
        );
        write(&storage, id, snapshot(id, 1, b"s")).await;
        assert_eq!(read(&storage, id).await, snapshot(id, 1, b"s"));
        let wrong: PathBuf = dir.path().join("elsewhere");
        match SledStorage::from_db_at(&db, &wrong) {
            Err(SledError::Io { path, .. }) => assert_eq!(path, wrong.join("db")),
            other => panic!("{other:?}"),
        }
        assert!(!wrong.exists(), "nothing created at a wrong path");
        within(storage.close()).await.unwrap();
    }
    // The directory is now a marked store that `open` checks.
    assert!(path.join("FORMAT").is_file() && path.join("ACKED").is_file());
    let storage = SledStorage::open(&path).unwrap();
    assert_eq!(read(&storage, id).await, snapshot(id, 1, b"s"));
}

/// Epochs start above the generation; `ACKED` keeps the generation too, so a
/// reverted generation key does not bring an earlier run's epochs back.
#[tokio::test]
async fn the_generation_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    for _ in 0..3 {
        let storage = SledStorage::open(&path).unwrap();
        within(storage.close()).await.unwrap();
    }
    {
        let db = sled::open(&path).unwrap();
        let tree = db.open_tree(TREE_NAME).unwrap();
        let key: Vec<u8> = [&[0xff; 16][..], b"theta/generation"].concat();
        assert_eq!(
            tree.get(&key).unwrap().as_deref(),
            Some(&3u64.to_le_bytes()[..])
        );
        tree.insert(&key, &1u64.to_le_bytes()[..]).unwrap();
        db.flush().unwrap();
    }
    let storage = SledStorage::open(&path).unwrap();
    assert_eq!(storage.generation(), 4);
}
