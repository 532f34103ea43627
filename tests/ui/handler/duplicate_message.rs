use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        };
    };

    const _: () = {
        async |Add(n): Add| -> i64 {
            self.value += n;
            self.value
        };
    };
}

fn main() {}
