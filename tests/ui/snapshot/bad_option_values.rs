use serde::{Deserialize, Serialize};
use theta::prelude::*;

#[derive(Clone, Serialize, Deserialize, ActorArgs)]
struct Counter {
    value: i64,
}

// Every bad value is reported in one build.
#[actor(
    "12345678-1234-5678-9abc-123456789abc",
    snapshot,
    codec = "json",
    compression = gzip,
    schema_version = -1,
    runtime_args
)]
impl Actor for Counter {}

fn main() {}
