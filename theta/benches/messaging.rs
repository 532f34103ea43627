//! Messaging throughput and latency next to raw tokio (the physical limit).
//!
//! - `tell`: 1M tells to one actor, then one ask to confirm all were handled.
//! - `ask`: sequential ask round trips from a task on the runtime.
//! - `spawn`: actors spawned per second.
//! - `channel`: the mailbox channel candidates on the tell workload.
//!
//! All on a 2-worker multi-thread runtime. Run with `cargo bench -p theta --bench messaging`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use theta::prelude::*;
use theta::{Message, Reply};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

const TELLS: u64 = 1_000_000;
const ASKS: u64 = 10_000;
const SPAWNS: u64 = 10_000;

struct Counter {
    total: u64,
}

struct Add(u64);
struct Get;

enum CounterMsg {
    Add(Add, Option<Reply<()>>),
    Get(Get, Option<Reply<u64>>),
}

impl Message<Counter> for Add {
    type Return = ();
    fn into_msg(self, reply: Option<Reply<()>>) -> CounterMsg {
        CounterMsg::Add(self, reply)
    }
}

impl Message<Counter> for Get {
    type Return = u64;
    fn into_msg(self, reply: Option<Reply<u64>>) -> CounterMsg {
        CounterMsg::Get(self, reply)
    }
}

impl Actor for Counter {
    type Msg = CounterMsg;
    const TYPE_ID: uuid::Uuid = uuid::uuid!("a3c1f0f2-1111-4a5b-8c6d-000000000001");

    async fn process_msg(&mut self, ctx: &Context<Self>, msg: CounterMsg) {
        match msg {
            CounterMsg::Add(Add(n), reply) => {
                self.total += n;
                if let Some(r) = reply {
                    r.send(ctx, ());
                }
            }
            CounterMsg::Get(Get, reply) => {
                if let Some(r) = reply {
                    r.send(ctx, self.total);
                }
            }
        }
    }
}

struct Start;

impl ActorArgs for Start {
    type Actor = Counter;
    async fn initialize(_ctx: Context<Counter>, _args: &Self) -> Counter {
        Counter { total: 0 }
    }
}

/// The raw baseline: the same counter as a task on an unbounded channel.
enum RawMsg {
    Add(u64),
    Get(oneshot::Sender<u64>),
}

fn raw_counter() -> mpsc::UnboundedSender<RawMsg> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut total = 0u64;
        while let Some(msg) = rx.recv().await {
            match msg {
                RawMsg::Add(n) => total += n,
                RawMsg::Get(reply) => {
                    let _ = reply.send(total);
                }
            }
        }
    });
    tx
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn tell(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("tell");
    group.throughput(Throughput::Elements(TELLS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("theta", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let root = RootContext::default();
                let actor = root.spawn(Start);
                let start = Instant::now();
                for _ in 0..iters {
                    for i in 0..TELLS {
                        actor.tell(Add(i)).expect("tell");
                    }
                    actor.ask(Get).await.expect("ask");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let tx = raw_counter();
                let start = Instant::now();
                for _ in 0..iters {
                    for i in 0..TELLS {
                        tx.send(RawMsg::Add(i)).expect("send");
                    }
                    let (rtx, rrx) = oneshot::channel();
                    tx.send(RawMsg::Get(rtx)).expect("send");
                    rrx.await.expect("reply");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// Sequential asks from a task on the runtime (as when one actor or a request
/// handler asks another): what is measured is the framework's round trip, not the
/// OS waking the benchmark's `block_on` thread.
fn ask(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("ask");
    group.throughput(Throughput::Elements(ASKS));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("theta", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let actor = RootContext::default().spawn(Start);
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..ASKS {
                            actor.ask(Get).await.expect("ask");
                        }
                    }
                    start.elapsed()
                })
                .await
                .expect("client task")
            })
        })
    });
    group.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let tx = raw_counter();
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..ASKS {
                            let (rtx, rrx) = oneshot::channel();
                            tx.send(RawMsg::Get(rtx)).expect("send");
                            rrx.await.expect("reply");
                        }
                    }
                    start.elapsed()
                })
                .await
                .expect("client task")
            })
        })
    });
    group.finish();
}

fn spawn(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("spawn");
    group.throughput(Throughput::Elements(SPAWNS));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("theta", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let root = RootContext::default();
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let actors: Vec<_> = (0..SPAWNS).map(|_| root.spawn(Start)).collect();
                    elapsed += start.elapsed();
                    drop(actors);
                    root.shutdown(Duration::from_secs(30))
                        .await
                        .expect("shutdown");
                }
                elapsed
            })
        })
    });
    group.bench_function("raw_tokio", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let actors: Vec<_> = (0..SPAWNS).map(|_| raw_counter()).collect();
                    elapsed += start.elapsed();
                    drop(actors);
                }
                elapsed
            })
        })
    });
    group.finish();
}

/// The mailbox candidates on the tell workload: how the channel was chosen.
fn channel(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("channel");
    group.throughput(Throughput::Elements(TELLS));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    group.bench_function("tokio_unbounded", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
                    let consumer = tokio::spawn(async move {
                        let mut total = 0u64;
                        while let Some(n) = rx.recv().await {
                            total += n;
                        }
                        total
                    });
                    for i in 0..TELLS {
                        tx.send(i).expect("send");
                    }
                    drop(tx);
                    consumer.await.expect("consumer");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("flume_unbounded", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let (tx, rx) = flume::unbounded::<u64>();
                    let consumer = tokio::spawn(async move {
                        let mut total = 0u64;
                        while let Ok(n) = rx.recv_async().await {
                            total += n;
                        }
                        total
                    });
                    for i in 0..TELLS {
                        tx.send(i).expect("send");
                    }
                    drop(tx);
                    consumer.await.expect("consumer");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("async_channel_unbounded", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let (tx, rx) = async_channel::unbounded::<u64>();
                    let consumer = tokio::spawn(async move {
                        let mut total = 0u64;
                        while let Ok(n) = rx.recv().await {
                            total += n;
                        }
                        total
                    });
                    for i in 0..TELLS {
                        tx.try_send(i).expect("send");
                    }
                    drop(tx);
                    consumer.await.expect("consumer");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, tell, ask, spawn, channel);
criterion_main!(benches);
