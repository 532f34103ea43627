//! Golden snapshots: envelope bytes of format version 1, generated once by
//! `regenerate_golden_fixtures` and committed under `tests/fixtures/envelope_v1/`,
//! must decode forever to exactly the values below. If the envelope layout, the
//! codec or its configuration ever changes, these tests fail; then either keep
//! reading version 1 (and add a new fixture set for the new version) or make the
//! break deliberate.
//!
//! Regenerate (only when adding a fixture, never to "fix" a failure):
//! `cargo test -p theta-tests --test golden -- --ignored regenerate_golden_fixtures`

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use theta::ActorId;
use theta::persistence::{
    PersistentActor, decode_payload, decode_snapshot, encode_payload, encode_snapshot, envelope,
};
use theta::prelude::*;

const LEDGER_TYPE: &str = "601de000-0000-4000-8000-00000000601d";

/// The snapshot, schema version 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Ledger {
    owner: String,
    entries: Vec<i64>,
    tags: BTreeMap<String, u32>,
    note: Option<String>,
    kind: Kind,
    ratio: f64,
    blob: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Personal,
    Shared { members: Vec<String> },
}

/// Schema version 1 of the ledger: no tags, note, kind, ratio or blob; 32-bit
/// entries.
#[derive(Debug, Serialize, Deserialize)]
struct LedgerV1 {
    owner: String,
    entries: Vec<i32>,
}

#[actor("601de000-0000-4000-8000-00000000601d")]
impl Actor for Ledger {}

impl PersistentActor for Ledger {
    type Snapshot = Ledger;
    type RuntimeArgs = ();
    type ActorArgs = Ledger;
    const SCHEMA_VERSION: u32 = 2;

    fn persistent_args(snapshot: Ledger, _: ()) -> Ledger {
        snapshot
    }

    fn migrate(from_version: u32, payload: &[u8]) -> Result<Ledger, anyhow::Error> {
        match from_version {
            1 => {
                let old: LedgerV1 = decode_payload(payload)?;
                Ok(Ledger {
                    owner: old.owner,
                    entries: old.entries.into_iter().map(i64::from).collect(),
                    tags: BTreeMap::new(),
                    note: Some("migrated from v1".into()),
                    kind: Kind::Personal,
                    ratio: 1.0,
                    blob: Vec::new(),
                })
            }
            v => anyhow::bail!("no ledger migration from schema {v}"),
        }
    }
}

fn empty() -> Ledger {
    Ledger {
        owner: String::new(),
        entries: Vec::new(),
        tags: BTreeMap::new(),
        note: None,
        kind: Kind::Personal,
        ratio: 0.0,
        blob: Vec::new(),
    }
}

fn typical() -> Ledger {
    Ledger {
        owner: "Ada Lovelace — ✓".into(),
        entries: vec![0, 1, -1, 127, 128, -129, 65_535, i64::MAX, i64::MIN],
        tags: BTreeMap::from([
            ("alpha".to_string(), 1),
            ("beta".to_string(), 250),
            ("gamma".to_string(), u32::MAX),
        ]),
        note: Some("multi\nline".into()),
        kind: Kind::Shared {
            members: vec!["ada".into(), "charles".into()],
        },
        ratio: -2.5e-3,
        blob: (0..=255).collect(),
    }
}

fn v1() -> LedgerV1 {
    LedgerV1 {
        owner: "babbage".into(),
        entries: vec![7, -7, i32::MAX],
    }
}

fn v1_migrated() -> Ledger {
    Ledger {
        owner: "babbage".into(),
        entries: vec![7, -7, i64::from(i32::MAX)],
        tags: BTreeMap::new(),
        note: Some("migrated from v1".into()),
        kind: Kind::Personal,
        ratio: 1.0,
        blob: Vec::new(),
    }
}

/// One committed fixture: its file, what its header says, what it decodes to.
struct Fixture {
    file: &'static str,
    schema: u32,
    sequence: u64,
    /// The payload as the writer encoded it (the old layout for schema 1).
    payload: fn() -> Vec<u8>,
    /// What `decode_snapshot::<Ledger>` returns.
    decoded: fn() -> Ledger,
}

const FIXTURES: [Fixture; 3] = [
    Fixture {
        file: "ledger_empty_s2.snap",
        schema: 2,
        sequence: 1,
        payload: || encode_payload(&empty()).unwrap(),
        decoded: empty,
    },
    Fixture {
        file: "ledger_typical_s2.snap",
        schema: 2,
        sequence: 42,
        payload: || encode_payload(&typical()).unwrap(),
        decoded: typical,
    },
    Fixture {
        file: "ledger_v1_s1.snap",
        schema: 1,
        sequence: 7,
        payload: || encode_payload(&v1()).unwrap(),
        decoded: v1_migrated,
    },
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/envelope_v1")
}

fn read(file: &str) -> Vec<u8> {
    let path = dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("golden fixture {}: {e}", path.display()))
}

fn le<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().unwrap()
}

