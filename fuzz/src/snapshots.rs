//! The snapshot types of the envelope target: one shape, saved with bincode
//! ([`Target`]) and with MessagePack, uncompressed, LZ4- or zstd-compressed
//! ([`Packed`]), so that every decoder behind the checksum is reached.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use theta::persistence::{Codec, Compression, PersistentActor};
use theta::prelude::*;

/// A snapshot with the shapes real ones have: strings, integers of several
/// widths, vectors, maps, options, enums, a float. Not recursive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ActorArgs)]
pub struct Target {
    /// A string.
    pub name: String,
    /// A vector of integers.
    pub values: Vec<i64>,
    /// Integers of several widths.
    pub small: (u8, u16, u32, i128),
    /// A map of byte strings.
    pub map: BTreeMap<String, Vec<u8>>,
    /// An option.
    pub note: Option<String>,
    /// An enum with unit, tuple and struct variants.
    pub kind: Kind,
    /// A float (NaN never equals itself: compare with [`Target::same`]).
    pub ratio: f64,
}

impl Target {
    /// Equality that takes two NaN ratios as equal.
    pub fn same(&self, other: &Self) -> bool {
        let ratio = self.ratio == other.ratio || (self.ratio.is_nan() && other.ratio.is_nan());
        ratio
            && Self {
                ratio: 0.0,
                ..self.clone()
            } == Self {
                ratio: 0.0,
                ..other.clone()
            }
    }

    /// A typical value, for the seeds.
    pub fn typical() -> Self {
        Self {
            name: "ledger of the north branch".into(),
            values: vec![-1, 0, 1, i64::MAX, i64::MIN, 420],
            small: (7, 300, 70_000, -5),
            map: [
                ("alpha".to_owned(), b"first entry".to_vec()),
                ("beta".to_owned(), vec![0; 40]),
            ]
            .into_iter()
            .collect(),
            note: Some("balanced; balanced again; balanced once more".repeat(3)),
            kind: Kind::C {
                names: vec!["ann".into(), "bo".into()],
            },
            ratio: 0.25,
        }
    }
}

/// The enum inside [`Target`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    /// A unit variant.
    A,
    /// A tuple variant.
    B(u64),
    /// A struct variant.
    C {
        /// Names.
        names: Vec<String>,
    },
}

#[actor("f022f022-0000-4000-8000-00000000f022", snapshot)]
impl Actor for Target {}

/// [`Target`] saved as MessagePack and compressed with `Z` (0 none, 1 LZ4, 2
/// zstd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Packed<const Z: u8>(pub Target);

impl<const Z: u8> theta::Actor for Packed<Z> {
    type Msg = ();
    const TYPE_ID: uuid::Uuid = uuid::uuid!("f022f022-0000-4000-8000-00000000f023");
    async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
}

impl<const Z: u8> From<&Packed<Z>> for Packed<Z> {
    fn from(p: &Packed<Z>) -> Self {
        p.clone()
    }
}

impl<const Z: u8> ActorArgs for Packed<Z> {
    type Actor = Packed<Z>;
    async fn initialize(_: Context<Packed<Z>>, args: &Self) -> Packed<Z> {
        args.clone()
    }
}

impl<const Z: u8> PersistentActor for Packed<Z> {
    type Snapshot = Packed<Z>;
    type RuntimeArgs = ();
    type ActorArgs = Packed<Z>;
    const CODEC: Codec = Codec::MessagePack;
    const COMPRESSION: Compression =
        [Compression::None, Compression::Lz4, Compression::Zstd][Z as usize];
    fn persistent_args(snapshot: Packed<Z>, _: ()) -> Packed<Z> {
        snapshot
    }
}
