//! Reopen in a new process: the test writes snapshots (real envelopes, known
//! bytes) to an on-disk backend, drops the store, then runs the binary
//! `theta_reopen_child` (`tests/src/bin/theta_reopen_child.rs`) that opens the
//! same directory and dumps every snapshot it finds. The parent requires the
//! dump to be byte-identical to what it wrote, every snapshot to open as an
//! envelope of the test's actor type, the listing to be exactly the live set,
//! and every deleted id to read as not found in the child.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::within;
use theta::ActorId;
use theta::persistence::{PersistentStorage, SharedStorage, envelope};
use theta_tests::store::{Spec, Store};

const ACTOR_TYPE: uuid::Uuid = uuid::uuid!("7e0be7e0-0000-4000-8000-0000000007e0");
/// Snapshots written per backend.
const N: u64 = 40;

/// A backend, by its name in `theta_tests::store` (`fs` or `sled`).
type Backend = &'static str;

/// Opens the store of `backend` in `dir` through the tests crate's one store
/// opener (the default durability: every acknowledged write synced).
fn open(backend: Backend, dir: &Path) -> SharedStorage {
    let spec = Spec::for_backend(backend, dir, "")
        .unwrap_or_else(|e| panic!("the {backend} store spec: {e:#}"));
    Store::open(spec)
        .unwrap_or_else(|e| panic!("opening the {backend} store: {e:#}"))
        .storage()
        .clone()
}

/// Ids that share long prefixes and differ in their first and last bytes.
fn id(i: u64) -> ActorId {
    ActorId::from_u128(((u128::from(i) % 5) << 120) | (0xabcd << 32) | u128::from(i))
}

