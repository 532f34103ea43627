use theta::prelude::*;

#[derive(Clone)]
struct Counter {
    value: i64,
}

struct Add(i64);

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Default for Counter {
    fn default() -> Self {
        Counter { value: 0 }
    }
}

fn main() {
    let _ = Counter::default();
    let _ = Add(1).0;
}
