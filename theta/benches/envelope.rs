//! Snapshot encode + decode through the envelope (the real save/restore path)
//! next to raw bincode on the same value, at 64 B, 4 KiB and 1 MiB.
//!
//! Run with `cargo bench -p theta --bench envelope`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use theta::persistence::{PersistentActor, decode_snapshot, encode_snapshot};
use theta::prelude::*;

/// A realistic snapshot: a few scalars, a name, and a vector of records.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
        while bincode::serde::encode_to_vec(&account, bincode::config::standard())
            .map(|v| v.len())
            .unwrap_or(0)
            < bytes
        {
            let step = ((bytes / 16).max(1)) as u64;
            for _ in 0..step {
                account.history.push((i * 1_000_003, (i as i64) * -37));
                i += 1;
            }
        }
        account
    }
}

impl From<&Account> for Account {
    fn from(a: &Account) -> Self {
        a.clone()
    }
}

impl theta::Actor for Account {
    type Msg = ();
    const TYPE_ID: uuid::Uuid = uuid::uuid!("e1b2c3d4-0000-4000-8000-00000000be4c");
    async fn process_msg(&mut self, _: &Context<Self>, _: ()) {}
}

impl ActorArgs for Account {
    type Actor = Account;
    async fn initialize(_: Context<Account>, args: &Self) -> Account {
        args.clone()
    }
}

impl PersistentActor for Account {
    type Snapshot = Account;
    type RuntimeArgs = ();
    type ActorArgs = Account;
    fn persistent_args(s: Account, _: ()) -> Account {
        s
    }
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_round_trip");
    group.measurement_time(Duration::from_secs(4));
    let id = ActorId::new_v4();
    for (label, size) in [("64B", 64usize), ("4KiB", 4 << 10), ("1MiB", 1 << 20)] {
        let account = Account::of_size(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("theta_envelope", label),
            &account,
            |b, a| {
                b.iter(|| {
                    let bytes = encode_snapshot::<Account>(id, 1, a).expect("encode");
                    let (back, _) = decode_snapshot::<Account>(id, &bytes).expect("decode");
                    back
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("raw_bincode", label), &account, |b, a| {
            b.iter(|| {
                let config = bincode::config::standard();
                let bytes =
                    bincode::serde::encode_to_vec(Account::from(a), config).expect("encode");
                let (back, _): (Account, usize) =
                    bincode::serde::decode_from_slice(&bytes, config).expect("decode");
                back
            })
        });
    }
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
