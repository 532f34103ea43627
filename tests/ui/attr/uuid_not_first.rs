use serde::{Deserialize, Serialize};
use theta::prelude::*;

#[derive(Clone, Serialize, Deserialize, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);

#[actor(snapshot)]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        };
    };
}

fn main() {}
