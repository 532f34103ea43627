//! The three examples of the `theta::persistence` module docs (the user's spec),
//! unchanged apart from the doc-test scaffolding. Three actor types, so three
//! modules.

mod basic {
    use theta::prelude::*;
    use serde::{Serialize, Deserialize};

    #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
    struct Counter {
    value: i64,
    name: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Increment(i64);
    struct DummyStorage;
    impl PersistentStorage for DummyStorage {
    async fn try_read(&self, _: ActorId) -> Result<Vec<u8>, anyhow::Error> { Ok(vec![]) }
    async fn try_write(&self, _: ActorId, _: Vec<u8>) -> Result<(), anyhow::Error> { Ok(()) }
    }
    static STORAGE: DummyStorage = DummyStorage;

    // The `snapshot` flag automatically implements PersistentActor
    // with Snapshot = Counter, RuntimeArgs = (), ActorArgs = Counter
    #[actor("12345678-1234-5678-9abc-123456789abc", snapshot)]
    impl Actor for Counter {
    const _: () = {
    async |Increment(amount): Increment| {
    self.value += amount;
    // Manual snapshot saving when needed
    let _ = ctx.save_snapshot(&STORAGE, self).await;
    };
    };
    }

    pub fn uses() {
        let _ = Counter { value: 0, name: String::new() }.name;
    }
}

mod custom_snapshot {
    use theta::prelude::*;
    use serde::{Serialize, Deserialize};
    use std::collections::HashMap;
    #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
    struct Counter { value: i64, cache: HashMap<String, String> }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Increment(i64);
    #[actor("aaaaaaaa-bbbb-cccc-dddd-999999999999", snapshot)]
    impl Actor for Counter {
    const _: () = { async |Increment(_): Increment| {}; };
    }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct CounterSnapshot {
    value: i64,
    // Exclude non-essential state like caches
    }

    impl From<&Counter> for CounterSnapshot {
    fn from(counter: &Counter) -> Self {
    Self { value: counter.value }
    }
    }

    impl ActorArgs for CounterSnapshot {
    type Actor = Counter;

    async fn initialize(_ctx: Context<Counter>, args: &Self) -> Counter {
    Counter {
    value: args.value,
    cache: HashMap::new(), // Rebuilt on recovery
    }
    }
    }

    pub fn uses() {
        let _ = Counter { value: 0, cache: HashMap::new() }.cache;
        let _ = CounterSnapshot { value: 0 };
    }
}

mod recovery {
    use theta::prelude::*;
    use serde::{Serialize, Deserialize};
    #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
    struct Counter { value: i64, name: String }
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Increment(i64);
    #[actor("aaaaaaaa-bbbb-cccc-dddd-aaaaaaaaaaaa", snapshot)]
    impl Actor for Counter {
    const _: () = { async |Increment(_): Increment| {}; };
    }
    struct DummyStorage;
    impl PersistentStorage for DummyStorage {
    async fn try_read(&self, _: ActorId) -> Result<Vec<u8>, anyhow::Error> { Ok(vec![]) }
    async fn try_write(&self, _: ActorId, _: Vec<u8>) -> Result<(), anyhow::Error> { Ok(()) }
    }
    pub async fn example() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = RootContext::default();
    let storage = DummyStorage;
    let actor_id = ActorId::new_v4();
    // Try to restore from snapshot, fallback to new instance
    let counter = ctx.respawn_or(
    &storage,
    actor_id,
    || (), // runtime args
    || Counter { value: 0, name: "default".to_string() }
    ).await?;
    let _ = counter;
    Ok(())
    }
}

fn main() {
    basic::uses();
    custom_snapshot::uses();
    let _ = recovery::example();
}
