//! Messaging with a hand-written actor: ordering, typed replies, timeouts, stopped
//! actors, scale.

mod common;
mod probe;

use std::time::Duration;

use common::within;
use probe::{Get, Hang, ProbeArgs, Push, events};
use theta::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_sender_arrive_in_order() {
    let (tx, _events) = events();
    let root = RootContext::default();
    let probe = root.spawn(ProbeArgs::new("fifo", tx));

    let senders: Vec<_> = (0..4u64)
        .map(|sender| {
            let probe = probe.clone();
            tokio::spawn(async move {
                for i in 0..2_000u64 {
                    probe.tell(Push(sender << 32 | i)).unwrap();
                }
            })
        })
        .collect();
    for s in senders {
        within("sender", s).await.unwrap();
    }
    let log = within("ask", probe.ask(Get)).await.unwrap();
    assert_eq!(log.len(), 8_000);
    for sender in 0..4u64 {
        let seen: Vec<u64> = log
            .iter()
            .filter(|v| *v >> 32 == sender)
            .map(|v| v & 0xffff_ffff)
            .collect();
        assert_eq!(seen, (0..2_000).collect::<Vec<_>>(), "sender {sender}");
    }
}

#[tokio::test]
async fn ask_returns_the_typed_reply() {
    let (tx, _events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("ask", tx));
    let unit: () = within("push", probe.ask(Push(7))).await.unwrap();
    assert_eq!(unit, ());
    let log: Vec<u64> = within("get", probe.ask(Get)).await.unwrap();
    assert_eq!(log, vec![7]);
}

#[tokio::test]
async fn ask_times_out_when_the_actor_is_busy() {
    let (tx, _events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("busy", tx));
    probe.tell(Hang).unwrap();
    let err = within("ask", probe.ask(Get).timeout(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AskError::Timeout {
            id: probe.id(),
            after: Duration::from_millis(50)
        }
    );
}

#[tokio::test]
async fn ask_and_tell_to_a_stopped_actor_fail_at_once() {
    let (tx, _events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("stopped", tx));
    probe.stop();
    assert_eq!(within("stop", probe.stopped()).await, ExitReason::Stopped);

    assert_eq!(probe.tell(Push(1)), Err(SendError { id: probe.id() }));
    let err = within("ask", probe.ask(Get)).await.unwrap_err();
    assert_eq!(err, AskError::Stopped(probe.id()));
}

#[tokio::test]
async fn stop_handles_messages_sent_before_it() {
    use std::future::IntoFuture;
    let (tx, _events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("graceful", tx));
    probe.tell(Push(1)).unwrap();
    // `into_future` sends the ask now, before the stop.
    let queued_ask = probe.ask(Get).into_future();
    probe.stop();
    assert_eq!(within("ask", queued_ask).await.unwrap(), vec![1]);
    assert_eq!(within("stop", probe.stopped()).await, ExitReason::Stopped);
    assert_eq!(
        within("late ask", probe.ask(Get)).await,
        Err(AskError::Stopped(probe.id()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_actors_each_answer_once() {
    let (tx, _events) = events();
    let root = RootContext::default();
    let actors: Vec<_> = (0..10_000)
        .map(|_| root.spawn(ProbeArgs::new("many", tx.clone())))
        .collect();
    for (i, actor) in actors.iter().enumerate() {
        actor.tell(Push(i as u64)).unwrap();
    }
    for (i, actor) in actors.iter().enumerate() {
        let log = within("ask", actor.ask(Get)).await.unwrap();
        assert_eq!(log, vec![i as u64]);
    }
    within("shutdown", root.shutdown(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(actors.iter().all(|a| a.is_stopped()));
}

#[tokio::test]
async fn refs_compare_and_hash_by_id() {
    use std::collections::HashSet;
    let (tx, _events) = events();
    let root = RootContext::default();
    let a = root.spawn(ProbeArgs::new("a", tx.clone()));
    let b = root.spawn(ProbeArgs::new("b", tx));
    // ActorRef hashes by its immutable id; the interior state clippy sees is not
    // part of the key.
    #[allow(clippy::mutable_key_type)]
    let set: HashSet<_> = [a.clone(), a.clone(), b.clone()].into_iter().collect();
    assert_eq!(set.len(), 2);
    assert_eq!(a.downgrade().upgrade(), Some(a.clone()));
    assert_ne!(a, b);
}

#[tokio::test]
async fn spawn_with_a_live_id_is_refused() {
    let (tx, _events) = events();
    let root = RootContext::default();
    let id = ActorId::new_v4();
    let first = root
        .spawn_with_id(id, ProbeArgs::new("one", tx.clone()))
        .unwrap();
    assert_eq!(first.id(), id);
    let err = root
        .spawn_with_id(id, ProbeArgs::new("two", tx.clone()))
        .unwrap_err();
    assert_eq!(err, theta::SpawnError::AlreadyRunning(id));
    first.stop();
    within("stop", first.stopped()).await;
    // The id is free once the actor has stopped.
    root.spawn_with_id(id, ProbeArgs::new("three", tx)).unwrap();
}
