//! Snapshot encode + decode through the envelope (the real save/restore path:
//! `encode_snapshot` + `decode_snapshot`) for each codec and compression, next to
//! the bare codec (bincode / rmp-serde named, no envelope) on the same value, in
//! the same run. Values: a record-heavy account of 64 B, 4 KiB and 1 MiB, and a
//! 64 KiB text-heavy notebook, once of application notes (`64KiB_text`) and once
//! of independently drawn words (`64KiB_words`, compression's worst case).
//!
//! Besides criterion's timings it measures the 64-byte target (each compression
//! setting against none, best of alternating batches, which a shared machine's
//! load disturbs least) and writes it with the payload sizes to
//! `<criterion dir>/envelope-sizes.json` (read by `cargo xtask bench` for the
//! report), and prints both.
//!
//! Run with `cargo bench -p theta --bench envelope` (or `cargo xtask bench
//! --suite envelope`).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    Codec, Compression, PersistentActor, decode_snapshot, encode_payload_as, encode_snapshot,
    envelope,
};
use theta::prelude::*;

/// A record-heavy snapshot: a few scalars, a name, and a vector of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Account {
    id: u64,
    owner: String,
    balance: i64,
    history: Vec<(u64, i64)>,
}

impl Account {
    /// An account whose bincode encoding is about `bytes` long.
    fn of_size(bytes: usize) -> Self {
        let mut account = Self {
            id: 7,
            owner: "ada lovelace".into(),
            balance: 1_000,
            history: Vec::new(),
        };
        let mut i = 0u64;
        while bincode_len(&account) < bytes {
            account.history.push((i * 1_000_003, (i as i64) * -37));
            i += 1;
        }
        account
    }
}

/// A text-heavy snapshot: notes of prose-like text, tags and timestamps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Notebook {
    owner: String,
    notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    id: u64,
    created: u64,
    title: String,
    body: String,
    tags: Vec<String>,
}

/// A deterministic xorshift, so that every run measures the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Roughly Zipf-distributed in `0..n`: small indices are common, as words
    /// are in prose.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0) as usize % n
    }
}

/// A vocabulary of 2 000 pronounceable pseudo-words.
fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 40] = [
        "ka", "lo", "mi", "ten", "ra", "shi", "ver", "on", "al", "be", "dor", "fa", "gu", "hel",
        "in", "jo", "ke", "lum", "mar", "ne", "os", "pri", "qua", "ro", "sa", "ti", "un", "vo",
        "wen", "xi", "ya", "zu", "the", "and", "er", "ing", "st", "ch", "tr", "ou",
    ];
    let mut rng = Rng(0x005e_ed0f_7e47);
    (0..2000)
        .map(|_| {
            let syllables = 1 + rng.next() as usize % 3;
            (0..syllables)
                .map(|_| SYLLABLES[rng.next() as usize % SYLLABLES.len()])
                .collect()
        })
        .collect()
}

/// How a note's body is made up.
#[derive(Clone, Copy)]
enum Text {
    /// Sentences of an application's notes: templates whose slots take names,
    /// amounts, dates and phrases (the repetition real notes have).
    Notes,
    /// Words drawn independently (Zipf) from 2 000 pseudo-words: no phrase
    /// ever repeats, a worst case for compression.
    Words,
}

const SUBJECTS: [&str; 12] = [
    "The customer",
    "Our team",
    "The account holder",
    "Support",
    "The supplier",
    "Finance",
    "The new tenant",
    "Ada",
    "Charles",
    "The auditor",
    "Management",
    "The courier",
];
const VERBS: [&str; 12] = [
    "called about",
    "asked again about",
    "confirmed",
    "disputed",
    "paid",
    "cancelled",
    "requested a copy of",
    "approved",
    "escalated",
    "forgot",
    "reopened",
    "signed",
];
const OBJECTS: [&str; 10] = [
    "invoice",
    "order",
    "the contract",
    "the refund",
    "the delivery",
    "ticket",
    "the quote",
    "the lease",
    "payment",
    "the report",
];
const TAILS: [&str; 10] = [
    "and will follow up on Friday",
    "after the second reminder",
    "without any further questions",
    "but the amount looks wrong",
    "so we closed the case",
    "as agreed in the last meeting",
    "and wants it sent by email",
    "before the end of the month",
    "although nobody was available",
    "and thanked us for the quick reply",
];

