//! Reopen in a new process: the test writes snapshots (real envelopes, known
//! bytes) to an on-disk backend, drops the store, then re-executes this test
//! binary as a child that opens the same directory and dumps every snapshot it
//! finds. The parent requires the dump to be byte-identical to what it wrote,
//! and the listing to be exactly the live set (deleted ids stay deleted).
//!
//! The child is the test `child_dump`, which does nothing unless
//! `THETA_REOPEN_CHILD` names a backend.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::within;
use theta::ActorId;
use theta::persistence::{PersistentStorage, SharedStorage, SnapshotNotFound, envelope};
use theta_persistence_fs::FsStorage;
use theta_persistence_sled::SledStorage;

const CHILD_ENV: &str = "THETA_REOPEN_CHILD";
const DIR_ENV: &str = "THETA_REOPEN_DIR";
const ACTOR_TYPE: uuid::Uuid = uuid::uuid!("7e0be7e0-0000-4000-8000-0000000007e0");
/// Snapshots written per backend.
const N: u64 = 40;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Fs,
    Sled,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Fs => "fs",
            Backend::Sled => "sled",
        }
    }

    fn parse(name: &str) -> Backend {
        match name {
            "fs" => Backend::Fs,
            "sled" => Backend::Sled,
            other => panic!("unknown backend {other:?}"),
        }
    }

    fn open(self, dir: &Path) -> SharedStorage {
        match self {
            Backend::Fs => SharedStorage::new(FsStorage::open(dir).expect("opening fs store")),
            // PowerLoss (the default): every acknowledged write is flushed and
            // fsync'd; the open checks the tree against what was acknowledged.
            Backend::Sled => SharedStorage::new(
                SledStorage::open(dir).unwrap_or_else(|e| panic!("opening sled store: {e}")),
            ),
        }
    }
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

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(out, "{b:02x}").unwrap();
    }
    out
}

/// Runs the child on `dir` to completion.
async fn run_child(backend: Backend, dir: &Path) -> std::process::Output {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--exact", "child_dump", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, backend.name())
        .env(DIR_ENV, dir);
    within(
        "the child process",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .expect("join")
    .expect("running the child")
}

/// Runs the child on `dir` and parses its dump: `id -> bytes`.
async fn dump_in_child(backend: Backend, dir: &Path) -> BTreeMap<ActorId, Vec<u8>> {
    let output = run_child(backend, dir).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut dump = BTreeMap::new();
    let mut done = false;
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("SNAP") => {
                let id: ActorId = words.next().unwrap().parse().unwrap();
                let hex = words.next().unwrap_or("");
                let bytes = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                assert!(dump.insert(id, bytes).is_none(), "{id} listed twice");
            }
            Some("DONE") => done = true,
            _ => {}
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
    let storage = backend.open(&dir);
    let expected = populate(&storage).await;
    assert_eq!(expected.len(), (N - N.div_ceil(7)) as usize);
    // The last handle: fs joins its committer and unlocks, sled flushes and
    // releases its lock (the child's open waits for that).
    drop(storage);

    let dumped = dump_in_child(backend, &dir).await;
    let diffs = differences(&expected, &dumped);
    assert!(
        diffs.is_empty(),
        "{}:\n{}",
        backend.name(),
        diffs.join("\n")
    );
    eprintln!(
        "{}: {} snapshots ({} bytes) identical in a new process",
        backend.name(),
        dumped.len(),
        dumped.values().map(Vec::len).sum::<usize>()
    );
}

#[tokio::test]
async fn fs_snapshots_are_identical_in_a_new_process() {
    write_then_reopen_elsewhere(Backend::Fs).await;
}

#[tokio::test]
async fn sled_snapshots_are_identical_in_a_new_process() {
    write_then_reopen_elsewhere(Backend::Sled).await;
}

/// The comparison can fail: damage one stored file behind the store's back and
/// the child's dump must differ in exactly that snapshot.
#[tokio::test]
async fn a_changed_byte_on_disk_is_reported() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let storage = Backend::Fs.open(&dir);
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

    let dumped = dump_in_child(Backend::Fs, &dir).await;
    let diffs = differences(&expected, &dumped);
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert!(diffs[0].starts_with(&victim.to_string()), "{diffs:?}");
}

/// sled drops every entry after a damaged byte of its log: a new process must
/// refuse the store rather than dump what is left.
#[tokio::test]
async fn a_truncated_sled_log_is_refused_in_a_new_process() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("store");
    let storage = Backend::Sled.open(&dir);
    let expected = populate(&storage).await;
    drop(storage);
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("db"))
        .expect("sled's log");
    let len = log.metadata().unwrap().len();
    log.set_len(len / 2).unwrap();
    drop(log);

    let output = run_child(Backend::Sled, &dir).await;
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

/// The child: only acts when `THETA_REOPEN_CHILD` is set. Opens the directory,
/// lists it, and prints every snapshot as hex; also checks each one opens as an
/// envelope of the test's actor type, since a verified checksum is what a
/// restore would require.
#[tokio::test]
async fn child_dump() {
    let Ok(backend) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR_ENV).expect("child needs THETA_REOPEN_DIR"));
    let storage = Backend::parse(&backend).open(&dir);
    let mut listed = within("list", storage.try_list()).await.expect("list");
    listed.sort();
    // libtest has printed `test child_dump ... ` without a newline.
    println!();
    for id in listed {
        let bytes = within("read", storage.try_read(id))
            .await
            .unwrap_or_else(|e| panic!("{id} listed but unreadable: {e:#}"));
        println!("SNAP {id} {}", hex(&bytes));
        if let Ok((header, _)) = envelope::open(&bytes, envelope::DEFAULT_MAX_PAYLOAD) {
            assert_eq!(header.actor_type, ACTOR_TYPE, "{id}");
        }
    }
    // Deleted ids read as absent, not as empty bytes.
    for i in (0..N).step_by(7) {
        match within("read", storage.try_read(id(i))).await {
            Err(e) if e.is::<SnapshotNotFound>() => {}
            other => panic!("deleted {} reads as {other:?}", id(i)),
        }
    }
    println!("DONE");
}
