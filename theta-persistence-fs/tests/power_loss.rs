//! Power loss at every crash point, on the simulated disk (feature `sim`).
//!
//! A scripted workload (writes, overwrites and deletes of a few ids, a journal
//! limit small enough that rotations, checkpoints and snapshot-file writes
//! happen every few writes, a close and a reopen in the middle) runs once to
//! count its crash points: every sync, create, `mkdir`, rename, unlink and
//! length change the store makes. Then, for every point `k`, the workload runs
//! again on a fresh disk that loses power just before point `k`, and the disk a
//! restart would find is built in several ways (`Loss`): unsynced changes all
//! dropped, all kept, torn (a prefix survives, the next write torn into a prefix
//! or some of its sectors), and reordered (any subset survives). The store is
//! opened on each and must hold, for every id, its last acknowledged snapshot,
//! byte for byte, or the write or delete that was in flight when the power
//! went out; nothing older, and a deleted id stays deleted.
//!
//! **Damage errors.** `open` must succeed on every one of these disks: each
//! only drops, tears or reorders changes that were *not synced*, which is the
//! failure the store is built to recover from. No variant here makes a damage
//! error (`CorruptJournal`, `IncompleteJournal`, `Damaged`) legitimate; those
//! are for disks that lose synced data or files changed behind the store's
//! back, which `tests/fs.rs` covers.
//!
//! The recovered store is then checked again: a second power loss while it is
//! open (after its recovery checkpoint), and a clean close and reopen, must
//! show the same snapshots.
//!
//! Three sweeps do this: durable and serial (the test waits for every
//! background checkpoint, so each run reaches the disk in the same order),
//! durable with checkpoints overlapping the writes (the order varies with
//! scheduling), and buffered (`ProcessKill`: a power loss may lose
//! acknowledged writes, but every id reads as a version written, whole).
//! Further: a power loss *during* the recovery, at each of its crash points;
//! `EIO` at each sync of the workload in turn (the poisoning path); and the
//! regression test of the one bug the sweeps found.
//!
//! `THETA_POWER_SEEDS=N` draws N torn and N reordered disks per crash point
//! (default 2) and, above 2, crashes the recovery after every crash point of
//! the workload, not every sixth (`cargo xtask soak` sets 16).

use std::collections::BTreeSet;

use theta::ActorId;
use theta::persistence::envelope::Seal;
use theta::persistence::{Durability, PersistentStorage, SnapshotNotFound};
use theta_persistence_fs::sim::{Loss, SimDisk};
use theta_persistence_fs::{FsError, FsStorage};

const STORE: &str = "/data/store";
const IDS: usize = 5;
/// The smallest journal limit the builder takes: a rotation every few writes.
const JOURNAL_LIMIT: u64 = 4 << 10;

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A new version of id `.0`, of `.1` payload bytes.
    Write(usize, usize),
    Delete(usize),
    /// `try_close`, then open again.
    Reopen,
}

fn id(i: usize) -> ActorId {
    ActorId::from_u128(0x7000 + i as u128)
}

fn actor_type() -> uuid::Uuid {
    uuid::Uuid::from_u128(0xa11ce)
}

/// The script: overwrites of every id, payloads from a few bytes to several
/// sectors (so torn writes tear inside them), deletes, a reopen.
fn script() -> Vec<Op> {
    let mut ops = Vec::new();
    let sizes = [40, 700, 1500, 90, 2600, 10];
    for round in 0..6 {
        for i in 0..IDS {
            ops.push(Op::Write(i, sizes[(round + i) % sizes.len()]));
        }
        match round {
            1 => ops.push(Op::Delete(2)),
            2 => {
                ops.push(Op::Delete(4));
                ops.push(Op::Reopen);
            }
            3 => ops.push(Op::Delete(0)),
            4 => ops.push(Op::Delete(9 % IDS)),
            _ => {}
        }
    }
    ops.push(Op::Delete(1));
    ops
}

/// What the workload was told: per id, the state after its last acknowledged
/// write or delete (`None`: absent), and the operation in flight when the
/// store failed, if any.
#[derive(Debug, Clone, Default)]
struct Model {
    acked: Vec<Option<Vec<u8>>>,
    in_flight: Option<(usize, Option<Vec<u8>>)>,
    /// Every version ever written per id (for the buffered mode's weaker rule).
    written: Vec<Vec<Vec<u8>>>,
}

