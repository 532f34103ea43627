use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {
    async fn handle(&mut self, msg: Add) {
        self.value += msg.0;
    }

    // Hooks stay as they are.
    async fn on_start(&mut self, _ctx: &Context<Self>) {
        self.value = 0;
    }
}

fn main() {}
