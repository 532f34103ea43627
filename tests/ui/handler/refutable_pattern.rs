use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

enum Op {
    Add(i64),
    Reset,
}

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {
    const _: () = {
        async |Op::Add(n): Op| {
            self.value += n;
        };
    };
}

fn main() {
    let _ = Op::Reset;
}