impl Model {
    fn new() -> Self {
        Self {
            acked: vec![None; IDS],
            in_flight: None,
            written: vec![Vec::new(); IDS],
        }
    }

    /// What id `i` may read as after a crash: its last acknowledged state, or
    /// the one in flight.
    fn allowed(&self, i: usize) -> Vec<Option<Vec<u8>>> {
        let mut out = vec![self.acked[i].clone()];
        if let Some((j, state)) = &self.in_flight
            && *j == i
        {
            out.push(state.clone());
        }
        out
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

fn open(disk: &SimDisk, durability: Durability) -> Result<FsStorage, FsError> {
    FsStorage::builder(STORE)
        .sim_disk(disk.clone())
        .durability(durability)
        .journal_limit(JOURNAL_LIMIT)
        .open()
}

/// How the workload goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// Waits for every background checkpoint after each operation: the disk
    /// sees the same calls in the same order in every run.
    Serial,
    /// Does not wait: checkpoints overlap with writes, as they do in use.
    Overlapping,
}

/// Runs the script on `disk` until the first failure (the power went out, or
/// a sync failed); returns what it was told.
fn run(rt: &tokio::runtime::Runtime, disk: &SimDisk, durability: Durability, pace: Pace) -> Model {
    rt.block_on(async {
        let mut model = Model::new();
        let mut sequence = [0u64; IDS];
        let Ok(mut storage) = open(disk, durability) else {
            return model;
        };
        if pace == Pace::Serial && storage.settle().await.is_err() {
            return model;
        }
        for op in script() {
            let (i, state, result) = match op {
                Op::Write(i, size) => {
                    sequence[i] += 1;
                    let payload: Vec<u8> = (0..size)
                        .map(|b| (b as u64 * 31 + sequence[i] * 7 + i as u64) as u8)
                        .collect();
                    let bytes = Seal::new(actor_type())
                        .actor_id(id(i))
                        .sequence(sequence[i])
                        .seal(&payload);
                    model.written[i].push(bytes.clone());
                    let result = storage.try_write(id(i), bytes.clone()).await;
                    (i, Some(bytes), result)
                }
                Op::Delete(i) => (i, None, storage.try_delete(id(i)).await),
                Op::Reopen => {
                    if storage.try_close().await.is_err() {
                        return model;
                    }
                    drop(storage);
                    match open(disk, durability) {
                        Ok(reopened) => storage = reopened,
                        Err(_) => return model,
                    }
                    if pace == Pace::Serial && storage.settle().await.is_err() {
                        return model;
                    }
                    continue;
                }
            };
            match result {
                Ok(()) => model.acked[i] = state,
                Err(_) => {
                    model.in_flight = Some((i, state));
                    return model;
                }
            }
            if pace == Pace::Serial && storage.settle().await.is_err() {
                return model;
            }
        }
        // Dropping the last handle closes the store: a last checkpoint.
        drop(storage);
        model
    })
}

/// Opens the store on `disk` and reads every id; fails the test, saying
/// `what`, if the open fails or an id reads as anything `allowed` does not
/// permit. Returns the store and what each id read as.
fn check(
    rt: &tokio::runtime::Runtime,
    disk: &SimDisk,
    durability: Durability,
    allowed: &dyn Fn(usize, &Option<Vec<u8>>) -> bool,
    what: &str,
) -> (FsStorage, Vec<Option<Vec<u8>>>) {
    let storage = match open(disk, durability) {
        Ok(storage) => storage,
        Err(e) => panic!("{what}: open failed on a disk it must recover: {e}"),
    };
    let found = rt.block_on(async {
        let mut found = Vec::new();
        for i in 0..IDS {
            let state = match storage.try_read(id(i)).await {
                Ok(bytes) => Some(bytes),
                Err(e) if e.is::<SnapshotNotFound>() => None,
                Err(e) => panic!("{what}: reading id {i} failed: {e:#}"),
            };
            assert!(
                allowed(i, &state),
                "{what}: id {i} reads as {}",
                describe(&state)
            );
            found.push(state);
        }
        let listed: BTreeSet<ActorId> = storage.try_list().await.unwrap().into_iter().collect();
        let present: BTreeSet<ActorId> = (0..IDS).filter(|&i| found[i].is_some()).map(id).collect();
        assert_eq!(listed, present, "{what}: try_list disagrees with the reads");
        found
    });
    (storage, found)
}

fn describe(state: &Option<Vec<u8>>) -> String {
    match state {
        None => "absent".into(),
        Some(bytes) => format!(
            "{} bytes, sequence {:?}",
            bytes.len(),
            theta::persistence::envelope::sequence_of(bytes)
        ),
    }
}

/// `THETA_POWER_SEEDS`: torn and reordered disks per crash point (default 2).
fn seeds() -> u64 {
    std::env::var("THETA_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

/// The losses drawn per crash point.
fn losses(point: u64) -> Vec<Loss> {
    let seeds = seeds();
    let mut out = vec![Loss::Dropped, Loss::Kept];
    for s in 0..seeds {
        let seed = point * 1000 + s;
        out.push(Loss::Torn { seed });
        out.push(Loss::Reordered { seed });
    }
    out
}

/// Recovers `image` and checks it against `model`, then checks that the
/// recovery itself is durable: a power loss right after it (`Loss::Torn`), and
/// a clean close and reopen, read the same.
fn recover_and_check(
    rt: &tokio::runtime::Runtime,
    image: &SimDisk,
    durability: Durability,
    allowed: &dyn Fn(usize, &Option<Vec<u8>>) -> bool,
    what: &str,
    seed: u64,
) {
    let (storage, found) = check(rt, image, durability, allowed, what);
    rt.block_on(storage.settle())
        .unwrap_or_else(|e| panic!("{what}: settling the recovered store: {e:#}"));
    let same = |i: usize, state: &Option<Vec<u8>>| *state == found[i];
    let again = image.power_loss(Loss::Torn { seed });
    let (second, _) = check(
        rt,
        &again,
        durability,
        &same,
        &format!("{what}, then power lost after the recovery"),
    );
    drop(second);
    rt.block_on(storage.try_close())
        .unwrap_or_else(|e| panic!("{what}: closing the recovered store: {e:#}"));
    drop(storage);
    let (reopened, _) = check(
        rt,
        image,
        durability,
        &same,
        &format!("{what}, then closed and reopened"),
    );
    drop(reopened);
}

/// Crashes the workload at every point in turn; returns (points, disks checked).
fn sweep(durability: Durability, pace: Pace) -> (u64, u64) {
    let rt = runtime();
    let dry = SimDisk::new();
    let full = run(&rt, &dry, durability, pace);
    assert_eq!(full.in_flight, None, "the dry run failed: {full:?}");
    let points = dry.points();
    let trace = dry.trace();
    let mut checked = 0;
    for k in 0..points {
        let disk = SimDisk::new();
        disk.crash_at(k);
        let model = run(&rt, &disk, durability, pace);
        if pace == Pace::Serial {
            assert!(
                disk.crashed(),
                "point {k} was not reached again: the run changed"
            );
        }
        let at = trace.get(k as usize).map_or("?", String::as_str);
        for loss in losses(k) {
            let image = disk.power_loss(loss);
            let what =
                format!("{durability:?} {pace:?}, power lost before point {k} ({at}), {loss:?}");
            let strict = |i: usize, state: &Option<Vec<u8>>| model.allowed(i).contains(state);
            // Buffered mode promises only a process kill: after a power loss,
            // each id reads as some version written (or absent), whole.
            let weak = |i: usize, state: &Option<Vec<u8>>| match state {
                None => true,
                Some(bytes) => model.written[i].contains(bytes),
            };
            let allowed: &dyn Fn(usize, &Option<Vec<u8>>) -> bool =
                if durability == Durability::PowerLoss || loss == Loss::Kept {
                    &strict
                } else {
                    &weak
                };
            recover_and_check(&rt, &image, durability, allowed, &what, k);
            checked += 1;
        }
    }
    (points, checked)
}

#[test]
fn every_crash_point_of_a_durable_store_keeps_every_acknowledged_snapshot() {
    let (points, checked) = sweep(Durability::PowerLoss, Pace::Serial);
    println!(
        "power loss (durable, serial): {points} crash points, {checked} post-crash disks recovered"
    );
    assert!(
        points >= 150,
        "only {points} crash points: the workload no longer reaches the disk"
    );
}

#[test]
fn crash_points_with_checkpoints_overlapping_writes() {
    let (points, checked) = sweep(Durability::PowerLoss, Pace::Overlapping);
    println!(
        "power loss (durable, overlapping): about {points} crash points, {checked} post-crash disks recovered"
    );
    assert!(
        points >= 60,
        "only {points} crash points: the workload no longer reaches the disk"
    );
}

#[test]
fn every_crash_point_of_a_buffered_store_recovers_whole_snapshots() {
    let (points, checked) = sweep(Durability::ProcessKill, Pace::Serial);
    println!(
        "power loss (buffered, serial): {points} crash points, {checked} post-crash disks recovered"
    );
    assert!(
        points >= 120,
        "only {points} crash points: the workload no longer reaches the disk"
    );
}

/// Whether `error` is the `EIO` of a failed sync, or the poisoning it caused.
fn is_sync_failure(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<FsError>() {
            Some(FsError::Io { source, .. }) => source.raw_os_error() == Some(5),
            Some(FsError::Poisoned { .. }) => true,
            _ => false,
        })
}

fn is_poisoned_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<FsError>(),
            Some(FsError::Poisoned { .. })
        )
    })
}

