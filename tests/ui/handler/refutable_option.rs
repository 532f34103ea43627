use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {
    const _: () = {
        async |Some(x): Option<i64>| {
            self.value = x;
        };
    };
}

fn main() {}
