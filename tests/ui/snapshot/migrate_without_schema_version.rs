use serde::{Deserialize, Serialize};
use theta::prelude::*;

#[derive(Clone, Serialize, Deserialize, ActorArgs)]
struct Wallet {
    cents: i64,
}

fn migrate_wallet(_from: u32, _payload: &[u8]) -> Result<Wallet, anyhow::Error> {
    anyhow::bail!("no older versions")
}

#[actor("12345678-1234-5678-9abc-123456789abc", snapshot, migrate = migrate_wallet)]
impl Actor for Wallet {}

#[derive(Clone, Serialize, Deserialize, ActorArgs)]
struct Purse {
    cents: i64,
}

#[actor(
    "12345678-1234-5678-9abc-123456789abd",
    snapshot,
    schema_version = 0,
    migrate = migrate_purse
)]
impl Actor for Purse {}

fn migrate_purse(_from: u32, _payload: &[u8]) -> Result<Purse, anyhow::Error> {
    anyhow::bail!("no older versions")
}

fn main() {}