/// Opens the store on `disk`; an open whose sync failed must say so (an `EIO`
/// error), and the next open (the sync succeeds again) must work.
fn open_after_eio(disk: &SimDisk) -> FsStorage {
    match open(disk, Durability::PowerLoss) {
        Ok(storage) => storage,
        Err(e) => {
            assert!(
                matches!(&e, FsError::Io { source, .. } if source.raw_os_error() == Some(5)),
                "an open failed with {e}, not with the failed sync ({:?})",
                disk.failed_syncs()
            );
            open(disk, Durability::PowerLoss).unwrap_or_else(|e| panic!("reopening: {e}"))
        }
    }
}

/// What a run with one failed sync showed.
#[derive(Debug, Default)]
struct Eio {
    model: Model,
    /// A write or delete was refused with the sync's own `EIO`.
    refused_with_eio: bool,
    /// The store was found poisoned after the failure.
    poisoned: bool,
    /// Power lost at the end of the script, the store open (after the reopen
    /// that followed the failure).
    at_end: Vec<SimDisk>,
    /// Power lost right after the first write or delete acknowledged after
    /// the failure, and what was acknowledged then.
    early: Option<(SimDisk, Model)>,
}

/// One write or delete of the script: `None` for a reopen.
async fn step(
    storage: &FsStorage,
    op: Op,
    sequence: &mut [u64; IDS],
) -> Option<(usize, Option<Vec<u8>>, anyhow::Result<()>)> {
    match op {
        Op::Write(i, size) => {
            sequence[i] += 1;
            let bytes = Seal::new(actor_type())
                .actor_id(id(i))
                .sequence(sequence[i])
                .seal(&vec![i as u8; size]);
            let result = storage.try_write(id(i), bytes.clone()).await;
            Some((i, Some(bytes), result))
        }
        Op::Delete(i) => Some((i, None, storage.try_delete(id(i)).await)),
        Op::Reopen => None,
    }
}

