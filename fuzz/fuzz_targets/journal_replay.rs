//! Arbitrary journal segments and snapshot files into the fs backend's recovery,
//! through its public API: the input describes a store directory (segments with
//! batches of put and delete records, damage to them, snapshot files; or raw
//! bytes as a segment: see `theta_fuzz::journal`), which is written to a temp
//! directory (on tmpfs where there is one) and opened with `FsStorage::open`.
//!
//! The open must fail with a typed journal error or hold exactly what the input
//! says it must (the files overlaid with the records of the batches before the
//! first damaged byte); every listed id must read; a close must succeed and a
//! reopen must hold the same. A panic, an abort or an allocation over the cap
//! is a finding.

#![no_main]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use theta::ActorId;
use theta::persistence::{Durability, PersistentStorage, SnapshotNotFound};
use theta_fuzz::journal::{Expect, Plan};
use theta_persistence_fs::{FsError, FsStorage};

// At most 64 MiB per input, in one allocation or in all (`-malloc_limit_mb`
// works through it).
theta_fuzz::install!();

/// The directory this process writes its stores in, emptied before each input.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let base = root.join(format!("theta-fuzz-journal-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("creating the fuzz directory");
        base
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

fn open(dir: &Path, plan: &Plan) -> Result<FsStorage, FsError> {
    let durability = if plan.process_kill() {
        Durability::ProcessKill
    } else {
        Durability::PowerLoss
    };
    FsStorage::builder(dir).durability(durability).open()
}

/// Every listed id and its bytes; each must read.
async fn contents(storage: &FsStorage) -> BTreeMap<ActorId, Vec<u8>> {
    let ids = storage.try_list().await.expect("try_list");
    let mut out = BTreeMap::new();
    for id in ids {
        let bytes = match storage.try_read(id).await {
            Ok(bytes) => bytes,
            Err(e) => panic!("listed id {id} does not read: {e:#}"),
        };
        assert!(out.insert(id, bytes).is_none(), "id {id} listed twice");
    }
    out
}

async fn check(dir: &Path, plan: &Plan) {
    let expect = plan.expect();
    let storage = match open(dir, plan) {
        Ok(storage) => storage,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    FsError::CorruptJournal { .. } | FsError::IncompleteJournal { .. }
                ),
                "the open failed with an error that is not about the journal: {e:?}"
            );
            assert!(
                !matches!(expect, Expect::State(_)),
                "the open failed ({e}) where it must hold {expect:?}"
            );
            return;
        }
    };
    assert!(
        !matches!(expect, Expect::Error),
        "the open succeeded where the damage must fail it (a sealed segment, or a synced one with valid batches after it)"
    );
    let held = contents(&storage).await;
    match &expect {
        Expect::State(state) | Expect::StateOrError(state) => {
            assert_eq!(&held, state, "the open holds something else")
        }
        Expect::Error | Expect::Consistent => {}
    }
    for id in &plan.ids {
        if !held.contains_key(id) {
            match storage.try_read(*id).await {
                Err(e) if e.is::<SnapshotNotFound>() => {}
                other => panic!("id {id} is not listed, and reads as {other:?}"),
            }
        }
    }
    // Lists by type never panic (a stored file that is not an envelope fails
    // them, as documented).
    let _ = storage
        .try_list_type(<theta_fuzz::snapshots::Target as theta::Actor>::TYPE_ID)
        .await;
    if let Err(e) = storage.try_close().await {
        panic!("closing a replayed store failed: {e:#}");
    }
    drop(storage);
    let reopened = match open(dir, plan) {
        Ok(storage) => storage,
        Err(e) => panic!("a store that opened and closed does not open again: {e}"),
    };
    assert_eq!(
        contents(&reopened).await,
        held,
        "the reopened store holds something else"
    );
    if let Err(e) = reopened.try_close().await {
        panic!("closing the reopened store failed: {e:#}");
    }
}

fuzz_target!(|data: &[u8]| {
    theta_fuzz::alloc_cap::begin_input();
    let plan = Plan::parse(data);
    let dir = base().join("store");
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing {}: {e}", dir.display()),
    }
    plan.write(&dir).expect("writing the store directory");
    runtime().block_on(check(&dir, &plan));
});
