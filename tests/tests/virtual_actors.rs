//! Virtual actors: activation on the first message, idle passivation, and that
//! no message is lost or delivered to a stopped instance on the way. The clock is
//! paused where idle time matters; every wait is on an event, under a timeout.

mod common;
mod fault_storage;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::within;
use fault_storage::FaultStorage;
use serde::{Deserialize, Serialize};
use theta::persistence::{
    MemoryStorage, PersistenceError, PersistentActor, SharedStorage, SnapshotPolicy, VirtualActors,
    VirtualError, encode_payload, envelope,
};
use theta::prelude::*;
use theta::{Message, Reply};
use tokio::sync::{mpsc, oneshot};

/// What the actors report.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Started(ActorId, i64),
    Exited(ActorId, ExitReason),
}

/// A counter that logs the order of `Append`s and can hold an ask's reply.
struct Counter {
    id: ActorId,
    total: i64,
    log: Vec<u64>,
    stashed: Option<Reply<i64>>,
    events: mpsc::UnboundedSender<Event>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CounterSnapshot {
    total: i64,
    log: Vec<u64>,
}

impl From<&Counter> for CounterSnapshot {
    fn from(c: &Counter) -> Self {
        Self {
            total: c.total,
            log: c.log.clone(),
        }
    }
}

/// Restored or fresh: the snapshot plus the event channel (runtime args).
struct Start {
    snapshot: CounterSnapshot,
    events: mpsc::UnboundedSender<Event>,
}

impl ActorArgs for Start {
    type Actor = Counter;
    async fn initialize(ctx: Context<Counter>, args: &Self) -> Counter {
        let _ = args
            .events
            .send(Event::Started(ctx.id(), args.snapshot.total));
        Counter {
            id: ctx.id(),
            total: args.snapshot.total,
            log: args.snapshot.log.clone(),
            stashed: None,
            events: args.events.clone(),
        }
    }
}

struct Add(i64);
struct Get;
struct Append(u64);
struct Log;
/// The reply is held back until `Release`.
struct Stash;
struct Release;
/// The handler waits for the sender to fire.
struct Wait(oneshot::Receiver<()>);

enum CounterMsg {
    Add(i64, Option<Reply<i64>>),
    Get(Option<Reply<i64>>),
    Append(u64, Option<Reply<()>>),
    Log(Option<Reply<Vec<u64>>>),
    Stash(Option<Reply<i64>>),
    Release(Option<Reply<()>>),
    Wait(oneshot::Receiver<()>, Option<Reply<()>>),
}

macro_rules! message {
    ($ty:ty, $ret:ty, |$msg:ident, $reply:ident| $variant:expr) => {
        impl Message<Counter> for $ty {
            type Return = $ret;
            fn into_msg(self, $reply: Option<Reply<$ret>>) -> CounterMsg {
                let $msg = self;
                $variant
            }
        }
    };
}

message!(Add, i64, |m, r| CounterMsg::Add(m.0, r));
message!(Get, i64, |_m, r| CounterMsg::Get(r));
message!(Append, (), |m, r| CounterMsg::Append(m.0, r));
message!(Log, Vec<u64>, |_m, r| CounterMsg::Log(r));
message!(Stash, i64, |_m, r| CounterMsg::Stash(r));
message!(Release, (), |_m, r| CounterMsg::Release(r));
message!(Wait, (), |m, r| CounterMsg::Wait(m.0, r));

impl Actor for Counter {
    type Msg = CounterMsg;
    const TYPE_ID: uuid::Uuid = uuid::uuid!("7d1e5c2a-0b3f-4e8d-9a6c-5b4a3c2d1e01");

    async fn process_msg(&mut self, ctx: &Context<Self>, msg: CounterMsg) {
        match msg {
            CounterMsg::Add(n, reply) => {
                self.total += n;
                if let Some(r) = reply {
                    r.send(ctx, self.total);
                }
            }
            CounterMsg::Get(reply) => {
                if let Some(r) = reply {
                    r.send(ctx, self.total);
                }
            }
            CounterMsg::Append(seq, reply) => {
                self.log.push(seq);
                if let Some(r) = reply {
                    r.send(ctx, ());
                }
            }
            CounterMsg::Log(reply) => {
                if let Some(r) = reply {
                    r.send(ctx, self.log.clone());
                }
            }
            CounterMsg::Stash(reply) => self.stashed = reply,
            CounterMsg::Release(reply) => {
                if let Some(stashed) = self.stashed.take() {
                    stashed.send(ctx, self.total);
                }
                if let Some(r) = reply {
                    r.send(ctx, ());
                }
            }
            CounterMsg::Wait(rx, reply) => {
                let _ = rx.await;
                if let Some(r) = reply {
                    r.send(ctx, ());
                }
            }
        }
    }