/// Runs the script on `disk` (one sync of which fails) up to the failure,
/// checks the store is poisoned (a new write and a delete are refused with
/// `FsError::Poisoned`), reopens it and runs the rest of the script, and takes
/// power-loss images at its end, the store still open.
fn run_eio(rt: &tokio::runtime::Runtime, disk: &SimDisk) -> Eio {
    rt.block_on(async {
        let mut out = Eio {
            model: Model::new(),
            ..Eio::default()
        };
        let mut sequence = [0u64; IDS];
        let mut storage = open_after_eio(disk);
        storage.settle().await.unwrap();
        // Failed syncs before this store was open (one of an open).
        let mut before = disk.failed_syncs().len();
        let mut reopened = false;
        for op in script() {
            if !reopened && disk.failed_syncs().len() > before {
                assert!(
                    storage.is_poisoned(),
                    "a sync failed ({:?}) and the store is not poisoned",
                    disk.failed_syncs()
                );
                out.poisoned = true;
                // Refused until reopened; never reaches the journal.
                let late = Seal::new(actor_type())
                    .actor_id(id(3))
                    .sequence(1000)
                    .seal(b"late");
                let refused = storage.try_write(id(3), late).await.unwrap_err();
                assert!(
                    is_poisoned_error(&refused),
                    "a write after the failed sync: {refused:#}"
                );
                let refused = storage.try_delete(id(1)).await.unwrap_err();
                assert!(
                    is_poisoned_error(&refused),
                    "a delete after the failed sync: {refused:#}"
                );
                drop(storage);
                storage = open_after_eio(disk);
                assert!(!storage.is_poisoned());
                storage.settle().await.unwrap();
                reopened = true;
            }
            let Some((i, state, result)) = step(&storage, op, &mut sequence).await else {
                if let Err(e) = storage.try_close().await {
                    assert!(is_sync_failure(&e), "close failed with {e:#}");
                    assert!(
                        storage.is_poisoned(),
                        "a failed sync at the close did not poison"
                    );
                    out.poisoned = true;
                }
                drop(storage);
                storage = open_after_eio(disk);
                storage.settle().await.unwrap();
                before = disk.failed_syncs().len();
                continue;
            };
            match result {
                Ok(()) => {
                    out.model.acked[i] = state;
                    // Acknowledged after it: what was in flight is older.
                    if out.model.in_flight.as_ref().is_some_and(|(j, _)| *j == i) {
                        out.model.in_flight = None;
                    }
                    if out.early.is_none() && !disk.failed_syncs().is_empty() {
                        out.early = Some((disk.power_loss(Loss::Dropped), out.model.clone()));
                    }
                }
                Err(e) => {
                    assert!(!reopened, "a write after the reopen failed: {e:#}");
                    let failed = disk.failed_syncs();
                    assert_eq!(
                        failed.len(),
                        1,
                        "an operation failed with {e:#} though no sync failed"
                    );
                    assert!(
                        is_sync_failure(&e),
                        "refused with {e:#}, not the failed sync"
                    );
                    out.refused_with_eio |= !is_poisoned_error(&e);
                    out.model.in_flight = Some((i, state));
                }
            }
            storage.settle().await.unwrap();
        }
        out.at_end = vec![
            disk.power_loss(Loss::Dropped),
            disk.power_loss(Loss::Torn { seed: 7 }),
        ];
        drop(storage);
        out
    })
}