/// A deterministic payload; sizes include 0, 1, a few KiB, and one over sled's
/// 128 KiB blob threshold.
fn payload(i: u64, sequence: u64) -> Vec<u8> {
    let len = match i {
        0 => 0,
        1 => 1,
        2 => 200 << 10,
        _ => ((i * 7919 + sequence * 104_729) % 8192) as usize,
    };
    let mut state = (i << 32 | sequence).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn snapshot(i: u64, sequence: u64) -> Vec<u8> {
    envelope::seal(ACTOR_TYPE, 3, sequence, &payload(i, sequence))
}

/// Writes `N` ids, each 1..=3 times with increasing sequence numbers, deletes
/// every seventh, and returns what must remain.
async fn populate(storage: &SharedStorage) -> BTreeMap<ActorId, Vec<u8>> {
    let mut expected = BTreeMap::new();
    for i in 0..N {
        for sequence in 1..=(1 + i % 3) {
            let bytes = snapshot(i, sequence);
            within("write", storage.try_write(id(i), bytes.clone()))
                .await
                .unwrap_or_else(|e| panic!("write {i}/{sequence}: {e:#}"));
            expected.insert(id(i), bytes);
        }
    }
    for i in (0..N).step_by(7) {
        within("delete", storage.try_delete(id(i)))
            .await
            .unwrap_or_else(|e| panic!("delete {i}: {e:#}"));
        expected.remove(&id(i));
    }
    expected
}

/// The ids `populate` deletes.
fn deleted() -> Vec<ActorId> {
    (0..N).step_by(7).map(id).collect()
}

/// Runs the child binary on `dir` to completion; it also reads each of
/// `absent` and reports it only if the read says not found.
async fn run_child(backend: Backend, dir: &Path, absent: &[ActorId]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_theta_reopen_child"));
    command
        .arg(backend)
        .arg(dir)
        .args(absent.iter().map(ToString::to_string));
    within(
        "the child process",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("join")
    .expect("running the child")
}

/// What the child saw.
#[derive(Debug, Default)]
struct Dump {
    /// `id -> bytes` of every listed snapshot.
    bytes: BTreeMap<ActorId, Vec<u8>>,
    /// `id -> the actor type its envelope names`, or the error opening it.
    opened: BTreeMap<ActorId, Result<String, String>>,
    /// The ids the child read as not found.
    absent: BTreeSet<ActorId>,
}

fn parse_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd hex length {}", hex.len());
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Runs the child on `dir` and parses its dump; the child must succeed.
async fn dump_in_child(backend: Backend, dir: &Path) -> Dump {
    let output = run_child(backend, dir, &deleted()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut dump = Dump::default();
    let mut done = false;
    for line in stdout.lines() {
        assert!(!done, "output after DONE: {line:?}");
        let mut words = line.splitn(5, ' ');
        match words.next() {
            Some("SNAP") => {
                let id: ActorId = words.next().unwrap().parse().unwrap();
                let bytes = parse_hex(words.next().unwrap());
                let verdict = match (words.next(), words.next()) {
                    (Some("TYPE"), Some(t)) => Ok(t.to_owned()),
                    (Some("BAD"), Some(e)) => Err(e.to_owned()),
                    other => panic!("{id}: no envelope verdict: {other:?}"),
                };
                assert!(dump.bytes.insert(id, bytes).is_none(), "{id} listed twice");
                dump.opened.insert(id, verdict);
            }
            Some("ABSENT") => {
                let id: ActorId = words.next().unwrap().parse().unwrap();
                assert!(dump.absent.insert(id), "{id} reported absent twice");
            }
            Some("DONE") => done = true,
            _ => panic!("unexpected line from the child: {line:?}"),
        }
    }
    assert!(done, "the child did not finish its dump:\n{stdout}");
    dump
}

/// Every difference between what was written and what the child read.
fn differences(
    expected: &BTreeMap<ActorId, Vec<u8>>,
    dumped: &BTreeMap<ActorId, Vec<u8>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, want) in expected {
        match dumped.get(id) {
            None => out.push(format!("{id}: written but missing in the new process")),
            Some(got) if got != want => out.push(format!(
                "{id}: {} bytes read differ from the {} bytes written",
                got.len(),
                want.len()
            )),
            Some(_) => {}
        }
    }
    for id in dumped.keys().filter(|id| !expected.contains_key(id)) {
        out.push(format!(
            "{id}: present in the new process but deleted or never written"
        ));
    }
    out
}

async fn write_then_reopen_elsewhere(backend: Backend) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let storage = open(backend, &dir);
    let expected = populate(&storage).await;
    assert_eq!(expected.len(), (N - N.div_ceil(7)) as usize);
    // The last handle: fs joins its committer and unlocks, sled flushes and
    // releases its lock (the child's open waits for that).
    drop(storage);

    let dump = dump_in_child(backend, &dir).await;
    let diffs = differences(&expected, &dump.bytes);
    assert!(diffs.is_empty(), "{}:\n{}", backend, diffs.join("\n"));
    // Each snapshot opens (checksum verified, as a restore requires) and names
    // the test's actor type.
    let want_type = ACTOR_TYPE.to_string();
    for (id, opened) in &dump.opened {
        assert_eq!(opened.as_deref(), Ok(want_type.as_str()), "{id}");
    }
    // Deleted ids read as not found in the new process, not as empty bytes.
    assert_eq!(
        dump.absent,
        deleted().into_iter().collect::<BTreeSet<_>>(),
        "{}: the deleted ids the child read as absent",
        backend
    );
    eprintln!(
        "{}: {} snapshots ({} bytes) identical in a new process",
        backend,
        dump.bytes.len(),
        dump.bytes.values().map(Vec::len).sum::<usize>()
    );
}

#[tokio::test]
async fn fs_snapshots_are_identical_in_a_new_process() {
    write_then_reopen_elsewhere("fs").await;
}

#[tokio::test]
async fn sled_snapshots_are_identical_in_a_new_process() {
    write_then_reopen_elsewhere("sled").await;
}

/// The comparison can fail: damage one stored file behind the store's back and
/// the child's dump must differ in exactly that snapshot.
#[tokio::test]
async fn a_changed_byte_on_disk_is_reported() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let storage = open("fs", &dir);
    let expected = populate(&storage).await;
    drop(storage);

    let victim = id(3);
    let path: PathBuf = dir
        .join("snapshots")
        .join(format!(
            "{:02x}",
            victim.as_bytes().iter().fold(0u8, |acc, b| acc ^ b)
        ))
        .join(format!("{victim}.snap"));
    let mut bytes = std::fs::read(&path).expect("the victim's snapshot file");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let dump = dump_in_child("fs", &dir).await;
    let diffs = differences(&expected, &dump.bytes);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(diffs[0].starts_with(&victim.to_string()), "{diffs:?}");
    // The damaged snapshot is the one that no longer opens, on its checksum;
    // the others still do.
    for (id, opened) in &dump.opened {
        if *id == victim {
            let err = opened.as_ref().expect_err("the damaged snapshot opened");
            assert!(err.contains("checksum"), "{id}: {err}");
        } else {
            assert_eq!(
                opened.as_deref(),
                Ok(ACTOR_TYPE.to_string().as_str()),
                "{id}"
            );
        }
    }
}

/// sled drops every entry after a damaged byte of its log: a new process must
/// refuse the store rather than dump what is left.
#[tokio::test]
async fn a_truncated_sled_log_is_refused_in_a_new_process() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let storage = open("sled", &dir);
    let expected = populate(&storage).await;
    drop(storage);
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("db"))
        .expect("sled's log");
    let len = log.metadata().unwrap().len();
    log.set_len(len / 2).unwrap();
    drop(log);

    let output = run_child("sled", &dir, &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the child opened a damaged store");
    assert!(
        stderr.contains(&format!(
            "the sled database at {} is damaged",
            dir.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{} snapshots", expected.len())),
        "the error names what was stored: {stderr}"
    );
}
