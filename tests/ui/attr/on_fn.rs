use theta::prelude::*;

#[actor("12345678-1234-5678-9abc-123456789abc")]
fn handler() {}

fn main() {
    handler();
}
