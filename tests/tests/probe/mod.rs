//! A hand-written actor (no macro) that reports its life through an event
//! channel, for the runtime tests. Needs `mod common;` in the test binary.

use std::time::Duration;

use theta::prelude::*;
use theta::{Message, Reply, RestartLimit};
use tokio::sync::mpsc;

use crate::common::within;

/// What a [`Probe`] reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Initialized {
        tag: &'static str,
        count: u32,
    },
    Started(&'static str),
    Restarted(&'static str),
    Exited(&'static str, ExitReason),
    /// Sent in `on_exit` just before `Exited`: the log the probe ended with.
    ExitLog {
        tag: &'static str,
        log: Vec<u64>,
    },
    Supervised {
        tag: &'static str,
        failure: Failure,
    },
}

/// Receives [`Event`]s in order.
pub struct Events(
    #[allow(
        dead_code,
        reason = "runtime_messaging only keeps the receiver open; the other runtime tests read it"
    )]
    pub mpsc::UnboundedReceiver<Event>,
);

#[allow(
    dead_code,
    reason = "each runtime test binary uses some of these: lifecycle `next` and `until`, \
              supervision `until`, messaging neither"
)]
impl Events {
    pub async fn next(&mut self) -> Event {
        within("an event", self.0.recv())
            .await
            .expect("event channel closed")
    }

    /// Skips events until one matches.
    pub async fn until(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        loop {
            let ev = within(what, self.0.recv())
                .await
                .expect("event channel closed");
            if pred(&ev) {
                return ev;
            }
        }
    }
}

pub fn events() -> (mpsc::UnboundedSender<Event>, Events) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, Events(rx))
}

/// A hand-written actor: a log of numbers plus knobs for failure tests.
pub struct Probe {
    pub tag: &'static str,
    pub log: Vec<u64>,
    pub events: mpsc::UnboundedSender<Event>,
    pub decision: Decision,
}

#[derive(Clone)]
pub struct ProbeArgs {
    pub tag: &'static str,
    pub events: mpsc::UnboundedSender<Event>,
    /// What this probe decides for its failing children.
    pub decision: Decision,
    /// Panic in `initialize` on every attempt.
    pub init_panics: bool,
    pub inits: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl ProbeArgs {
    pub fn new(tag: &'static str, events: mpsc::UnboundedSender<Event>) -> Self {
        Self {
            tag,
            events,
            decision: Decision::Restart,
            init_panics: false,
            inits: Default::default(),
        }
    }
}

impl ActorArgs for ProbeArgs {
    type Actor = Probe;

    async fn initialize(_ctx: Context<Probe>, args: &Self) -> Probe {
        let count = args.inits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let _ = args.events.send(Event::Initialized {
            tag: args.tag,
            count,
        });
        if args.init_panics {
            panic!("{} refuses to start", args.tag);
        }
        Probe {
            tag: args.tag,
            log: Vec::new(),
            events: args.events.clone(),
            decision: args.decision,
        }
    }
}

/// Append a number (optionally tagged by sender) to the log.
pub struct Push(pub u64);
/// The whole log.
pub struct Get;
/// Panic in the handler.
pub struct Panic;
/// Never return.
pub struct Hang;
/// `ctx.stop()` from inside the handler.
pub struct StopSelf;
/// Spawn a child probe; returns its ref.
pub struct SpawnChild(pub ProbeArgs);

pub enum ProbeMsg {
    Push(Push, Option<Reply<()>>),
    Get(Get, Option<Reply<Vec<u64>>>),
    Panic(Panic, Option<Reply<()>>),
    Hang(Hang, Option<Reply<()>>),
    StopSelf(StopSelf, Option<Reply<()>>),
    SpawnChild(SpawnChild, Option<Reply<ActorRef<Probe>>>),
}

macro_rules! message {
    ($ty:ident, $ret:ty) => {
        impl Message<Probe> for $ty {
            type Return = $ret;
            fn into_msg(self, reply: Option<Reply<$ret>>) -> ProbeMsg {
                ProbeMsg::$ty(self, reply)
            }
        }
    };
}

message!(Push, ());
message!(Get, Vec<u64>);
message!(Panic, ());
message!(Hang, ());
message!(StopSelf, ());
message!(SpawnChild, ActorRef<Probe>);

impl Actor for Probe {
    type Msg = ProbeMsg;
    const TYPE_ID: uuid::Uuid = uuid::uuid!("0e6f6a55-5f0c-4f8e-9a43-1d0c2d9e0001");

    async fn process_msg(&mut self, ctx: &Context<Self>, msg: ProbeMsg) {
        match msg {
            ProbeMsg::Push(Push(n), reply) => {
                self.log.push(n);
                if let Some(r) = reply {
                    r.send(ctx, ());
                }
            }
            ProbeMsg::Get(Get, reply) => {
                if let Some(r) = reply {
                    r.send(ctx, self.log.clone());
                }
            }
            ProbeMsg::Panic(Panic, reply) => {
                // Dropped unanswered: the asker sees `NoReply`.
                drop(reply);
                panic!("{} was told to panic", self.tag)
            }
            ProbeMsg::Hang(Hang, reply) => {
                // Held, never answered.
                let _reply = reply;
                std::future::pending::<()>().await
            }
            ProbeMsg::StopSelf(StopSelf, reply) => {
                ctx.stop();
                if let Some(r) = reply {
                    r.send(ctx, ());
                }
            }
            ProbeMsg::SpawnChild(SpawnChild(args), reply) => {
                let child = ctx.spawn(args);
                if let Some(r) = reply {
                    r.send(ctx, child);
                }
            }
        }
    }

    async fn on_start(&mut self, _ctx: &Context<Self>) {
        let _ = self.events.send(Event::Started(self.tag));
    }

    async fn on_restart(&mut self, _ctx: &Context<Self>) {
        let _ = self.events.send(Event::Restarted(self.tag));
    }

    async fn on_exit(&mut self, _ctx: &Context<Self>, reason: &ExitReason) {
        let _ = self.events.send(Event::ExitLog {
            tag: self.tag,
            log: std::mem::take(&mut self.log),
        });
        let _ = self.events.send(Event::Exited(self.tag, reason.clone()));
    }

    fn supervise(&mut self, _ctx: &Context<Self>, failure: &Failure) -> Decision {
        let _ = self.events.send(Event::Supervised {
            tag: self.tag,
            failure: failure.clone(),
        });
        self.decision
    }

    fn restart_limit() -> RestartLimit {
        RestartLimit::new(3, Duration::from_secs(60))
    }
}
