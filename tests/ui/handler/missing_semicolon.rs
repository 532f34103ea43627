use theta::prelude::*;

#[derive(Clone, ActorArgs)]
struct Counter {
    value: i64,
}

struct Add(i64);
struct Get;

#[actor("12345678-1234-5678-9abc-123456789abc")]
impl Actor for Counter {
    const _: () = {
        async |Add(n): Add| {
            self.value += n;
        }
        async |_: Get| -> i64 { self.value };
    };
}

fn main() {
    // Both handlers exist: no follow-on errors here.
    let counter = RootContext::default().spawn(Counter { value: 0 });
    let _ = counter.tell(Add(1));
    let _ = counter.ask(Get);
}
