use theta::prelude::*;

#[actor("12345678-1234-5678-9abc-123456789abc")]
struct Counter {
    value: i64,
}

fn main() {
    let _ = Counter { value: 0 }.value;
}
