use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);
struct Get;

// The pattern is checked in two places; each mistake is reported once.
#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Get| {
            self.value += n;
        };
        async |Sub(n): Add| {
            self.value -= n;
        };
    };
}

fn main() {}
