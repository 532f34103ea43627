use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);

#[actor]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        };
    };
}

fn main() {}
