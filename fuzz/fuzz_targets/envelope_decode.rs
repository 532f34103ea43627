//! Arbitrary bytes into the snapshot read path, through the public API:
//! `envelope::open` with the default size limit, both codecs' payload decoders,
//! both decompressors, and the whole restore decode (`decode_snapshot`) of a
//! bincode type and of MessagePack types stored uncompressed, LZ4- and
//! zstd-compressed. Each runs on the raw input and on the input sealed as a
//! valid envelope of that type (so the decoders behind the checksum are
//! reached; the first two input bytes are then the declared decoded length).
//! Errors are fine; a panic, an abort or an allocation over the cap is a
//! finding, and so is a decoded value that does not survive a re-encoding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use theta::ActorId;
use theta::persistence::{
    Codec, Compression, PersistentActor, decode_payload, decode_payload_as, decode_snapshot,
    encode_payload, envelope,
};
use theta_fuzz::snapshots::{Packed, Target};

// At most 64 MiB per input, in one allocation or in all (`-malloc_limit_mb`
// works through it).
theta_fuzz::install!();

const ID: ActorId = ActorId::from_u128(1);

/// `payload` sealed as a valid envelope of `A`, declaring `decoded_len`.
fn seal<A: PersistentActor>(decoded_len: u64, payload: &[u8]) -> Vec<u8> {
    envelope::Seal::new(A::TYPE_ID)
        .actor_id(ID)
        .sequence(1)
        .codec(A::CODEC.id())
        .compressed(A::COMPRESSION.id(), decoded_len)
        .seal(payload)
}

/// Decodes `bytes` as a snapshot of `A`; what decodes must re-encode to a
/// payload that decodes to the same value.
fn restore<A, F>(bytes: &[u8], target: F)
where
    A: PersistentActor,
    F: Fn(&A::Snapshot) -> &Target,
{
    if let Ok((value, sequence)) = decode_snapshot::<A>(ID, bytes) {
        assert_eq!(Some(sequence), envelope::sequence_of(bytes));
        let value = target(&value);
        let again = encode_payload(value).expect("re-encode");
        let back: Target = decode_payload(&again).expect("decode of a re-encoding");
        assert!(back.same(value), "{back:?} != {value:?}");
    }
}

/// Every restore decoder on `bytes`.
fn restore_all(bytes: &[u8]) {
    restore::<Target, _>(bytes, |t| t);
    restore::<Packed<0>, _>(bytes, |p| &p.0);
    restore::<Packed<1>, _>(bytes, |p| &p.0);
    restore::<Packed<2>, _>(bytes, |p| &p.0);
}

fuzz_target!(|data: &[u8]| {
    theta_fuzz::alloc_cap::begin_input();
    if let Ok((header, payload)) = envelope::open(data, envelope::DEFAULT_MAX_PAYLOAD) {
        // What `open` accepted, `peek` parses the same way.
        assert_eq!(envelope::Header::peek(data), Ok(header));
        assert_eq!(payload.len() as u64, header.payload_len);
    }
    let _ = decode_payload::<Target>(data);
    let _ = decode_payload_as::<Target>(Codec::MessagePack, data);
    let (decoded_len, rest) = match data.split_first_chunk::<2>() {
        Some((len, rest)) => (u64::from(u16::from_le_bytes(*len)), rest),
        None => (0, data),
    };
    for compression in [Compression::Lz4, Compression::Zstd] {
        if let Ok(out) = compression.decompress(rest, decoded_len as usize) {
            assert_eq!(out.len() as u64, decoded_len);
        }
    }
    restore_all(data);
    restore::<Target, _>(&seal::<Target>(data.len() as u64, data), |t| t);
    restore::<Packed<0>, _>(&seal::<Packed<0>>(data.len() as u64, data), |p| &p.0);
    restore::<Packed<1>, _>(&seal::<Packed<1>>(decoded_len, rest), |p| &p.0);
    restore::<Packed<2>, _>(&seal::<Packed<2>>(decoded_len, rest), |p| &p.0);
});