fn note_sentence(rng: &mut Rng) -> String {
    let pick = |rng: &mut Rng, words: &[&'static str]| words[rng.zipf(words.len())];
    format!(
        "{} {} {} {} {}.",
        pick(rng, &SUBJECTS),
        pick(rng, &VERBS),
        pick(rng, &OBJECTS),
        1000 + rng.next() % 9000,
        pick(rng, &TAILS)
    )
}

impl Notebook {
    /// A notebook whose bincode encoding is about `bytes` long.
    fn of_size(bytes: usize, text: Text) -> Self {
        let words = vocabulary();
        let tags = ["work", "home", "todo", "idea", "read", "later"];
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut notebook = Notebook {
            owner: "ada lovelace".into(),
            notes: Vec::new(),
        };
        let mut encoded = bincode_len(&notebook);
        let mut id = 0u64;
        let words_of = |rng: &mut Rng, len: usize| {
            (0..len)
                .map(|_| words[rng.zipf(words.len())].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        while encoded < bytes {
            let sentences = 1 + rng.next() % 5;
            let body = (0..sentences)
                .map(|_| match text {
                    Text::Notes => note_sentence(&mut rng),
                    Text::Words => {
                        let len = 6 + (rng.next() % 12) as usize;
                        words_of(&mut rng, len) + "."
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            let title = match text {
                Text::Notes => format!("{} {}", OBJECTS[rng.zipf(OBJECTS.len())], id),
                Text::Words => words_of(&mut rng, 3),
            };
            let note = Note {
                id,
                created: 1_700_000_000 + id * 3_607 + rng.next() % 600,
                title,
                body,
                tags: (0..rng.next() % 3)
                    .map(|_| tags[rng.next() as usize % tags.len()].to_string())
                    .collect(),
            };
            encoded += bincode_len(&note);
            notebook.notes.push(note);
            id += 1;
        }
        notebook
    }
}

fn bincode_len<T: Serialize>(value: &T) -> usize {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("encode")
        .len()
}

/// `V` persisted with codec `C` (0 bincode, 1 msgpack) and compression `Z` (0
/// none, 1 lz4, 2 zstd).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Saved<V, const C: u8, const Z: u8>(V);

impl<V: Clone, const C: u8, const Z: u8> From<&Saved<V, C, Z>> for Saved<V, C, Z> {
    fn from(s: &Saved<V, C, Z>) -> Self {
        s.clone()
    }
}

impl<V: Clone + Send + Sync + 'static, const C: u8, const Z: u8> theta::Actor for Saved<V, C, Z> {
    type Msg = ();
    const TYPE_ID: uuid::Uuid = uuid::uuid!("e1b2c3d4-0000-4000-8000-00000000be4c");
    async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
}

impl<V: Clone + Send + Sync + 'static, const C: u8, const Z: u8> ActorArgs for Saved<V, C, Z> {
    type Actor = Saved<V, C, Z>;
    async fn initialize(_: Context<Self>, args: &Self) -> Self {
        args.clone()
    }
}

impl<V, const C: u8, const Z: u8> PersistentActor for Saved<V, C, Z>
where
    V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
{
    type Snapshot = Saved<V, C, Z>;
    type RuntimeArgs = ();
    type ActorArgs = Saved<V, C, Z>;
    const CODEC: Codec = CODECS[C as usize];
    const COMPRESSION: Compression = COMPRESSIONS[Z as usize];
    fn persistent_args(s: Self, _: ()) -> Self {
        s
    }
}

const CODECS: [Codec; 2] = [Codec::Bincode, Codec::MessagePack];
const COMPRESSIONS: [Compression; 3] = [Compression::None, Compression::Lz4, Compression::Zstd];

/// The values measured: (label, value).
enum Value {
    Account(Account),
    Notebook(Notebook),
}

fn values() -> Vec<(&'static str, Value)> {
    vec![
        ("64B", Value::Account(Account::of_size(64))),
        ("4KiB", Value::Account(Account::of_size(4 << 10))),
        (
            "64KiB_text",
            Value::Notebook(Notebook::of_size(64 << 10, Text::Notes)),
        ),
        (
            "64KiB_words",
            Value::Notebook(Notebook::of_size(64 << 10, Text::Words)),
        ),
        ("1MiB", Value::Account(Account::of_size(1 << 20))),
    ]
}

/// One size measurement for the report.
#[derive(Serialize)]
struct Size {
    value: &'static str,
    codec: &'static str,
    compression: &'static str,
    /// Payload bytes as stored (after compression).
    stored: usize,
    /// Payload bytes before compression (the bare codec's output).
    encoded: usize,
}

/// Benchmarks the envelope round trip of `value` with codec `C` and compression
/// `Z`, and records its size.
fn envelope<V, const C: u8, const Z: u8>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &'static str,
    value: &V,
    sizes: &mut Vec<Size>,
) where
    V: Clone + Send + Sync + Serialize + DeserializeOwned + PartialEq + 'static,
{
    let id = ActorId::from_u128(1);
    let saved = Saved::<V, C, Z>(value.clone());
    let bytes = encode_snapshot(id, 1, &saved).expect("encode");
    let header = envelope::Header::peek(&bytes).expect("header");
    sizes.push(Size {
        value: label,
        codec: CODECS[C as usize].name(),
        compression: COMPRESSIONS[Z as usize].name(),
        stored: header.payload_len as usize,
        encoded: header.decoded_len as usize,
    });
    let (back, _) = decode_snapshot::<Saved<V, C, Z>>(id, &bytes).expect("decode");
    assert!(back.0 == *value, "round trip");
    let name = format!(
        "{}+{}",
        CODECS[C as usize].name(),
        COMPRESSIONS[Z as usize].name()
    );
    group.bench_with_input(BenchmarkId::new(name, label), &saved, |b, saved| {
        b.iter(|| {
            let bytes = encode_snapshot(id, 1, saved).expect("encode");
            decode_snapshot::<Saved<V, C, Z>>(id, &bytes).expect("decode")
        })
    });
}

/// All variants of one value: the two bare codecs and the six envelopes.
fn variants<V>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &'static str,
    value: &V,
    sizes: &mut Vec<Size>,
) where
    V: Clone + Send + Sync + Serialize + DeserializeOwned + PartialEq + 'static,
{
    group.throughput(Throughput::Bytes(bincode_len(value) as u64));
    group.bench_with_input(BenchmarkId::new("bare_bincode", label), value, |b, v| {
        b.iter(|| {
            let config = bincode::config::standard();
            let bytes = bincode::serde::encode_to_vec(v, config).expect("encode");
            let (back, _): (V, usize) =
                bincode::serde::decode_from_slice(&bytes, config).expect("decode");
            back
        })
    });
    group.bench_with_input(BenchmarkId::new("bare_msgpack", label), value, |b, v| {
        b.iter(|| {
            let bytes = rmp_serde::to_vec_named(v).expect("encode");
            rmp_serde::from_slice::<V>(&bytes).expect("decode")
        })
    });
    for codec in CODECS {
        assert_eq!(
            encode_payload_as(codec, value).expect("encode").len(),
            match codec {
                Codec::MessagePack => rmp_serde::to_vec_named(value).expect("encode").len(),
                _ => bincode_len(value),
            },
            "theta's {codec} is the bare codec"
        );
    }
    envelope::<V, 0, 0>(group, label, value, sizes);
    envelope::<V, 0, 1>(group, label, value, sizes);
    envelope::<V, 0, 2>(group, label, value, sizes);
    envelope::<V, 1, 0>(group, label, value, sizes);
    envelope::<V, 1, 1>(group, label, value, sizes);
    envelope::<V, 1, 2>(group, label, value, sizes);
}

/// One tiny-payload overhead measurement: a compression setting against none
/// on the same 64-byte snapshot.
#[derive(Serialize)]
struct Tiny {
    variant: String,
    baseline: String,
    /// Best (least disturbed) time per round trip, in nanoseconds.
    ns: f64,
    baseline_ns: f64,
}

/// The best time per call of `a` and of `b` over `rounds` alternating batches:
/// on a shared machine the minimum is the figure least disturbed by other
/// work, and alternating exposes both to the same disturbance.
fn alternating_min(mut a: impl FnMut(), mut b: impl FnMut(), rounds: usize) -> (f64, f64) {
    const BATCH: u32 = 2_000;
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            a();
        }
        best.0 = best
            .0
            .min(started.elapsed().as_nanos() as f64 / f64::from(BATCH));
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            b();
        }
        best.1 = best
            .1
            .min(started.elapsed().as_nanos() as f64 / f64::from(BATCH));
    }
    best
}