    async fn on_exit(&mut self, _ctx: &Context<Self>, reason: &ExitReason) {
        let _ = self.events.send(Event::Exited(self.id, reason.clone()));
    }
}

impl PersistentActor for Counter {
    type Snapshot = CounterSnapshot;
    type RuntimeArgs = mpsc::UnboundedSender<Event>;
    type ActorArgs = Start;

    fn persistent_args(snapshot: CounterSnapshot, events: Self::RuntimeArgs) -> Start {
        Start { snapshot, events }
    }
}

struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// Waits for the first event that `matches`, skipping others.
    async fn until(&mut self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
        loop {
            let event = within(what, self.0.recv())
                .await
                .unwrap_or_else(|| panic!("event channel closed waiting for {what}"));
            if matches(&event) {
                return event;
            }
        }
    }

    async fn passivated(&mut self, id: ActorId) {
        self.until("a passivation", |e| {
            *e == Event::Exited(id, ExitReason::Passivated)
        })
        .await;
    }
}

fn counters(
    storage: impl theta::persistence::PersistentStorage + 'static,
    configure: impl FnOnce(
        theta::persistence::VirtualActorsBuilder<Counter>,
    ) -> theta::persistence::VirtualActorsBuilder<Counter>,
) -> (VirtualActors<Counter>, Events, RootContext) {
    let (tx, rx) = mpsc::unbounded_channel();
    let root = RootContext::default();
    let events = tx.clone();
    let builder = VirtualActors::<Counter>::builder_with(
        &root,
        storage,
        move |_id| Start {
            snapshot: CounterSnapshot {
                total: 0,
                log: Vec::new(),
            },
            events: events.clone(),
        },
        move |_id| tx.clone(),
    );
    (configure(builder).build(), Events(rx), root)
}

/// Stores a counter snapshot for each of `ids`, the `i`-th with total `i`.
fn store_totals(memory: &MemoryStorage, ids: &[ActorId]) {
    for (i, id) in ids.iter().enumerate() {
        let payload = encode_payload(&CounterSnapshot {
            total: i as i64,
            log: Vec::new(),
        })
        .unwrap();
        let bytes = envelope::Seal::new(<Counter as Actor>::TYPE_ID)
            .actor_id(*id)
            .sequence(1)
            .seal(&payload);
        memory.insert_raw(*id, bytes);
    }
}

