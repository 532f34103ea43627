use theta::prelude::*;

#[derive(ActorArgs)]
struct Counter {
    value: i64,
}

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {}

fn main() {
    let _ = Counter { value: 0 }.value;
}
