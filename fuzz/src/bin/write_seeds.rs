//! Writes the seed corpora kept in git, `corpus/<target>/seed-*`:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin write_seeds` (from the
//! repository root). Run it again when the envelope or the journal format
//! changes; `cargo xtask fuzz` only reads the seeds.

use std::path::Path;

use theta::ActorId;
use theta::persistence::{Codec, Compression, encode_payload_as, encode_snapshot};
use theta_fuzz::journal::{Input, PROCESS_KILL, RAW, SYNCED};
use theta_fuzz::snapshots::{Packed, Target};

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

/// `payload` compressed with `compression`, after its decoded length (u16 LE):
/// the input the envelope target seals as a compressed envelope.
fn compressed_input(compression: Compression, payload: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(payload.len())
        .expect("a small payload")
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(&compression.compress(payload));
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let id = ActorId::from_u128(1);
    let value = Target::typical();
    // Envelopes of each codec and compression.
    let e = "envelope_decode";
    write(e, "bincode", &encode_snapshot::<Target>(id, 3, &value)?)?;
    write(
        e,
        "msgpack",
        &encode_snapshot(id, 3, &Packed::<0>(value.clone()))?,
    )?;
    write(
        e,
        "msgpack-lz4",
        &encode_snapshot(id, 3, &Packed::<1>(value.clone()))?,
    )?;
    write(
        e,
        "msgpack-zstd",
        &encode_snapshot(id, 3, &Packed::<2>(value.clone()))?,
    )?;
    // Bare payloads (which the target also seals itself).
    let bincode = encode_payload_as(Codec::Bincode, &value)?;
    let msgpack = encode_payload_as(Codec::MessagePack, &value)?;
    write(e, "payload-bincode", &bincode)?;
    write(e, "payload-msgpack", &msgpack)?;
    write(
        e,
        "payload-lz4",
        &compressed_input(Compression::Lz4, &msgpack),
    )?;
    write(
        e,
        "payload-zstd",
        &compressed_input(Compression::Zstd, &msgpack),
    )?;

    // Journals: valid ones of one and of several segments, in both modes, with
    // snapshot files under them, a torn tail, a damaged sealed segment, raw.
    let j = "journal_replay";
    let envelope = encode_snapshot::<Target>(id, 3, &value)?;
    let one = Input::new(SYNCED)
        .put(1, &envelope)
        .put(2, b"not an envelope")
        .batch()
        .delete(2)
        .put(3, b"")
        .batch();
    write(j, "one-segment", &one.into_bytes())?;
    let chained = |flags| {
        Input::new(flags)
            .file(4, &envelope)
            .file(5, b"a file that is not an envelope")
            .put(1, &envelope)
            .batch()
            .put(4, b"newer than the file")
            .segment()
            .delete(5)
            .put(1, b"second")
            .batch()
            .segment()
            .put(6, &envelope)
            .batch()
    };
    write(j, "three-segments-synced", &chained(SYNCED).into_bytes())?;
    write(
        j,
        "three-segments-buffered",
        &chained(PROCESS_KILL).into_bytes(),
    )?;
    write(
        j,
        "torn-tail",
        &Input::new(0)
            .put(1, &envelope)
            .batch()
            .put(2, &envelope)
            .batch()
            .truncate(200)
            .into_bytes(),
    )?;
    write(
        j,
        "damaged-sealed",
        &Input::new(SYNCED)
            .put(1, b"one")
            .batch()
            .segment()
            .put(2, b"two")
            .batch()
            .overwrite(70, 0xff)
            .into_bytes(),
    )?;
    write(
        j,
        "damaged-synced-newest",
        &Input::new(SYNCED)
            .put(1, b"one")
            .batch()
            .put(2, b"two")
            .batch()
            .put(3, b"three")
            .batch()
            .overwrite(80, 0)
            .into_bytes(),
    )?;
    let sealed = || {
        Input::new(SYNCED)
            .put(1, b"one")
            .batch()
            .put(2, b"two")
            .batch()
            .segment()
            .put(3, b"three")
            .batch()
    };
    write(j, "cut-sealed", &sealed().cut(0, 100).into_bytes())?;
    write(
        j,
        "grown-sealed",
        &sealed().append(0, b"grown").into_bytes(),
    )?;
    // The newest segment's header cut short (a creation cut short) and the
    // segment before cut at a batch boundary: what the store cannot tell.
    write(
        j,
        "aborted-newest-after-cut",
        &sealed().truncate(3).cut(0, 100).into_bytes(),
    )?;
    write(
        j,
        "raw",
        &Input::new(RAW)
            .raw(&[3, 0, 0, 0, 60, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 2])
            .into_bytes(),
    )?;
    Ok(())
}
