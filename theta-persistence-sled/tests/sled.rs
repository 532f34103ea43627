//! `SledStorage` against the storage contract: absent vs. present, round trips,
//! stale writes, concurrency, delete, list, reopen, sharing a database, errors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use theta::ActorId;
use theta::persistence::{PersistentStorage, SnapshotNotFound, StaleSnapshot, envelope};
use theta_persistence_sled::{Durability, SledError, SledStorage, sled};

const TYPE: ActorId = ActorId::from_u128(0x0000_0000_0000_4000_8000_0000_0000_00aa);

/// Every await in these tests: a hang fails fast instead of stalling the suite.
async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out after 10 s")
}

fn snapshot(sequence: u64, payload: &[u8]) -> Vec<u8> {
    envelope::seal(TYPE, 0, sequence, payload)
}

fn storage() -> (tempfile::TempDir, SledStorage) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = SledStorage::open(dir.path().join("db")).expect("open");
    (dir, storage)
}

#[tokio::test]
async fn absent_is_snapshot_not_found() {
    let (_dir, storage) = storage();
    let err = within(storage.try_read(ActorId::new_v4()))
        .await
        .unwrap_err();
    assert!(err.is::<SnapshotNotFound>(), "{err:#}");
}

#[tokio::test]
async fn round_trips_are_byte_identical() {
    let (_dir, storage) = storage();
    for (i, len) in [0usize, 1, 10 << 10, 16 << 20].into_iter().enumerate() {
        let id = ActorId::new_v4();
        let payload: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
        let bytes = snapshot(1, &payload);
        within(storage.try_write(id, bytes.clone())).await.unwrap();
        let read = within(storage.try_read(id)).await.unwrap();
        assert!(
            read == bytes,
            "payload of {len} bytes differs after a round trip"
        );
        let (_, opened) = envelope::open(&read, envelope::DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(opened.len(), len);
    }
}

#[tokio::test]
async fn overwrite_returns_latest() {
    let (_dir, storage) = storage();
    let id = ActorId::new_v4();
    for seq in 1..=5 {
        within(storage.try_write(id, snapshot(seq, &[seq as u8; 3])))
            .await
            .unwrap();
    }
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        snapshot(5, &[5; 3])
    );
}

