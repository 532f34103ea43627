//! Model-based test at the actor level: random sequences of handler calls,
//! manual saves, stops, respawns, panics (supervised restarts) and forgets run
//! against persistent actors on a real backend and against a model of what each
//! actor holds in memory and what its last save stored. After every step each
//! live actor must answer the model's value and the storage must hold exactly the
//! model's last save.
//!
//! 32 cases per backend (memory, fs); `PROPTEST_CASES=N` overrides.

mod common;
mod proptest_support;

use std::collections::HashMap;

use common::within;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};
use theta::persistence::{
    MemoryStorage, PersistentStorage, SharedStorage, SnapshotNotFound, decode_snapshot,
};
use theta::prelude::*;
use theta_persistence_fs::FsStorage;

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Tally {
    value: i64,
}

#[derive(Debug)]
struct Add(i64);
#[derive(Debug)]
struct Read;
#[derive(Debug)]
struct SaveTo(SharedStorage);
#[derive(Debug)]
struct Boom;

#[actor("9a7c2e10-4b5d-4e6f-8a9b-0c1d2e3f4a5b", snapshot)]
impl Actor for Tally {
    const _: () = {
        async |Add(n): Add| -> i64 {
            self.value += n;
            self.value
        };
        async |_: Read| -> i64 { self.value };
        async |SaveTo(storage): SaveTo| -> Result<(), String> {
            ctx.save_snapshot(&storage, self)
                .await
                .map_err(|e| e.to_string())
        };
        async |_: Boom| {
            self.value += 1_000_000;
            panic!("boom");
        };
    };
}

/// Owns the tallies, so a panic is supervised (restart from the last save).
#[derive(Debug, Clone, ActorArgs)]
struct Owner;

#[derive(Debug)]
struct Adopt(SharedStorage, ActorId);

#[actor("9a7c2e10-4b5d-4e6f-8a9b-0c1d2e3f4a5c")]
impl Actor for Owner {
    const _: () = {
        async |Adopt(storage, id): Adopt| -> Result<ActorRef<Tally>, String> {
            ctx.respawn_or(&storage, id, || (), || Tally { value: 0 })
                .await
                .map_err(|e| e.to_string())
        };
    };
}

const ACTORS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Add(usize, i64),
    Save(usize),
    Stop(usize),
    Respawn(usize),
    Panic(usize),
    Forget(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let i = 0..ACTORS;
    prop_oneof![
        4 => (i.clone(), -50i64..50).prop_map(|(i, n)| Op::Add(i, n)),
        3 => i.clone().prop_map(Op::Save),
        2 => i.clone().prop_map(Op::Stop),
        3 => i.clone().prop_map(Op::Respawn),
        1 => i.clone().prop_map(Op::Panic),
        1 => i.prop_map(Op::Forget),
    ]
}

/// One actor as the model sees it.
#[derive(Debug, Default, Clone, Copy)]
struct Model {
    /// The in-memory value while the actor runs.
    live: Option<i64>,
    /// The value of its last acknowledged save.
    saved: Option<i64>,
}

async fn run_ops(storage: SharedStorage, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let root = RootContext::default();
    let owner = root.spawn(Owner);
    let ids: Vec<ActorId> = (0..ACTORS).map(|_| ActorId::new_v4()).collect();
    let mut refs: HashMap<usize, ActorRef<Tally>> = HashMap::new();
    let mut model = [Model::default(); ACTORS];

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Add(i, n) => {
                if let (Some(actor), Some(live)) = (refs.get(&i), model[i].live.as_mut()) {
                    *live += n;
                    prop_assert_eq!(within("add", actor.ask(Add(n))).await.unwrap(), *live);
                }
            }
            Op::Save(i) => {
                if let Some(actor) = refs.get(&i) {
                    within("save", actor.ask(SaveTo(storage.clone())))
                        .await
                        .unwrap()
                        .map_err(TestCaseError::fail)?;
                    model[i].saved = model[i].live;
                }
            }
            Op::Stop(i) => {
                if let Some(actor) = refs.remove(&i) {
                    actor.stop();
                    within("stop", actor.stopped()).await;
                    model[i].live = None;
                }
            }
            Op::Respawn(i) => {
                if let std::collections::hash_map::Entry::Vacant(slot) = refs.entry(i) {
                    let actor = within("adopt", owner.ask(Adopt(storage.clone(), ids[i])))
                        .await
                        .unwrap()
                        .map_err(TestCaseError::fail)?;
                    slot.insert(actor);
                    model[i].live = Some(model[i].saved.unwrap_or(0));
                }
            }
            Op::Panic(i) => {
                if let Some(actor) = refs.get(&i) {
                    prop_assert_eq!(
                        within("boom", actor.ask(Boom)).await,
                        Err(AskError::NoReply(ids[i]))
                    );
                    // Restarted in place from its last save (or its start state).
                    model[i].live = Some(model[i].saved.unwrap_or(0));
                }
            }
            Op::Forget(i) => {
                match refs.remove(&i) {
                    Some(actor) => within("forget", root.forget(&storage, actor))
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?,
                    None => within("delete", root.delete_snapshot(&storage, ids[i]))
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?,
                }
                model[i] = Model::default();
            }
        }
        // Every live actor answers the model's value; storage holds the last save.
        for (i, id) in ids.iter().enumerate() {
            if let Some(actor) = refs.get(&i) {
                let value = within("read", actor.ask(Read)).await.unwrap();
                prop_assert_eq!(Some(value), model[i].live, "step {} actor {}", step, i);
            }
            match (storage.try_read(*id).await, model[i].saved) {
                (Ok(bytes), Some(saved)) => {
                    let (snapshot, _) = decode_snapshot::<Tally>(*id, &bytes)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(snapshot.value, saved, "step {} actor {}", step, i);
                }
                (Err(e), None) if e.is::<SnapshotNotFound>() => {}
                (found, want) => {
                    return Err(TestCaseError::fail(format!(
                        "step {step} actor {i}: stored {:?}, model saved {want:?}",
                        found.map(|b| b.len())
                    )));
                }
            }
        }
    }
    within(
        "shutdown",
        root.shutdown(std::time::Duration::from_secs(10)),
    )
    .await
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

fn check(open: impl Fn() -> (SharedStorage, Option<tempfile::TempDir>)) {
    let mut runner = TestRunner::new(proptest_support::proptest_config(32, file!()));
    let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
        let (storage, _dir) = open();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run_ops(storage, ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn actors_on_memory_storage_follow_the_model() {
    check(|| (SharedStorage::new(MemoryStorage::new()), None));
}

#[test]
fn actors_on_fs_storage_follow_the_model() {
    check(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = FsStorage::open(dir.path()).expect("fs store");
        (SharedStorage::new(storage), Some(dir))
    });
}
