use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

fn migrate(_: u32, _: &[u8]) -> Result<Counter, anyhow::Error> {
    anyhow::bail!("never")
}

#[actor(
    "12345678-1234-5678-9abc-123456789abc",
    runtime_args = String,
    schema_version = 2,
    migrate = migrate,
    codec = "bincode",
    compression = "lz4"
)]
impl Actor for Counter {}

fn main() {
    let _ = Counter { value: 0 }.value;
}
