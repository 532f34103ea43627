//! Group commit: one task per kind of operation (writes, reads, claims) collects
//! the requests that are waiting and sends them as one statement, with up to
//! `max_in_flight` statements in flight on as many connections.
//!
//! 1. A caller queues its request and waits on its own reply channel. The
//!    task polls the statements in flight itself (no task per batch), so a
//!    save's round trip crosses only that task and the connection's.
//! 2. The task takes every request that is queued into a batch, up to the row
//!    and byte limits. It never waits for more on a timer: it only yields to
//!    the runtime while each yield brings more requests (the rest of a burst
//!    whose tasks are already running), so a lone save goes out after one
//!    yield and a burst of saves shares one statement and one commit.
//!    For writes and claims a batch holds at most one request per id, and no id
//!    that is in a batch still in flight: the rows of one id are changed in the
//!    order the requests came, and two batches never wait on each other's row
//!    locks. Ids are sorted in each batch, so that batches of two processes
//!    lock rows in the same order and cannot deadlock.
//! 3. The batch runs as one statement in its own implicit transaction; each
//!    request gets its own outcome from the rows the statement returns (a
//!    stale or fenced write does not fail the others). Only a failure of the
//!    whole statement (a broken connection, a timeout) fails them all: none of
//!    them is acknowledged.
//! 4. While batches are in flight, new requests queue up and go out together
//!    as soon as a slot frees: the busier the store, the larger the batches.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};

use theta::ActorId;
use theta::persistence::StorageClosed;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::core::Core;
use crate::error::PostgresError;

/// One kind of batched operation.
pub(crate) trait BatchOp: Send + Sync + 'static {
    /// What one caller asks.
    type Request: Send + 'static;
    /// What one caller gets.
    type Response: Send + 'static;

    /// Whether two requests of one id may go in one batch (and while one is in
    /// flight).
    const SHARES_IDS: bool;

    /// The id a request is about.
    fn id(request: &Self::Request) -> ActorId;

    /// What a request of `id` is, for errors ("write of actor …").
    fn describe(id: &ActorId) -> String;

    /// How many bytes a request carries (for the batch byte limit).
    fn weight(request: &Self::Request) -> usize {
        let _ = request;
        0
    }

    /// Whether `request` may join a batch that starts with `first` (claims of
    /// one mode only).
    fn compatible(first: &Self::Request, request: &Self::Request) -> bool {
        let _ = (first, request);
        true
    }

    /// Runs one batch; one outcome per request, in order.
    fn run(
        core: Arc<Core>,
        batch: Vec<Self::Request>,
    ) -> impl Future<Output = Vec<Result<Self::Response, anyhow::Error>>> + Send;
}

type Reply<O> = oneshot::Sender<Result<<O as BatchOp>::Response, anyhow::Error>>;

struct Pending<O: BatchOp> {
    request: O::Request,
    reply: Reply<O>,
}