fn stored_total(storage: &MemoryStorage, id: ActorId) -> i64 {
    let bytes = storage.get(id).expect("a stored snapshot");
    let (snapshot, _) = theta::persistence::decode_snapshot::<Counter>(id, &bytes).unwrap();
    snapshot.total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_messages_activate_once() {
    let memory = MemoryStorage::new();
    let (counters, _events, _root) = counters(memory.clone(), |b| b);
    let id = ActorId::new_v4();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let counters = counters.clone();
            tokio::spawn(async move { counters.ask(id, Add(1)).await })
        })
        .collect();
    for task in tasks {
        within("ask", task).await.unwrap().unwrap();
    }
    assert_eq!(within("get", counters.ask(id, Get)).await.unwrap(), 100);
    let stats = counters.stats();
    assert_eq!(stats.activations, 1, "{stats:?}");
    assert_eq!(stats.dead_letters, 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_actor_passivates_and_comes_back_with_its_state() {
    let memory = MemoryStorage::new();
    let (counters, mut events, _root) =
        counters(memory.clone(), |b| b.idle_after(Duration::from_secs(1)));
    let id = ActorId::new_v4();
    assert_eq!(within("add", counters.ask(id, Add(5))).await.unwrap(), 5);
    events.passivated(id).await;
    assert!(!counters.is_live(id));
    assert_eq!(stored_total(&memory, id), 5, "the final snapshot is stored");
    assert_eq!(within("get", counters.ask(id, Get)).await.unwrap(), 5);
    events
        .until("the reactivation", |e| *e == Event::Started(id, 5))
        .await;
    let stats = counters.stats();
    assert_eq!((stats.activations, stats.passivations), (2, 1), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn a_busy_actor_is_never_passivated() {
    let memory = MemoryStorage::new();
    let (counters, mut events, _root) =
        counters(memory.clone(), |b| b.idle_after(Duration::from_secs(1)));
    let id = ActorId::new_v4();
    within("add", counters.ask(id, Add(1))).await.unwrap();

    // A handler still running, with messages queued behind it.
    let (fire, wait) = oneshot::channel();
    let waiting = {
        let counters = counters.clone();
        tokio::spawn(async move { counters.ask(id, Wait(wait)).await })
    };
    counters.tell(id, Add(1)).unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(counters.is_live(id), "passivated with a handler running");
    fire.send(()).unwrap();
    within("wait", waiting).await.unwrap().unwrap();

    // An ask whose handler returned but whose reply is still held back.
    let stashed = {
        let counters = counters.clone();
        tokio::spawn(async move { counters.ask(id, Stash).await })
    };
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        counters.is_live(id),
        "passivated with an ask awaiting its reply"
    );
    within("release", counters.ask(id, Release)).await.unwrap();
    assert_eq!(within("stash", stashed).await.unwrap().unwrap(), 2);
    assert_eq!(counters.stats().passivations, 0);

    // Idle now: it goes.
    events.passivated(id).await;
    assert_eq!(stored_total(&memory, id), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passivation_in_the_middle_of_a_burst_loses_nothing_and_keeps_order() {
    let (faulty, _written) = FaultStorage::new();
    let (counters, _events, _root) = counters(faulty.clone(), |b| b);
    let id = ActorId::new_v4();
    // A burst from one sender while passivations are asked again and again.
    let burst = {
        let counters = counters.clone();
        tokio::spawn(async move {
            for seq in 0..2_000u64 {
                counters.tell(id, Append(seq)).unwrap();
                if seq % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut accepted = 0;
    while !burst.is_finished() {
        if let Ok(true) = within("passivate", counters.passivate(id)).await {
            accepted += 1;
        }
        tokio::task::yield_now().await;
    }
    within("burst", burst).await.unwrap();

    // And deterministically: messages sent while the final save is in flight
    // wait, in order, for the next activation.
    // (A change first, so that the final save has something to write.)
    within("append", counters.ask(id, Append(2_000)))
        .await
        .unwrap();
    let (saving, release) = faulty.hold_next_write();
    let passivating = {
        let counters = counters.clone();
        tokio::spawn(async move { counters.passivate(id).await })
    };
    within("the final save starts", saving).await.unwrap();
    for seq in 2_001..2_100u64 {
        counters.tell(id, Append(seq)).unwrap();
    }
    release.send(()).unwrap();
    assert!(within("passivation", passivating).await.unwrap().unwrap());

    let log = within("log", counters.ask(id, Log)).await.unwrap();
    assert_eq!(
        log,
        (0..2_100).collect::<Vec<_>>(),
        "every message, in order"
    );
    let stats = counters.stats();
    assert_eq!(stats.dead_letters, 0, "{stats:?}");
    assert!(stats.passivations > accepted, "{stats:?} {accepted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_final_save_keeps_the_actor_live_and_loses_nothing() {
    let (faulty, _written) = FaultStorage::new();
    let (counters, mut events, _root) = counters(faulty.clone(), |b| b);
    let id = ActorId::new_v4();
    within("add", counters.ask(id, Add(3))).await.unwrap();
    faulty.fail_next_write();
    let failed = within("passivate", counters.passivate(id)).await;
    assert!(
        matches!(&failed, Err(VirtualError::Passivation { id: i, .. }) if *i == id),
        "{failed:?}"
    );
    let stats = counters.stats();
    assert_eq!(
        (stats.failed_passivations, stats.passivations),
        (1, 0),
        "{stats:?}"
    );
    assert!(counters.is_live(id));
    assert!(faulty.inner.get(id).is_none(), "nothing was stored");
    assert_eq!(within("get", counters.ask(id, Get)).await.unwrap(), 3);
    // Next time it works.
    assert!(within("passivate", counters.passivate(id)).await.unwrap());
    events.passivated(id).await;
    assert_eq!(stored_total(&faulty.inner, id), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_failure_goes_back_to_askers_and_counts_tells() {
    let memory = MemoryStorage::new();
    let (counters, _events, _root) = counters(memory.clone(), |b| b);
    let id = ActorId::new_v4();
    memory.insert_raw(id, b"not a snapshot".to_vec());
    counters.tell(id, Add(1)).unwrap();
    let err = within("ask", counters.ask(id, Get)).await.unwrap_err();
    match &err {
        VirtualError::Activation { id: failed, source } => {
            assert_eq!(*failed, id);
            assert!(
                matches!(**source, PersistenceError::Corrupt { .. }),
                "{source}"
            );
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(counters.stats().dead_letters, 1, "the tell is counted");
    assert!(!counters.is_live(id));
    assert_eq!(
        memory.get(id).as_deref(),
        Some(&b"not a snapshot"[..]),
        "the damaged bytes are left for an operator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_only_on_change() {
    let (faulty, mut written) = FaultStorage::new();
    let storage = SharedStorage::new(faulty.clone())
        .with_policy(SnapshotPolicy::new().every_n_messages(1).confirm_replies());
    let (counters, _events, _root) = counters(storage, |b| b);
    let id = ActorId::new_v4();
    assert_eq!(within("add", counters.ask(id, Add(2))).await.unwrap(), 2);
    let first = within("the write", written.recv()).await.unwrap();
    assert_eq!(first.id, id);
    for _ in 0..10 {
        // Confirmed replies: each returns only after its save would be durable.
        assert_eq!(within("get", counters.ask(id, Get)).await.unwrap(), 2);
    }
    assert!(
        written.try_recv().is_err(),
        "a read under every_n_messages(1) wrote a snapshot"
    );
    assert_eq!(within("add", counters.ask(id, Add(1))).await.unwrap(), 3);
    let second = within("the write", written.recv()).await.unwrap();
    assert!(second.sequence > first.sequence);
}

#[tokio::test(start_paused = true)]
async fn a_cap_passivates_the_least_recently_used() {
    let memory = MemoryStorage::new();
    let (counters, mut events, _root) = counters(memory.clone(), |b| b.max_live(10));
    let ids: Vec<ActorId> = (0..40).map(|_| ActorId::new_v4()).collect();
    for (i, id) in ids.iter().enumerate() {
        within("add", counters.ask(*id, Add(i as i64)))
            .await
            .unwrap();
    }
    let passivated = Arc::new(AtomicUsize::new(0));
    while passivated.load(Ordering::Relaxed) < 30 {
        events
            .until("passivations", |e| {
                matches!(e, Event::Exited(_, ExitReason::Passivated))
            })
            .await;
        passivated.fetch_add(1, Ordering::Relaxed);
    }
    // Each activation past the tenth waited for a passivation.
    let stats = counters.stats();
    assert!(stats.live <= 10, "{stats:?}");
    assert_eq!(stats.peak_live, 10, "{stats:?}");
    // The first ones went first, and every state survived.
    assert!(!counters.is_live(ids[0]));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            within("get", counters.ask(*id, Get)).await.unwrap(),
            i as i64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_ids_never_holds_more_live_than_the_cap() {
    let memory = MemoryStorage::new();
    let (counters, _events, _root) = counters(memory.clone(), |b| b.max_live(10));
    let ids: Vec<ActorId> = (0..300).map(|_| ActorId::new_v4()).collect();
    // 300 first messages at once, from 300 tasks.
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (counters, id) = (counters.clone(), *id);
            tokio::spawn(async move { counters.ask(id, Add(i as i64)).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(within("add", task).await.unwrap().unwrap(), i as i64);
    }
    let stats = counters.stats();
    assert!(stats.peak_live <= 10, "{stats:?}");
    assert_eq!(stats.dead_letters, 0, "{stats:?}");
    assert!(stats.passivations >= 290, "{stats:?}");
    // Every one was passivated with its state or is still live with it.
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            within("get", counters.ask(*id, Get)).await.unwrap(),
            i as i64
        );
    }
    assert!(counters.stats().peak_live <= 10);
}

#[tokio::test(start_paused = true)]
async fn with_every_live_actor_busy_an_activation_is_let_in_over_the_cap() {
    let memory = MemoryStorage::new();
    let (counters, mut events, _root) = counters(memory.clone(), |b| b.max_live(2));
    let busy: Vec<ActorId> = (0..2).map(|_| ActorId::new_v4()).collect();
    let mut fires = Vec::new();
    for id in &busy {
        let (fire, wait) = oneshot::channel();
        within("send", counters.send(*id, Wait(wait)))
            .await
            .unwrap();
        fires.push(fire);
    }
    // Both live actors are stuck in a handler: no place frees up, and after two
    // sweep periods the waiting activation goes ahead instead of deadlocking.
    let third = ActorId::new_v4();
    assert_eq!(within("add", counters.ask(third, Add(7))).await.unwrap(), 7);
    let stats = counters.stats();
    assert_eq!((stats.live, stats.peak_live), (3, 3), "{stats:?}");
    assert!(busy.iter().all(|id| counters.is_live(*id)));

    // Once they are idle again, the excess is passivated.
    for fire in fires {
        fire.send(()).unwrap();
    }
    events
        .until("a passivation", |e| {
            matches!(e, Event::Exited(_, ExitReason::Passivated))
        })
        .await;
    assert!(counters.stats().live <= 2, "{:?}", counters.stats());
    assert_eq!(within("get", counters.ask(third, Get)).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_returns_the_messages_of_activations_waiting_under_the_cap() {
    let memory = MemoryStorage::new();
    let (counters, _events, _root) = counters(memory.clone(), |b| b.max_live(1));
    let busy = ActorId::new_v4();
    let (fire, wait) = oneshot::channel();
    within("send", counters.send(busy, Wait(wait)))
        .await
        .unwrap();
    let waiting = ActorId::new_v4();
    counters.tell(waiting, Add(1)).unwrap();
    let asked = {
        let counters = counters.clone();
        tokio::spawn(async move { counters.ask(waiting, Get).await })
    };
    let shutdown = {
        let counters = counters.clone();
        tokio::spawn(async move { counters.shutdown().await })
    };
    // The waiting activation gives up at once, while the busy actor (holding
    // the only place) is still in its handler.
    let err = within("ask", asked).await.unwrap().unwrap_err();
    assert!(
        matches!(err, VirtualError::Closed { id } if id == waiting),
        "{err}"
    );
    assert!(counters.is_live(busy));
    fire.send(()).unwrap();
    within("shutdown", shutdown).await.unwrap();
    let stats = counters.stats();
    assert_eq!(stats.dead_letters, 1, "the tell is counted: {stats:?}");
    assert_eq!((stats.live, stats.waiting), (0, 0), "{stats:?}");
    assert!(memory.get(waiting).is_none(), "it never activated");
    assert!(
        memory.get(busy).is_some(),
        "the busy one saved on its way out"
    );
}

#[tokio::test]
async fn the_cap_passivates_the_least_recently_used_not_the_first_activated() {
    let memory = MemoryStorage::new();
    let (counters, mut events, _root) = counters(memory.clone(), |b| b.max_live(3));
    let ids: Vec<ActorId> = (0..4).map(|_| ActorId::new_v4()).collect();
    for id in &ids[..3] {
        within("add", counters.ask(*id, Add(1))).await.unwrap();
    }
    // The first one activated is now the most recently used.
    within("get", counters.ask(ids[0], Get)).await.unwrap();
    within("add", counters.ask(ids[3], Add(1))).await.unwrap();
    let first_out = events
        .until("a passivation", |e| {
            matches!(e, Event::Exited(_, ExitReason::Passivated))
        })
        .await;
    assert_eq!(first_out, Event::Exited(ids[1], ExitReason::Passivated));
    assert!(counters.is_live(ids[0]));
    assert!(counters.is_live(ids[3]));
    assert_eq!(stored_total(&memory, ids[1]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_is_refused_or_takes_over_and_fences_the_first() {
    let memory = MemoryStorage::new();
    let (first, mut first_events, _root1) = counters(memory.clone(), |b| b);
    let id = ActorId::new_v4();
    assert_eq!(within("add", first.ask(id, Add(10))).await.unwrap(), 10);
    assert!(within("passivate", first.passivate(id)).await.unwrap());
    first_events.passivated(id).await;
    assert_eq!(
        within("reactivate", first.ask(id, Add(1))).await.unwrap(),
        11
    );

    // Another instance (another RootContext) on the same store is refused...
    let (second, _second_events, _root2) = counters(memory.clone(), |b| b);
    let err = within("ask", second.ask(id, Get)).await.unwrap_err();
    assert!(
        matches!(&err, VirtualError::Activation { source, .. }
            if matches!(**source, PersistenceError::OwnedElsewhere { .. })),
        "{err}"
    );

    // ... unless it takes over: it restores what the first one stored, and the
    // first one's next write is fenced.
    let (third, _third_events, _root3) = counters(memory.clone(), |b| b.take_over());
    assert_eq!(within("get", third.ask(id, Get)).await.unwrap(), 10);
    assert!(
        first.request_passivation(id),
        "the first instance is still live"
    );
    let exit = first_events
        .until(
            "the first instance stops",
            |e| matches!(e, Event::Exited(i, _) if *i == id),
        )
        .await;
    assert!(
        matches!(exit, Event::Exited(_, ExitReason::Fenced { .. })),
        "{exit:?}"
    );
    assert_eq!(
        stored_total(&memory, id),
        10,
        "the fenced write was refused"
    );
    assert_eq!(within("add", third.ask(id, Add(5))).await.unwrap(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_passivates_every_actor_and_refuses_later_messages() {
    let memory = MemoryStorage::new();
    let (counters, _events, _root) = counters(memory.clone(), |b| b);
    let ids: Vec<ActorId> = (0..20).map(|_| ActorId::new_v4()).collect();
    for id in &ids {
        within("add", counters.ask(*id, Add(7))).await.unwrap();
    }
    within("shutdown", counters.shutdown()).await;
    assert_eq!(counters.stats().live, 0);
    assert_eq!(counters.stats().passivations, 20);
    for id in &ids {
        assert_eq!(stored_total(&memory, *id), 7);
    }
    assert!(matches!(
        counters.tell(ids[0], Add(1)),
        Err(VirtualError::Closed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_all_brings_every_stored_actor_of_the_type_back() {
    let memory = MemoryStorage::new();
    let ids: Vec<ActorId> = (0..50).map(|_| ActorId::new_v4()).collect();
    store_totals(&memory, &ids);
    // A snapshot of another type is not touched.
    let other = ActorId::new_v4();
    memory.insert_raw(
        other,
        envelope::Seal::new(uuid::Uuid::new_v4())
            .actor_id(other)
            .sequence(1)
            .seal(b""),
    );
    let (counters, _events, _root) = counters(memory.clone(), |b| b);
    let activated = within("activate_all", counters.activate_all(8))
        .await
        .unwrap();
    assert_eq!(activated, 50);
    assert_eq!(counters.stats().live, 50);
    assert!(!counters.is_live(other));
    for (i, id) in ids.iter().enumerate() {
        assert!(counters.is_live(*id));
        assert_eq!(
            within("get", counters.ask(*id, Get)).await.unwrap(),
            i as i64
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_all_under_a_smaller_cap_visits_every_actor_and_keeps_the_cap() {
    let memory = MemoryStorage::new();
    let ids: Vec<ActorId> = (0..60).map(|_| ActorId::new_v4()).collect();
    store_totals(&memory, &ids);
    let (counters, _events, _root) = counters(memory.clone(), |b| b.max_live(5));
    let activated = within("activate_all", counters.activate_all(16))
        .await
        .unwrap();
    assert_eq!(activated, 60);
    let stats = counters.stats();
    assert_eq!(stats.activations, 60, "{stats:?}");
    assert!(stats.peak_live <= 5, "{stats:?}");
    // Passivated untouched, each comes back with its state.
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            within("get", counters.ask(*id, Get)).await.unwrap(),
            i as i64
        );
    }
    assert!(counters.stats().peak_live <= 5);
}

/// Two actor types with one type uuid: the second is refused at spawn.
#[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
struct Alias {
    value: u8,
}

#[actor("7d1e5c2a-0b3f-4e8d-9a6c-5b4a3c2d1e01", snapshot)]
impl Actor for Alias {}

#[tokio::test]
async fn the_same_type_uuid_on_two_actor_types_is_refused() {
    let memory = MemoryStorage::new();
    let root = RootContext::default();
    // Counter claims the uuid first (this test binary spawns it elsewhere too).
    let (counters, _events, _root) = counters(memory.clone(), |b| b);
    within("activate", counters.activate(ActorId::new_v4()))
        .await
        .unwrap();
    let id = ActorId::new_v4();
    let err = within(
        "spawn",
        root.respawn_or(&memory, id, || (), || Alias { value: 1 }),
    )
    .await
    .unwrap_err();
    match err {
        PersistenceError::DuplicateTypeId {
            id: failed,
            first,
            second,
            ..
        } => {
            assert_eq!(failed, id);
            assert!(
                first.contains("Counter") && second.contains("Alias"),
                "{first} / {second}"
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(!root.is_live(id));
}
