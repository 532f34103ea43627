//! Model-based test of virtual actors: random interleavings of tells, asks,
//! passivations (requested and awaited), activations, self-stops and panics over
//! a few ids, through one `VirtualActors` handle. Every message is either
//! handled exactly once or returned to its sender as an error (asks) or counted
//! as a dead letter (tells), and each id handles its messages in the order they
//! were sent.
//!
//! 48 cases of up to 80 steps; `PROPTEST_CASES=N` overrides.

mod common;
mod proptest_support;

use std::collections::HashMap;

use common::within;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde::{Deserialize, Serialize};
use theta::persistence::{
    MemoryStorage, SharedStorage, SnapshotPolicy, VirtualActors, decode_snapshot,
};
use theta::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Journal {
    log: Vec<u64>,
}

#[derive(Debug)]
struct Append(u64);
#[derive(Debug)]
struct Boom;
#[derive(Debug)]
struct StopSelf;

#[actor("2b8d6f40-7a1c-4e3b-9d5f-6a7b8c9d0e1f", snapshot)]
impl Actor for Journal {
    const _: () = {
        async |Append(value): Append| {
            self.log.push(value);
        };
        async |_: Boom| {
            panic!("model boom");
        };
        async |_: StopSelf| {
            ctx.stop();
        };
    };
}

const IDS: usize = 3;

#[derive(Debug, Clone)]
enum Step {
    Tell(usize),
    Ask(usize),
    Passivate(usize),
    RequestPassivation(usize),
    Activate(usize),
    Boom(usize),
    StopSelf(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let id = 0..IDS;
    prop_oneof![
        6 => id.clone().prop_map(Step::Tell),
        4 => id.clone().prop_map(Step::Ask),
        2 => id.clone().prop_map(Step::Passivate),
        2 => id.clone().prop_map(Step::RequestPassivation),
        1 => id.clone().prop_map(Step::Activate),
        1 => id.clone().prop_map(Step::Boom),
        1 => id.prop_map(Step::StopSelf),
    ]
}

/// What the driver sent to one id.
#[derive(Debug, Default)]
struct Sent {
    /// Told values.
    tells: Vec<u64>,
    /// Asked values whose ask returned `Ok`.
    acked: Vec<u64>,
    /// Asked values whose ask failed: handled at most once.
    failed: Vec<u64>,
}

async fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let memory = MemoryStorage::new();
    let storage = SharedStorage::new(memory.clone())
        .with_policy(SnapshotPolicy::new().every_n_messages(1).confirm_replies());
    let root = RootContext::default();
    let journals =
        VirtualActors::<Journal>::builder(&root, storage, |_| Journal { log: Vec::new() }).build();
    let ids: Vec<ActorId> = (0..IDS).map(|_| ActorId::new_v4()).collect();
    let mut sent: HashMap<ActorId, Sent> = ids.iter().map(|id| (*id, Sent::default())).collect();
    let mut next = 0u64;
    for step in steps {
        match step {
            Step::Tell(i) => {
                next += 1;
                journals.tell(ids[i], Append(next)).unwrap();
                sent.get_mut(&ids[i]).unwrap().tells.push(next);
            }
            Step::Ask(i) => {
                next += 1;
                let outcome = within("ask", journals.ask(ids[i], Append(next))).await;
                let entry = sent.get_mut(&ids[i]).unwrap();
                match outcome {
                    Ok(()) => entry.acked.push(next),
                    Err(_) => entry.failed.push(next),
                }
            }
            Step::Passivate(i) => {
                let _ = within("passivate", journals.passivate(ids[i])).await;
            }
            Step::RequestPassivation(i) => {
                journals.request_passivation(ids[i]);
            }
            Step::Activate(i) => {
                within("activate", journals.activate(ids[i])).await.unwrap();
            }
            // Asked, so that their own fate is their sender's (a told Boom
            // queued behind another one is dropped unhandled, and counted).
            Step::Boom(i) => {
                let _ = within("boom", journals.ask(ids[i], Boom)).await;
            }
            Step::StopSelf(i) => {
                let _ = within("stop", journals.ask(ids[i], StopSelf)).await;
            }
        }
    }
    within("shutdown", journals.shutdown()).await;

    let mut missing_tells = 0u64;
    for id in &ids {
        let log = match memory.get(*id) {
            Some(bytes) => {
                decode_snapshot::<Journal>(*id, &bytes)
                    .map_err(|e| TestCaseError::fail(format!("{id}: {e}")))?
                    .0
                    .log
            }
            None => Vec::new(),
        };
        prop_assert!(
            log.windows(2).all(|w| w[0] < w[1]),
            "{id}: out of order or twice: {log:?}"
        );
        let sent = &sent[id];
        for value in &sent.acked {
            prop_assert!(
                log.contains(value),
                "{id}: acknowledged {value} lost: {log:?}"
            );
        }
        for value in &log {
            prop_assert!(
                sent.tells.contains(value)
                    || sent.acked.contains(value)
                    || sent.failed.contains(value),
                "{id}: {value} was never sent"
            );
        }
        missing_tells += sent.tells.iter().filter(|v| !log.contains(v)).count() as u64;
    }
    // Every tell that was not handled was counted (a tell has nobody to answer).
    let stats = journals.stats();
    prop_assert_eq!(
        missing_tells,
        stats.dead_letters,
        "tells not handled vs dead letters counted ({:?})",
        stats
    );
    drop(root);
    Ok(())
}

#[test]
fn virtual_actors_follow_the_model() {
    // The actors' panics are the test's, not failures: keep them off the output.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let ours = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|msg| *msg == "model boom");
        if !ours {
            default(info);
        }
    }));
    let mut runner = TestRunner::new(proptest_support::proptest_config(48, file!()));
    let result = runner.run(&prop::collection::vec(step(), 0..80), |steps| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(check(steps))
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}
