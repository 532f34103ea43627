//! Every `snapshot` option expands without relying on the user's imports or
//! names: types named like what the expansion uses (`Restore`, `RestoreArgs`,
//! `Result`, ...) are in scope, constants named like its locals too, and no lint
//! fires.

#![deny(warnings, missing_docs, missing_debug_implementations, unreachable_pub)]
#![allow(non_upper_case_globals)]

use theta::actor;

/// Named like the runtime-args wrapper.
#[derive(Debug)]
pub struct RestoreArgs;
/// Named like the restore trait.
#[derive(Debug)]
pub struct Restore;
/// Named like the result and error types the expansion uses.
#[derive(Debug)]
pub struct Result;
/// Named like the migration error.
#[derive(Debug)]
pub struct AnyhowError;
/// Named like the codec enum.
#[derive(Debug)]
pub struct Codec;
/// Named like the compression enum.
#[derive(Debug)]
pub struct Compression;

const migrate: u32 = 1;
const snapshot: u32 = 2;
const runtime_args: u32 = 3;
const from_version: u32 = 4;
const payload: u32 = 5;

/// The actor; it keeps a handle that is not stored.
#[derive(Debug)]
pub struct Ledger {
    entries: Vec<i64>,
    config: Config,
}

/// Runtime args.
#[derive(Debug, Clone, Default)]
pub struct Config {
    limit: usize,
}

/// What is stored.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LedgerSnapshot {
    entries: Vec<i64>,
}

impl From<&Ledger> for LedgerSnapshot {
    fn from(ledger: &Ledger) -> Self {
        Self {
            entries: ledger.entries.clone(),
        }
    }
}

/// A message.
#[derive(Debug)]
pub struct Record(pub i64);

#[actor(
    "0f0e0d0c-0b0a-4908-8706-050403020110",
    snapshot = LedgerSnapshot,
    runtime_args = Config,
    schema_version = 2,
    migrate = migrations::ledger,
    codec = "msgpack",
    compression = "zstd",
    snapshot_every = 10,
)]
impl Actor for Ledger {
    const _: () = {
        async |Record(amount): Record| -> usize {
            if self.entries.len() < self.config.limit {
                self.entries.push(amount);
            }
            self.entries.len()
        };
    };
}

impl theta::persistence::Restore for Ledger {
    async fn restore(
        _ctx: theta::Context<Self>,
        stored: &LedgerSnapshot,
        config: &Config,
    ) -> Self {
        Ledger {
            entries: stored.entries.clone(),
            config: config.clone(),
        }
    }
}

mod migrations {
    /// Versions 0 and 1 stored the same list.
    pub(super) fn ledger(
        _version: u32,
        bytes: &[u8],
    ) -> ::core::result::Result<super::LedgerSnapshot, anyhow::Error> {
        Ok(theta::persistence::decode_payload(bytes)?)
    }
}

/// `snapshot = Self` is `snapshot`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, theta::ActorArgs)]
pub struct Itself {
    count: u32,
}

#[actor("0f0e0d0c-0b0a-4908-8706-050403020111", snapshot = Self, schema_version = 1)]
impl Actor for Itself {}

fn main() {
    let _ = Itself { count: 0 }.count;
    let _ = (RestoreArgs, Restore, Result, AnyhowError, Codec, Compression);
    let _ = migrate + snapshot + runtime_args + from_version + payload;
}