#[test]
fn a_failed_sync_refuses_its_write_poisons_the_store_and_loses_nothing_acknowledged() {
    let rt = runtime();
    let dry = SimDisk::new();
    run(&rt, &dry, Durability::PowerLoss, Pace::Serial);
    let syncs = dry.syncs();
    let (mut refused, mut poisoned, mut journal_syncs) = (0, 0, 0);
    for n in 0..syncs {
        let disk = SimDisk::new();
        disk.fail_sync_at(n);
        let eio = run_eio(&rt, &disk);
        let failed = disk.failed_syncs();
        assert_eq!(
            failed.len(),
            1,
            "sync {n} was not reached again: the run changed"
        );
        refused += u64::from(eio.refused_with_eio);
        poisoned += u64::from(eio.poisoned);
        journal_syncs +=
            u64::from(failed[0].starts_with("fdatasync") && failed[0].ends_with(".log"));
        let model = &eio.model;
        let strict = |i: usize, state: &Option<Vec<u8>>| model.allowed(i).contains(state);
        let what = format!("sync {n} ({}) failed", failed[0]);
        // Power lost at the end, the reopened store still open.
        for (image, loss) in eio.at_end.iter().zip(["Dropped", "Torn"]) {
            recover_and_check(
                &rt,
                image,
                Durability::PowerLoss,
                &strict,
                &format!("{what}, reopened, the script finished, power lost ({loss})"),
                n,
            );
        }
        if let Some((image, early)) = &eio.early {
            let strict = |i: usize, state: &Option<Vec<u8>>| early.allowed(i).contains(state);
            recover_and_check(
                &rt,
                image,
                Durability::PowerLoss,
                &strict,
                &format!("{what}, power lost after the next acknowledged write"),
                n,
            );
        }
        // The same disk after the close, reopened (a process restart) and
        // after power losses.
        recover_and_check(
            &rt,
            &disk,
            Durability::PowerLoss,
            &strict,
            &format!("{what}, closed, reopened"),
            n,
        );
        for loss in [Loss::Dropped, Loss::Reordered { seed: n }] {
            let image = disk.power_loss(loss);
            recover_and_check(
                &rt,
                &image,
                Durability::PowerLoss,
                &strict,
                &format!("{what}, closed, {loss:?}"),
                n,
            );
        }
    }
    println!(
        "EIO: {syncs} syncs failed in turn ({journal_syncs} of journal segments); {refused} writes refused with the EIO, {poisoned} runs poisoned"
    );
    assert!(
        syncs >= 60,
        "only {syncs} syncs: the workload no longer reaches the disk"
    );
    assert!(
        refused >= 10,
        "only {refused} writes were refused with their sync's EIO"
    );
    assert!(
        poisoned >= refused,
        "{poisoned} runs poisoned, fewer than refused writes"
    );
}

