use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);

// Every mistake is reported in one build.
#[actor("not-a-uuid", snapshot_every = 10, colour = blue)]
impl Actor for Counter {
    const _: () = {
        |Add(n): Add| {
            self.value += n;
        };
        async |n| {};
        async |_: Add| {};
    };
}

fn main() {}