#[tokio::test]
async fn ids_sharing_prefixes_are_independent() {
    let (_dir, storage) = storage();
    let base = 0xabcd_ef01_2345_6789_abcd_ef01_2345_6700u128;
    let ids: Vec<ActorId> = (0..8u128)
        .map(|i| ActorId::from_u128(base + i))
        .chain([ActorId::from_u128(base >> 8), ActorId::from_u128(base << 8)])
        .collect();
    for (i, id) in ids.iter().enumerate() {
        within(storage.try_write(*id, snapshot(1, &[i as u8; 4])))
            .await
            .unwrap();
    }
    within(storage.try_delete(ids[3])).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let read = within(storage.try_read(*id)).await;
        if i == 3 {
            assert!(read.unwrap_err().is::<SnapshotNotFound>());
        } else {
            assert_eq!(read.unwrap(), snapshot(1, &[i as u8; 4]), "id {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_writers_read_back_their_last_writes() {
    let (_dir, storage) = storage();
    let ids: Vec<ActorId> = (0..100).map(|_| ActorId::new_v4()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().copied().enumerate() {
        let storage = storage.clone();
        tasks.spawn(async move {
            for seq in 1..=10u64 {
                let payload = format!("actor {i} write {seq}");
                storage
                    .try_write(id, snapshot(seq, payload.as_bytes()))
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    within(async {
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
    })
    .await;
    for (i, id) in ids.iter().enumerate() {
        let expected = snapshot(10, format!("actor {i} write 10").as_bytes());
        assert_eq!(within(storage.try_read(*id)).await.unwrap(), expected);
    }
}

#[tokio::test]
async fn delete_is_idempotent_and_a_later_write_works() {
    let (_dir, storage) = storage();
    let id = ActorId::new_v4();
    within(storage.try_write(id, snapshot(4, b"x")))
        .await
        .unwrap();
    within(storage.try_delete(id)).await.unwrap();
    within(storage.try_delete(id)).await.unwrap();
    within(storage.try_delete(ActorId::new_v4())).await.unwrap();
    assert!(
        within(storage.try_read(id))
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );
    // After a delete any sequence starts over, including a lower one.
    within(storage.try_write(id, snapshot(1, b"y")))
        .await
        .unwrap();
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        snapshot(1, b"y")
    );
}

#[tokio::test]
async fn stale_write_is_refused_and_newer_kept() {
    let (_dir, storage) = storage();
    let id = ActorId::new_v4();
    within(storage.try_write(id, snapshot(7, b"newer")))
        .await
        .unwrap();
    let err = within(storage.try_write(id, snapshot(6, b"older")))
        .await
        .unwrap_err();
    let stale = err
        .downcast_ref::<StaleSnapshot>()
        .expect("a StaleSnapshot");
    assert_eq!(
        *stale,
        StaleSnapshot {
            id,
            stored: 7,
            attempted: 6
        }
    );
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        snapshot(7, b"newer")
    );
    // An equal sequence number is a repeat, not a newer snapshot: refused.
    let repeat = within(storage.try_write(id, snapshot(7, b"again")))
        .await
        .unwrap_err();
    assert_eq!(
        repeat.downcast_ref::<StaleSnapshot>(),
        Some(&StaleSnapshot {
            id,
            stored: 7,
            attempted: 7
        })
    );
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        snapshot(7, b"newer")
    );
}

#[tokio::test]
async fn non_envelope_bytes_are_stored_as_is() {
    let (_dir, storage) = storage();
    let id = ActorId::new_v4();
    within(storage.try_write(id, snapshot(9, b"env")))
        .await
        .unwrap();
    within(storage.try_write(id, b"not an envelope".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        b"not an envelope"
    );
    within(storage.try_write(id, Vec::new())).await.unwrap();
    assert_eq!(within(storage.try_read(id)).await.unwrap(), b"");
    within(storage.try_write(id, snapshot(1, b"env")))
        .await
        .unwrap();
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        snapshot(1, b"env")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_id_higher_sequence_survives() {
    let (_dir, storage) = storage();
    for round in 0..20u64 {
        let id = ActorId::new_v4();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let (low, high) = (round * 2 + 1, round * 2 + 2);
        let spawn = |seq: u64| {
            let storage = storage.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                storage.try_write(id, snapshot(seq, &[seq as u8; 64])).await
            })
        };
        let (a, b) = (spawn(low), spawn(high));
        let (a, b) = within(async { (a.await.unwrap(), b.await.unwrap()) }).await;
        // The higher write always succeeds; the lower one succeeds only if it
        // landed first, and is otherwise refused as stale.
        b.unwrap();
        if let Err(err) = a {
            assert!(err.is::<StaleSnapshot>(), "{err:#}");
        }
        assert_eq!(
            within(storage.try_read(id)).await.unwrap(),
            snapshot(high, &[high as u8; 64])
        );
    }
}

#[tokio::test]
async fn reopen_reads_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut written = Vec::new();
    {
        let storage = SledStorage::open(&path).unwrap();
        for i in 0..10u8 {
            let id = ActorId::new_v4();
            let bytes = snapshot(u64::from(i), &vec![i; 1000 * usize::from(i)]);
            within(storage.try_write(id, bytes.clone())).await.unwrap();
            written.push((id, bytes));
        }
        within(storage.try_delete(written[0].0)).await.unwrap();
    }
    let storage = SledStorage::open(&path).expect("reopen after drop");
    assert!(
        within(storage.try_read(written[0].0))
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );
    for (id, bytes) in &written[1..] {
        assert!(within(storage.try_read(*id)).await.unwrap() == *bytes);
    }
}

#[tokio::test]
async fn buffered_writes_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let id = ActorId::new_v4();
    {
        let storage = SledStorage::open(&path)
            .unwrap()
            .with_durability(Durability::Buffered);
        assert_eq!(storage.durability(), Durability::Buffered);
        within(storage.try_write(id, snapshot(1, b"buffered")))
            .await
            .unwrap();
        within(storage.close()).await.unwrap();
    }
    let storage = SledStorage::open(&path).unwrap();
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        snapshot(1, b"buffered")
    );
}

#[tokio::test]
async fn list_is_exactly_the_live_set() {
    let (_dir, storage) = storage();
    assert!(within(storage.try_list()).await.unwrap().is_empty());
    let mut ids: Vec<ActorId> = (0..20).map(|_| ActorId::new_v4()).collect();
    for id in &ids {
        within(storage.try_write(*id, snapshot(1, b"x")))
            .await
            .unwrap();
    }
    for id in ids.drain(..5) {
        within(storage.try_delete(id)).await.unwrap();
    }
    let mut listed = within(storage.try_list()).await.unwrap();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
}

#[tokio::test]
async fn from_db_leaves_other_data_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let other = db.open_tree("app.data").unwrap();
    other.insert(b"config", b"keep me".as_slice()).unwrap();
    db.insert(b"default tree key", b"also mine".as_slice())
        .unwrap();

    let storage = SledStorage::from_db(&db).unwrap();
    let id = ActorId::new_v4();
    within(storage.try_write(id, snapshot(1, b"s")))
        .await
        .unwrap();
    assert_eq!(within(storage.try_list()).await.unwrap(), vec![id]);
    within(storage.try_delete(id)).await.unwrap();
    within(storage.try_write(ActorId::new_v4(), snapshot(1, b"t")))
        .await
        .unwrap();

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
    let storage = SledStorage::from_tree(tree);
    assert!(
        storage.location().contains("my.snapshots"),
        "{}",
        storage.location()
    );
    let id = ActorId::new_v4();
    within(storage.try_write(id, snapshot(1, b"s")))
        .await
        .unwrap();
    assert_eq!(within(storage.try_list()).await.unwrap(), vec![id]);
    assert!(within(storage.shared().unwrap().try_read(id)).await.is_ok());
}

