//! Supervision: panics are caught, parents decide, limits stop hot loops.

mod common;
mod probe;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::within;
use probe::{Event, Events, Get, Panic, Probe, ProbeArgs, Push, SpawnChild, events};
use theta::prelude::*;
use theta::{FailureCause, FailurePhase};

#[tokio::test]
async fn panic_in_handler_restarts_with_fresh_state() {
    let (tx, mut events) = events();
    let root = RootContext::default();
    let parent = root.spawn(ProbeArgs::new("parent", tx.clone()));
    let child_args = ProbeArgs::new("child", tx);
    let inits = child_args.inits.clone();
    let child = within("spawn", parent.ask(SpawnChild(child_args)))
        .await
        .unwrap();

    within("push", child.ask(Push(5))).await.unwrap();
    child.tell(Panic).unwrap();

    let supervised = events
        .until("supervise", |e| matches!(e, Event::Supervised { .. }))
        .await;
    let Event::Supervised { tag, failure } = supervised else {
        unreachable!()
    };
    assert_eq!(tag, "parent");
    assert_eq!(failure.actor_id(), child.id());
    assert_eq!(failure.phase(), FailurePhase::Handler);
    assert!(matches!(failure.cause(), FailureCause::Panic(m) if m.contains("told to panic")));

    events
        .until("restart", |e| *e == Event::Restarted("child"))
        .await;
    // Same id and mailbox, state re-initialized from the args.
    assert_eq!(
        within("get", child.ask(Get)).await.unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(inits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stop_decision_stops_the_child() {
    let (tx, mut events) = events();
    let root = RootContext::default();
    let mut parent_args = ProbeArgs::new("parent", tx.clone());
    parent_args.decision = Decision::Stop;
    let parent = root.spawn(parent_args);
    let child = within("spawn", parent.ask(SpawnChild(ProbeArgs::new("child", tx))))
        .await
        .unwrap();
    child.tell(Panic).unwrap();
    let reason = within("child stop", child.stopped()).await;
    assert!(matches!(reason, ExitReason::Failed(f) if f.actor_id() == child.id()));
    // The parent lives on.
    within("parent", parent.ask(Get)).await.unwrap();
    events
        .until("on_exit", |e| matches!(e, Event::Exited("child", _)))
        .await;
}

#[tokio::test]
async fn restart_limit_stops_a_hot_loop() {
    let (tx, mut events) = events();
    let root = RootContext::default();
    let parent = root.spawn(ProbeArgs::new("parent", tx.clone()));
    let mut child_args = ProbeArgs::new("crashy", tx);
    child_args.init_panics = true;
    let inits = child_args.inits.clone();
    let child = within("spawn", parent.ask(SpawnChild(child_args)))
        .await
        .unwrap();
    let reason = within("child stop", child.stopped()).await;
    let ExitReason::RestartLimit(failure) = reason else {
        panic!("expected the restart limit, got {reason:?}");
    };
    assert_eq!(failure.phase(), FailurePhase::Initialize);
    // The first start plus three restarts (the probe's limit), then no more.
    assert_eq!(inits.load(Ordering::SeqCst), 4);
    let supervised = std::iter::from_fn(|| events.0.try_recv().ok())
        .filter(|e| matches!(e, Event::Supervised { .. }))
        .count();
    assert_eq!(supervised, 4);
}

#[tokio::test]
async fn escalation_reaches_the_grandparent() {
    let (tx, mut events) = events();
    let root = RootContext::default();
    let grandparent = root.spawn(ProbeArgs::new("grandparent", tx.clone()));
    let mut parent_args = ProbeArgs::new("parent", tx.clone());
    parent_args.decision = Decision::Escalate;
    let parent = within("spawn parent", grandparent.ask(SpawnChild(parent_args)))
        .await
        .unwrap();
    let child = within(
        "spawn child",
        parent.ask(SpawnChild(ProbeArgs::new("child", tx))),
    )
    .await
    .unwrap();

    child.tell(Panic).unwrap();

    let ev = events
        .until("grandparent supervise", |e| {
            matches!(
                e,
                Event::Supervised {
                    tag: "grandparent",
                    ..
                }
            )
        })
        .await;
    let Event::Supervised { failure, .. } = ev else {
        unreachable!()
    };
    assert_eq!(failure.actor_id(), parent.id());
    assert_eq!(failure.root_cause().actor_id(), child.id());
    assert!(matches!(failure.cause(), FailureCause::Escalated(_)));

    // The grandparent restarts the parent; the failed child stops for good.
    events
        .until("parent restart", |e| *e == Event::Restarted("parent"))
        .await;
    let child_reason = within("child stop", child.stopped()).await;
    assert!(matches!(child_reason, ExitReason::Escalated(_)));
    within("parent alive", parent.ask(Get)).await.unwrap();
}

#[tokio::test]
async fn panic_in_a_top_level_actor_stops_it() {
    let (tx, _events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("top", tx));
    probe.tell(Panic).unwrap();
    let reason = within("stop", probe.stopped()).await;
    let ExitReason::Failed(failure) = reason else {
        panic!("expected a failure, got {reason:?}");
    };
    assert_eq!(failure.actor_id(), probe.id());
    assert_eq!(failure.phase(), FailurePhase::Handler);
    assert_eq!(
        failure.cause(),
        &FailureCause::Panic("top was told to panic".into())
    );
    assert_eq!(probe.tell(Push(1)), Err(SendError { id: probe.id() }));
}

#[tokio::test]
async fn ask_to_a_panicking_handler_fails_instead_of_hanging() {
    let (tx, _events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("top", tx));
    let err = within("ask", probe.ask(Panic)).await.unwrap_err();
    assert_eq!(err, AskError::NoReply(probe.id()));
}

/// Panics `child` in a handler and waits until its parent has restarted it.
async fn panic_then_restart(child: &ActorRef<Probe>, events: &mut Events) {
    child.tell(Panic).unwrap();
    events
        .until("restart", |e| *e == Event::Restarted("child"))
        .await;
    within("alive after the restart", child.ask(Get))
        .await
        .unwrap();
}

/// The restart limit (the probe's: 3 within 60 s) counts only the restarts
/// inside its window: once the window has passed the first three, three more
/// are allowed; a fourth inside the window stops the actor (paused clock).
#[tokio::test(start_paused = true)]
async fn the_restart_limit_window_resets_after_it_passes() {
    let (tx, mut events) = events();
    let root = RootContext::default();
    let parent = root.spawn(ProbeArgs::new("parent", tx.clone()));
    let child_args = ProbeArgs::new("child", tx);
    let inits = child_args.inits.clone();
    let child = within("spawn", parent.ask(SpawnChild(child_args)))
        .await
        .unwrap();
    for _ in 0..3 {
        panic_then_restart(&child, &mut events).await;
    }
    tokio::time::advance(Duration::from_secs(61)).await;
    for _ in 0..3 {
        panic_then_restart(&child, &mut events).await;
    }
    assert_eq!(
        inits.load(Ordering::SeqCst),
        7,
        "the first start and six restarts"
    );
    child.tell(Panic).unwrap();
    let reason = within("child stop", child.stopped()).await;
    let ExitReason::RestartLimit(failure) = reason else {
        panic!("a fourth failure inside the window must hit the limit, got {reason:?}");
    };
    assert_eq!(failure.actor_id(), child.id());
    assert_eq!(failure.phase(), FailurePhase::Handler);
    assert_eq!(inits.load(Ordering::SeqCst), 7);
}
