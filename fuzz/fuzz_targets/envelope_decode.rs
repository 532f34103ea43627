//! Arbitrary bytes into the snapshot read path: `envelope::open`, the codec
//! (`decode_payload`) and the whole restore decode (`decode_snapshot`), both on
//! the raw input and on the input sealed as a valid envelope of the target's type
//! (so the fuzzer reaches the codec behind the checksum). Errors are fine; a panic,
//! an abort or a huge allocation is a finding.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use theta::ActorId;
use theta::persistence::{decode_payload, decode_snapshot, envelope};
use theta::prelude::*;

/// A snapshot with the shapes real ones have: strings, integers of several
/// widths, vectors, maps, options, enums. Not recursive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
struct Target {
    name: String,
    values: Vec<i64>,
    small: (u8, u16, u32, i128),
    map: BTreeMap<String, Vec<u8>>,
    note: Option<String>,
    kind: Kind,
    ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    A,
    B(u64),
    C { names: Vec<String> },
}

#[actor("f022f022-0000-4000-8000-00000000f022", snapshot)]
impl Actor for Target {}

fuzz_target!(|data: &[u8]| {
    let id = ActorId::from_u128(1);
    if let Ok((header, payload)) = envelope::open(data, envelope::DEFAULT_MAX_PAYLOAD) {
        // What `open` accepted, `peek` parses the same way.
        assert_eq!(envelope::Header::peek(data), Ok(header));
        assert_eq!(payload.len() as u64, header.payload_len);
    }
    let _ = decode_snapshot::<Target>(id, data);
    let _ = decode_payload::<Target>(data);
    let sealed = envelope::seal(<Target as Actor>::TYPE_ID, 0, 1, data);
    if let Ok((value, sequence)) = decode_snapshot::<Target>(id, &sealed) {
        assert_eq!(sequence, 1);
        // A decoded value re-encodes to a payload that decodes to itself.
        let again = theta::persistence::encode_payload(&value).expect("re-encode");
        let back: Target = decode_payload(&again).expect("decode of a re-encoding");
        assert!(back == value || value.ratio.is_nan());
    }
});