/// The round trip of `value` saved with codec `C` and compression `Z`.
fn round_trip_of<const C: u8, const Z: u8>(value: &Account) -> impl FnMut() + '_ {
    let id = ActorId::from_u128(1);
    let saved = Saved::<Account, C, Z>(value.clone());
    move || {
        let bytes = encode_snapshot(id, 1, std::hint::black_box(&saved)).expect("encode");
        std::hint::black_box(decode_snapshot::<Saved<Account, C, Z>>(id, &bytes).expect("decode"));
    }
}

/// The 64-byte target: compression settings cost a tiny snapshot (nearly)
/// nothing, measured against none in alternating batches.
fn tiny_overhead() -> Vec<Tiny> {
    let account = Account::of_size(64);
    let mut out = Vec::new();
    let mut push = |variant: &str, baseline: &str, (ns, baseline_ns): (f64, f64)| {
        out.push(Tiny {
            variant: variant.into(),
            baseline: baseline.into(),
            ns,
            baseline_ns,
        })
    };
    let rounds = 200;
    push(
        "bincode+lz4/64B",
        "bincode+none/64B",
        alternating_min(
            round_trip_of::<0, 1>(&account),
            round_trip_of::<0, 0>(&account),
            rounds,
        ),
    );
    push(
        "bincode+zstd/64B",
        "bincode+none/64B",
        alternating_min(
            round_trip_of::<0, 2>(&account),
            round_trip_of::<0, 0>(&account),
            rounds,
        ),
    );
    push(
        "msgpack+lz4/64B",
        "msgpack+none/64B",
        alternating_min(
            round_trip_of::<1, 1>(&account),
            round_trip_of::<1, 0>(&account),
            rounds,
        ),
    );
    push(
        "msgpack+zstd/64B",
        "msgpack+none/64B",
        alternating_min(
            round_trip_of::<1, 2>(&account),
            round_trip_of::<1, 0>(&account),
            rounds,
        ),
    );
    out
}

