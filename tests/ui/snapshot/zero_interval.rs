use serde::{Deserialize, Serialize};
use theta::prelude::*;

#[derive(Clone, Serialize, Deserialize, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);

#[actor("12345678-1234-5678-9abc-123456789abc", snapshot, snapshot_every = 0, snapshot_interval_ms = 1.5)]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        };
    };
}

fn main() {}
