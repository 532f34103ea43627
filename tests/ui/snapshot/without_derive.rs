use serde::{Deserialize, Serialize};
use theta::prelude::*;

// Serializable, but neither `#[derive(ActorArgs)]` nor the impls it writes.
#[derive(Clone, Serialize, Deserialize)]
struct Counter {
    value: i64,
}

struct Add(i64);

#[actor("12345678-1234-5678-9abc-123456789abc", snapshot)]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        };
    };
}

fn main() {}
