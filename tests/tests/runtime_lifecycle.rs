//! Stopping: from inside, by dropping refs, and by shutting the tree down.

mod common;
mod probe;

use std::time::Duration;

use common::within;
use probe::{Event, Get, Hang, ProbeArgs, Push, SpawnChild, StopSelf, events};
use theta::prelude::*;

#[tokio::test]
async fn stop_from_inside_a_handler_does_not_deadlock() {
    let (tx, mut events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("self-stop", tx));
    within("ask", probe.ask(StopSelf)).await.unwrap();
    assert_eq!(within("stop", probe.stopped()).await, ExitReason::Stopped);
    events
        .until("on_exit", |e| {
            *e == Event::Exited("self-stop", ExitReason::Stopped)
        })
        .await;
    assert_eq!(probe.tell(Push(1)), Err(SendError { id: probe.id() }));
}

#[tokio::test]
async fn dropping_the_last_ref_drains_the_mailbox_then_runs_on_exit() {
    let (tx, mut events) = events();
    let probe = RootContext::default().spawn(ProbeArgs::new("dropped", tx));
    let weak = probe.downgrade();
    for i in 0..100 {
        probe.tell(Push(i)).unwrap();
    }
    drop(probe);
    assert_eq!(
        within("stop", weak.stopped()).await,
        ExitReason::RefsDropped
    );
    assert!(weak.upgrade().is_none());
    // Every told message was handled, in order, before `on_exit`.
    let exit_log = events
        .until("on_exit's log", |e| {
            matches!(e, Event::ExitLog { tag: "dropped", .. })
        })
        .await;
    assert_eq!(
        exit_log,
        Event::ExitLog {
            tag: "dropped",
            log: (0..100).collect()
        }
    );
    assert_eq!(
        events.next().await,
        Event::Exited("dropped", ExitReason::RefsDropped)
    );
}

#[tokio::test]
async fn shutdown_stops_children_before_parents() {
    let (tx, mut events) = events();
    let root = RootContext::default();
    let parent = root.spawn(ProbeArgs::new("parent", tx.clone()));
    let child = within("spawn", parent.ask(SpawnChild(ProbeArgs::new("child", tx))))
        .await
        .unwrap();
    within("shutdown", root.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(parent.is_stopped() && child.is_stopped());
    let mut exits = Vec::new();
    while let Ok(ev) = events.0.try_recv() {
        if let Event::Exited(tag, reason) = ev {
            assert_eq!(reason, ExitReason::Stopped);
            exits.push(tag);
        }
    }
    assert_eq!(exits, ["child", "parent"]);
}

#[tokio::test]
async fn shutdown_with_a_hung_actor_returns_within_its_timeout() {
    let (tx, _events) = events();
    let root = RootContext::default();
    let hung = root.spawn(ProbeArgs::new("hung", tx.clone()));
    let fine = root.spawn(ProbeArgs::new("fine", tx));
    hung.tell(Hang).unwrap();
    within("ask", fine.ask(Get)).await.unwrap();

    let err = within("shutdown", root.shutdown(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert_eq!(err.not_stopped, vec![hung.id()]);
    assert!(fine.is_stopped());
    // The hung actor was aborted; waiting on it now resolves.
    assert_eq!(within("abort", hung.stopped()).await, ExitReason::Aborted);
}

#[tokio::test]
async fn a_child_stops_when_its_parent_stops() {
    let (tx, _events) = events();
    let root = RootContext::default();
    let parent = root.spawn(ProbeArgs::new("parent", tx.clone()));
    let child = within("spawn", parent.ask(SpawnChild(ProbeArgs::new("child", tx))))
        .await
        .unwrap();
    parent.stop();
    within("parent", parent.stopped()).await;
    assert!(child.is_stopped(), "children stop before their parent");
}
