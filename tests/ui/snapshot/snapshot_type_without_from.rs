use serde::{Deserialize, Serialize};
use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

#[derive(Clone, Serialize, Deserialize)]
struct CounterSnapshot {
    value: i64,
}

impl ActorArgs for CounterSnapshot {
    type Actor = Counter;

    async fn initialize(_ctx: Context<Counter>, args: &Self) -> Counter {
        Counter { value: args.value }
    }
}

struct Add(i64);

#[actor("12345678-1234-5678-9abc-123456789abc", snapshot = CounterSnapshot)]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        };
    };
}

fn main() {}