/// The handle callers queue requests through.
pub(crate) struct Batcher<O: BatchOp> {
    tx: mpsc::UnboundedSender<Pending<O>>,
    close: Arc<Notify>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<O: BatchOp> std::fmt::Debug for Batcher<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<O: BatchOp> Batcher<O> {
    /// Starts the batching task of `O` on the current runtime.
    pub(crate) fn start(core: Arc<Core>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let close = Arc::new(Notify::new());
        let task = tokio::spawn(run::<O>(core, rx, Arc::clone(&close)));
        Self {
            tx,
            close,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Queues `request` and waits for its outcome.
    pub(crate) async fn submit(
        &self,
        core: &Core,
        request: O::Request,
    ) -> Result<O::Response, anyhow::Error> {
        let request_id = O::id(&request);
        let (reply, outcome) = oneshot::channel();
        if self.tx.send(Pending { request, reply }).is_err() {
            return Err(closed(core));
        }
        // Queueing counts too: a request waits at most one statement's
        // deadline plus one statement timeout for its batch to go out.
        let limit = core.options.deadline() + core.options.statement_timeout;
        match tokio::time::timeout(limit, outcome).await {
            Ok(Ok(outcome)) => outcome,
            // The batch task ended without answering: it panicked, or the
            // storage is being dropped.
            Ok(Err(_)) => Err(closed(core)),
            // Not acknowledged; if its batch is sent later, the stamp rule
            // keeps a late commit harmless.
            Err(_) => Err(anyhow::Error::new(PostgresError::Timeout {
                what: O::describe(&request_id),
                target: core.target(),
                after: limit,
            })),
        }
    }

    /// Stops taking requests, finishes every queued and in-flight one, and waits
    /// for the task to end.
    pub(crate) async fn close(&self) {
        self.close.notify_one();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

pub(crate) fn closed(core: &Core) -> anyhow::Error {
    anyhow::Error::new(StorageClosed {
        location: core.location(),
    })
}

/// The most times the batching task yields to let a burst of requests in
/// before it sends a batch.
const BURST_YIELDS: usize = 8;

async fn run<O: BatchOp>(
    core: Arc<Core>,
    mut rx: mpsc::UnboundedReceiver<Pending<O>>,
    close: Arc<Notify>,
) {
    let mut queue: VecDeque<Pending<O>> = VecDeque::new();
    // Polled by this task itself, not spawned: a save's round trip then
    // crosses no task but this one and the connection's.
    let mut in_flight = FuturesUnordered::new();
    let mut busy: HashSet<ActorId> = HashSet::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some(ids) = in_flight.next(), if !in_flight.is_empty() => {
                for id in ids {
                    busy.remove(&id);
                }
            }
            received = rx.recv(), if open => match received {
                Some(pending) => queue.push_back(pending),
                None => open = false,
            },
            () = close.notified(), if open => {
                // Refuse new requests; those already queued are still served.
                rx.close();
            }
            else => {}
        }
        drain(&mut rx, &mut queue);
        if !queue.is_empty() && in_flight.len() < core.options.max_in_flight {
            // A request is ready to go out. Yielding first lets the tasks
            // already woken (the rest of a burst of saves) queue theirs, so that
            // they share this statement (and its commit) instead of waiting for
            // the next: as long as each yield brings more, a few times at most.
            // A lone save pays one yield.
            for _ in 0..BURST_YIELDS {
                tokio::task::yield_now().await;
                if drain(&mut rx, &mut queue) == 0 {
                    break;
                }
            }
        }
        while in_flight.len() < core.options.max_in_flight && !queue.is_empty() {
            let batch = take_batch::<O>(&core, &mut queue, &busy);
            if batch.is_empty() {
                break;
            }
            let ids: Vec<ActorId> = if O::SHARES_IDS {
                Vec::new()
            } else {
                batch.iter().map(|p| O::id(&p.request)).collect()
            };
            busy.extend(ids.iter().copied());
            let core = Arc::clone(&core);
            in_flight.push(async move {
                let (requests, replies): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|p| (p.request, p.reply)).unzip();
                // A batch that panics fails its own requests (their replies
                // are dropped: "closed"), frees its ids, and nothing else.
                let outcomes = AssertUnwindSafe(O::run(core, requests))
                    .catch_unwind()
                    .await;
                if let Ok(outcomes) = outcomes {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(outcome);
                    }
                }
                ids
            });
        }
        if !open && queue.is_empty() && in_flight.is_empty() {
            break;
        }
    }
}

/// Moves every request already sent onto `queue`; how many.
fn drain<O: BatchOp>(
    rx: &mut mpsc::UnboundedReceiver<Pending<O>>,
    queue: &mut VecDeque<Pending<O>>,
) -> usize {
    let before = queue.len();
    while let Ok(pending) = rx.try_recv() {
        queue.push_back(pending);
    }
    queue.len() - before
}

/// Takes the next batch off `queue`: in queue order, skipping requests whose id
/// is busy or already taken (unless ids are shared) and requests that are not
/// compatible with the first one, up to the row and byte limits (at least one
/// request).
fn take_batch<O: BatchOp>(
    core: &Core,
    queue: &mut VecDeque<Pending<O>>,
    busy: &HashSet<ActorId>,
) -> Vec<Pending<O>> {
    let mut batch: Vec<Pending<O>> = Vec::new();
    let mut taken: HashSet<ActorId> = HashSet::new();
    let mut bytes = 0usize;
    let mut kept = VecDeque::with_capacity(queue.len());
    while let Some(pending) = queue.pop_front() {
        let full = batch.len() >= core.options.max_batch_rows
            || (!batch.is_empty() && bytes >= core.options.max_batch_bytes);
        let id = O::id(&pending.request);
        let fits = !full
            && (O::SHARES_IDS || (!busy.contains(&id) && !taken.contains(&id)))
            && batch
                .first()
                .is_none_or(|first| O::compatible(&first.request, &pending.request))
            && (batch.is_empty()
                || bytes + O::weight(&pending.request) <= core.options.max_batch_bytes);
        if fits {
            bytes += O::weight(&pending.request);
            taken.insert(id);
            batch.push(pending);
        } else {
            kept.push_back(pending);
            if full {
                kept.extend(queue.drain(..));
                break;
            }
        }
    }
    *queue = kept;
    if !O::SHARES_IDS {
        batch.sort_by_key(|p| O::id(&p.request));
    }
    batch
}