/// Where criterion writes, by its own rule: `$CRITERION_HOME`, else
/// `<target dir>/criterion` (`$CARGO_TARGET_DIR`, else the directory this bench
/// binary was built in: `<target>/<profile>/deps/`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_round_trip");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let mut sizes = Vec::new();
    for (label, value) in values() {
        match value {
            Value::Account(account) => variants(&mut group, label, &account, &mut sizes),
            Value::Notebook(notebook) => variants(&mut group, label, &notebook, &mut sizes),
        }
    }
    group.finish();

    eprintln!("\npayload sizes (stored / before compression):");
    for s in &sizes {
        eprintln!(
            "  {:>10} {:>7}+{:<4} {:>8} / {:>8} B  ({:.2}x smaller)",
            s.value,
            s.codec,
            s.compression,
            s.stored,
            s.encoded,
            s.encoded as f64 / s.stored as f64
        );
    }
    let tiny = tiny_overhead();
    eprintln!("\n64-byte snapshot, best of 200 alternating batches (target: at most 1.1x):");
    for t in &tiny {
        eprintln!(
            "  {:>17} {:>7.1} ns vs {:>17} {:>7.1} ns: {:.3}x",
            t.variant,
            t.ns,
            t.baseline,
            t.baseline_ns,
            t.ns / t.baseline_ns
        );
    }
    let dir = criterion_dir();
    let path = dir.join("envelope-sizes.json");
    let report = serde_json::json!({ "sizes": sizes, "tiny": tiny });
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("json")));
    match written {
        Ok(()) => eprintln!("sizes written to {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