/// Run once with `--ignored` to write the fixtures; the committed files are the
/// reference from then on.
#[test]
#[ignore = "writes the committed golden fixtures; run only to add one"]
fn regenerate_golden_fixtures() {
    std::fs::create_dir_all(dir()).unwrap();
    let actor_type = uuid::Uuid::parse_str(LEDGER_TYPE).unwrap();
    for f in &FIXTURES {
        let bytes = envelope::seal(actor_type, f.schema, f.sequence, &(f.payload)());
        std::fs::write(dir().join(f.file), bytes).unwrap();
    }
}

/// The documented layout, read byte by byte at its offsets, independently of
/// `Header::peek`.
#[test]
fn the_header_layout_is_version_1() {
    for f in &FIXTURES {
        let bytes = read(f.file);
        let payload = (f.payload)();
        assert_eq!(bytes.len(), 44 + payload.len() + 4, "{}", f.file);
        assert_eq!(&bytes[0..4], b"THSN", "{}: magic", f.file);
        assert_eq!(u16::from_le_bytes(le(&bytes, 4)), 1, "{}: version", f.file);
        assert_eq!(bytes[6], 1, "{}: codec id", f.file);
        assert_eq!(bytes[7], 0, "{}: reserved", f.file);
        assert_eq!(
            uuid::Uuid::from_bytes(le(&bytes, 8)).to_string(),
            LEDGER_TYPE,
            "{}: actor type",
            f.file
        );
        assert_eq!(u32::from_le_bytes(le(&bytes, 24)), f.schema, "{}", f.file);
        assert_eq!(u64::from_le_bytes(le(&bytes, 28)), f.sequence, "{}", f.file);
        assert_eq!(
            u64::from_le_bytes(le(&bytes, 36)),
            payload.len() as u64,
            "{}: payload length",
            f.file
        );
    }
}

#[test]
fn every_fixture_opens_with_its_header_and_exact_payload() {
    for f in &FIXTURES {
        let bytes = read(f.file);
        let (header, payload) = envelope::open(&bytes, envelope::DEFAULT_MAX_PAYLOAD)
            .unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(header.envelope_version, 1, "{}", f.file);
        assert_eq!(header.codec, envelope::CODEC_BINCODE2, "{}", f.file);
        assert_eq!(header.actor_type, <Ledger as Actor>::TYPE_ID, "{}", f.file);
        assert_eq!(header.schema_version, f.schema, "{}", f.file);
        assert_eq!(header.sequence, f.sequence, "{}", f.file);
        // Today's encoder still produces the committed payload bytes.
        assert_eq!(payload, (f.payload)().as_slice(), "{}: payload", f.file);
    }
}

#[test]
fn every_fixture_decodes_to_its_exact_value() {
    let id = ActorId::from_u128(0x601d);
    for f in &FIXTURES {
        let (snapshot, sequence) = decode_snapshot::<Ledger>(id, &read(f.file))
            .unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(snapshot, (f.decoded)(), "{}", f.file);
        assert_eq!(sequence, f.sequence, "{}", f.file);
    }
}

/// The writer side: saving the same state today produces the committed payload
/// bytes, framed in a version-2 envelope bound to the actor's id.
#[test]
fn todays_encoder_writes_the_committed_payload_in_a_version_2_envelope() {
    let id = ActorId::from_u128(0x601d);
    for f in FIXTURES
        .iter()
        .filter(|f| f.schema == Ledger::SCHEMA_VERSION)
    {
        let written = encode_snapshot::<Ledger>(id, f.sequence, &(f.decoded)()).unwrap();
        let (header, payload) = envelope::open(&written, envelope::DEFAULT_MAX_PAYLOAD).unwrap();
        let fixture = read(f.file);
        let (_, committed) = envelope::open(&fixture, envelope::DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(header.envelope_version, 2, "{}", f.file);
        assert_eq!(header.actor_id, Some(id), "{}", f.file);
        assert_eq!(header.sequence, f.sequence, "{}", f.file);
        assert!(payload == committed, "{}: encoder output changed", f.file);
    }
}

/// Every committed `.snap` has a test, and every fixture above is committed.
#[test]
fn the_fixture_set_is_complete() {
    let mut present: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".snap"))
        .collect();
    present.sort();
    let mut known: Vec<String> = FIXTURES.iter().map(|f| f.file.to_string()).collect();
    known.sort();
    assert_eq!(present, known);
}

/// The two small fixtures, pinned here too, so regenerating the files cannot
/// silently move the reference.
#[test]
fn the_small_fixtures_are_the_pinned_bytes() {
    const PINNED: [(&str, &str); 2] = [
        (
            "ledger_empty_s2.snap",
            "5448534e01000100601de00000004000800000000000601d02000000010000000000\
             00000e000000000000000000000000000000000000000000e7418d51",
        ),
        (
            "ledger_v1_s1.snap",
            "5448534e01000100601de00000004000800000000000601d01000000070000000000\
             000010000000000000000762616262616765030e0dfcfeffffff60c8fca3",
        ),
    ];
    for (file, hex) in PINNED {
        let want: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert!(read(file) == want, "{file} differs from its pinned bytes");
    }
}
