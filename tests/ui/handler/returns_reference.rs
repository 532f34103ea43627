use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
    name: String,
}

struct Get;
struct Name;

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {
    const _: () = {
        async |_: Get| -> &i64 { &self.value };
        async |_: Name| -> Option<&str> { Some(&self.name) };
    };
}

fn main() {}
