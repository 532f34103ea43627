use serde::{Deserialize, Serialize};
use theta::prelude::*;

#[derive(Clone, Serialize, Deserialize, ActorArgs)]
struct Wallet {
    cents: i64,
}

#[derive(Deserialize)]
struct WalletV0 {
    units: i64,
}

// Returns the old layout instead of the current snapshot.
fn migrate_wallet(_from: u32, payload: &[u8]) -> Result<WalletV0, anyhow::Error> {
    Ok(theta::persistence::decode_payload(payload)?)
}

#[actor("12345678-1234-5678-9abc-123456789abc", snapshot, schema_version = 1, migrate = migrate_wallet)]
impl Actor for Wallet {}

fn main() {
    let _ = |old: WalletV0| old.units;
}