/// Found by the failed-sync sweep (`a_failed_sync_refuses_..`): the open creates the store's missing ancestors
/// and syncs the parent of each, but an open whose sync of a parent failed left
/// the new directory's entry unsynced, and the next open, finding the
/// directory, never synced it again: a power loss then took the whole store,
/// acknowledged writes and all.
#[test]
fn an_open_after_a_failed_sync_of_a_new_parent_makes_the_store_path_durable() {
    let rt = runtime();
    let disk = SimDisk::new();
    disk.fail_sync_at(0);
    let refused = open(&disk, Durability::PowerLoss).unwrap_err();
    assert!(
        matches!(&refused, FsError::Io { source, .. } if source.raw_os_error() == Some(5)),
        "{refused}"
    );
    assert_eq!(disk.failed_syncs(), vec!["fsync /".to_owned()]);
    let storage = open(&disk, Durability::PowerLoss).unwrap();
    let bytes = Seal::new(actor_type())
        .actor_id(id(0))
        .sequence(1)
        .seal(b"kept");
    rt.block_on(storage.try_write(id(0), bytes.clone()))
        .unwrap();
    let image = disk.power_loss(Loss::Dropped);
    let (_recovered, found) = check(
        &rt,
        &image,
        Durability::PowerLoss,
        &|i, state| state.as_ref() == (i == 0).then_some(&bytes),
        "power lost after an open that followed a failed one",
    );
    assert_eq!(found[0].as_ref(), Some(&bytes));
}

/// Opens the store on `disk`, lets its recovery checkpoint run, and drops it
/// (the last checkpoint): whatever fails on a crashed disk is ignored.
fn recover(rt: &tokio::runtime::Runtime, disk: &SimDisk) {
    if let Ok(storage) = open(disk, Durability::PowerLoss) {
        let _ = rt.block_on(storage.settle());
        drop(storage);
    }
}

/// A power loss during the recovery from a power loss: for crash points of
/// the workload (every sixth; every one with `THETA_POWER_SEEDS` above 2), the
/// torn post-crash disk is recovered once cleanly, to see what it holds; then
/// the recovery (open, its checkpoint, the close) crashes at each of its own
/// points in turn, and the disk after that second power loss (dropped, torn)
/// must hold exactly the same.
#[test]
fn a_power_loss_during_recovery_loses_nothing() {
    let rt = runtime();
    let dry = SimDisk::new();
    run(&rt, &dry, Durability::PowerLoss, Pace::Serial);
    let points = dry.points();
    let step = if seeds() > 2 { 1 } else { 6 };
    let (mut recovery_points, mut checked) = (0, 0);
    for k in (0..points).step_by(step) {
        let disk = SimDisk::new();
        disk.crash_at(k);
        let model = run(&rt, &disk, Durability::PowerLoss, Pace::Serial);
        let image = disk.power_loss(Loss::Torn { seed: k });
        let strict = |i: usize, state: &Option<Vec<u8>>| model.allowed(i).contains(state);
        let what = format!("power lost before point {k}, Torn");
        let (clean, found) = check(
            &rt,
            &image.restarted(),
            Durability::PowerLoss,
            &strict,
            &what,
        );
        drop(clean);
        let probe = image.restarted();
        recover(&rt, &probe);
        let points_of_recovery = probe.points();
        recovery_points += points_of_recovery;
        let same = |i: usize, state: &Option<Vec<u8>>| *state == found[i];
        for j in 0..points_of_recovery {
            let copy = image.restarted();
            copy.crash_at(j);
            recover(&rt, &copy);
            let at = probe.trace().get(j as usize).cloned().unwrap_or_default();
            for loss in [Loss::Dropped, Loss::Torn { seed: j }] {
                let what = format!("{what}, then again before recovery point {j} ({at}), {loss:?}");
                let (storage, _) = check(
                    &rt,
                    &copy.power_loss(loss),
                    Durability::PowerLoss,
                    &same,
                    &what,
                );
                drop(storage);
                checked += 1;
            }
        }
    }
    println!(
        "power loss during recovery: {recovery_points} recovery crash points, {checked} disks recovered"
    );
    assert!(
        recovery_points >= 150,
        "only {recovery_points} recovery crash points: the recoveries no longer reach the disk"
    );
}