#[test]
fn open_on_a_regular_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-directory");
    std::fs::write(&path, b"plain file").unwrap();
    let err = SledStorage::open(&path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.starts_with("opening the sled database at"),
        "{message}"
    );
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
    let id = ActorId::new_v4();
    let bytes = snapshot(1, &vec![3u8; 1 << 20]);
    within(storage.try_write(id, bytes.clone())).await.unwrap();
    assert!(path.join("db").is_file());
    let blobs = std::fs::read_dir(path.join("blobs")).unwrap().count();
    assert!(blobs >= 1, "a 1 MiB value should be a blob file");
    drop(storage);
    let storage = SledStorage::open(&path).unwrap();
    assert!(within(storage.try_read(id)).await.unwrap() == bytes);
}

#[tokio::test]
async fn from_db_at_syncs_the_named_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = sled::open(&path).unwrap();
    let storage = SledStorage::from_db_at(&db, &path).unwrap();
    assert!(storage.location().contains(&path.display().to_string()));
    let id = ActorId::new_v4();
    within(storage.try_write(id, snapshot(1, b"s")))
        .await
        .unwrap();
    assert_eq!(
        within(storage.try_read(id)).await.unwrap(),
        snapshot(1, b"s")
    );
    let wrong = dir.path().join("elsewhere");
    let err = SledStorage::from_db_at(&db, &wrong).unwrap_err();
    assert!(
        err.to_string().contains(&wrong.display().to_string()),
        "{err}"
    );
}
