//! The actor task: build the actor, serve its mailbox, supervise its failures,
//! tear it down.
//!
//! The hot path is [`serve`]: take the next item, run the handler, let the hooks
//! look at the new state (nothing for plain actors), repeat. One `catch_unwind`
//! wraps the whole loop, not each message: a panic unwinds out of `serve`, and
//! `phase` says where it was.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::actor::{Actor, Context, RestartLimit};
use crate::cell::{ChildFailed, Item, Signal};
use crate::hooks::Hooks;
use crate::mailbox::Inbox;
use crate::supervision::{Decision, ExitReason, Failure, FailureCause, FailurePhase};

pin_project_lite::pin_project! {
    /// [`catch`]'s future: `F`, with a panic in any of its polls turned into
    /// `Err(payload)`. A struct rather than an `async fn`, which would hold `F`
    /// twice in its state (the argument and the pinned local), and this state is
    /// part of every actor's task.
    pub(crate) struct Catch<F> {
        #[pin]
        fut: F,
    }
}

impl<F: Future> Future for Catch<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let fut = self.project().fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Polls `fut`, turning a panic inside it into `Err(payload)`.
pub(crate) fn catch<F: Future>(fut: F) -> Catch<F> {
    Catch { fut }
}

enum Served {
    Exit(ExitReason),
    Failed(Failure),
}

enum Next {
    Restart,
    Exit(ExitReason),
}

/// Owns the actor's context for the task; marks the actor stopped and frees its
/// id when the task ends, also when it is aborted.
struct ExitGuard<A: Actor> {
    ctx: Context<A>,
    reason: Option<ExitReason>,
}

impl<A: Actor> Drop for ExitGuard<A> {
    fn drop(&mut self) {
        let cell = &self.ctx.cell;
        let reason = self.reason.take().unwrap_or(ExitReason::Aborted);
        tracing::debug!(actor.id = %cell.id, reason = %reason, "actor stopped");
        // An aborted task never closed its mailbox: close it now, so sends fail.
        drop(cell.mailbox.close());
        // Free the id before announcing the exit: whoever awaits `stopped()` may
        // respawn the same id right away. Count the actor out only after that, so
        // `shutdown` returns when every exit is visible.
        cell.registry.deregister(cell.id);
        cell.lifecycle.set_exit(reason);
        cell.registry.exited();
    }
}

/// The restarts within the actor's [`RestartLimit`] window. Created at the
/// first failure: most actors never fail, and this is part of every task.
#[derive(Default)]
#[allow(clippy::box_collection)] // one pointer in every task, not a 32-byte deque
struct Restarts(Option<Box<VecDeque<Instant>>>);

impl Restarts {
    fn try_restart(&mut self, limit: RestartLimit) -> bool {
        let times = self.0.get_or_insert_with(Box::default);
        let now = Instant::now();
        while let Some(&first) = times.front() {
            if now.duration_since(first) > limit.within {
                times.pop_front();
            } else {
                break;
            }
        }
        if times.len() as u64 >= u64::from(limit.max_restarts) {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// The whole life of one actor.
pub(crate) async fn run<A: Actor, H: Hooks<A>>(ctx: Context<A>, mut hooks: H) {
    let mut guard = ExitGuard { ctx, reason: None };
    let ctx = &guard.ctx;
    let mut inbox = Inbox::default();
    let mut restarts = Restarts::default();
    let mut restarted = false;

    let (actor, reason) = 'life: loop {
        let failure = match catch(hooks.init(ctx)).await {
            Ok(Ok(mut actor)) => {
                let hook = if restarted {
                    catch(actor.on_restart(ctx)).await
                } else {
                    catch(actor.on_start(ctx)).await
                };
                let failure = match hook {
                    Ok(()) => {
                        let mut phase = FailurePhase::Handler;
                        let served =
                            catch(serve(&mut actor, ctx, &mut inbox, &mut hooks, &mut phase)).await;
                        match served {
                            Ok(Served::Exit(reason)) => break 'life (Some(actor), reason),
                            Ok(Served::Failed(failure)) => failure,
                            Err(payload) => ctx.failure_from_panic(phase, &*payload),
                        }
                    }
                    Err(payload) => ctx.failure_from_panic(FailurePhase::StartHook, &*payload),
                };
                match Box::pin(decide(ctx, failure, &mut restarts)).await {
                    Next::Restart => {
                        drop(actor);
                        restarted = true;
                        stop_children(ctx).await;
                        hooks.before_restart().await;
                        continue 'life;
                    }
                    Next::Exit(reason) => break 'life (Some(actor), reason),
                }
            }
            Ok(Err(msg)) => ctx.failure(FailurePhase::Initialize, FailureCause::Error(msg)),
            Err(payload) => ctx.failure_from_panic(FailurePhase::Initialize, &*payload),
        };
        match Box::pin(decide(ctx, failure, &mut restarts)).await {
            Next::Restart => {
                restarted = true;
                stop_children(ctx).await;
                hooks.before_restart().await;
            }
            Next::Exit(reason) => break 'life (None, reason),
        }
    };

    // Close the mailbox first: later sends fail at once, queued asks see their reply
    // dropped, and queued child-failure reports resolve to "stop".
    let unhandled = ctx.cell.mailbox.close();
    let batch = inbox.clear();
    ctx.cell
        .lifecycle
        .count_unhandled(count_messages(&unhandled) + count_messages(&batch));
    drop((unhandled, batch));
    stop_children(ctx).await;
    if let Some(mut actor) = actor {
        match catch(actor.on_exit(ctx, &reason)).await {
            Ok(()) if reason.is_graceful() => hooks.on_graceful_stop(&actor, ctx),
            Ok(()) => {}
            // A state `on_exit` panicked in the middle of is not saved.
            Err(payload) => {
                let failure = ctx.failure_from_panic(FailurePhase::Handler, &*payload);
                tracing::error!(failure = %failure, "on_exit panicked; no final snapshot");
            }
        }
    }
    hooks.finish(&reason).await;
    guard.reason = Some(reason);
    drop(guard);
    hooks.exited();
}

/// How many of `items` are told messages (an ask's sender learns of the drop
/// itself; signals are not messages).
fn count_messages<M>(items: &VecDeque<Item<M>>) -> usize {
    items
        .iter()
        .filter(|item| matches!(item, Item::Msg(_)))
        .count()
}

/// Stops the actor's children and waits for them. Boxed, and skipped when there
/// are none: most actors have no children, and this wait would otherwise be part
/// of every actor's task state.
async fn stop_children<A: Actor>(ctx: &Context<A>) {
    if ctx.cell.children.is_empty() {
        return;
    }
    Box::pin(ctx.cell.children.stop_all()).await;
}

/// The mailbox loop. Runs inside `catch`: a panic in a handler or in `supervise`
/// unwinds out of it, with `phase` telling which.
async fn serve<A: Actor, H: Hooks<A>>(
    actor: &mut A,
    ctx: &Context<A>,
    inbox: &mut Inbox<Item<A::Msg>>,
    hooks: &mut H,
    phase: &mut FailurePhase,
) -> Served {
    let cell = &*ctx.cell;
    while let Some(item) = inbox.recv(&cell.mailbox, || cell.unreferenced()).await {
        match item {
            Item::Msg(msg) | Item::Ask(msg) => {
                actor.process_msg(ctx, msg).await;
                hooks.after_turn(actor, ctx);
            }
            Item::Signal(Signal::Stop) => return Served::Exit(cell.lifecycle.stop_reason()),
            Item::Signal(Signal::ChildFailed(report)) => {
                let ChildFailed { failure, decision } = *report;
                *phase = FailurePhase::Supervise;
                let d = actor.supervise(ctx, &failure);
                *phase = FailurePhase::Handler;
                let _ = decision.send(d);
                if d == Decision::Escalate {
                    return Served::Failed(ctx.failure(
                        FailurePhase::Supervise,
                        FailureCause::Escalated(Box::new(failure)),
                    ));
                }
            }
            Item::Signal(Signal::Wake(token)) => {
                if let Some(reason) = hooks.on_wake(actor, ctx, token).await {
                    return Served::Exit(reason);
                }
            }
        }
        if cell.stop_now_requested() {
            return Served::Exit(cell.lifecycle.stop_reason());
        }
    }
    Served::Exit(ExitReason::RefsDropped)
}

/// Reports `failure` to the parent (top-level actors: stop) and turns its
/// decision into the next step, within the restart limit.
async fn decide<A: Actor>(ctx: &Context<A>, failure: Failure, restarts: &mut Restarts) -> Next {
    tracing::error!(failure = %failure, "actor failed");
    let decision = match &ctx.cell.parent {
        Some(parent) => {
            let (tx, rx) = oneshot::channel();
            if parent.report_failure(failure.clone(), tx) {
                tokio::select! {
                    decision = rx => decision.unwrap_or(Decision::Stop),
                    () = ctx.cell.lifecycle.stop_requested() => Decision::Stop,
                }
            } else {
                Decision::Stop
            }
        }
        None => Decision::Stop,
    };
    let failure = Arc::new(failure);
    match decision {
        Decision::Restart if restarts.try_restart(A::restart_limit()) => {
            tracing::info!("restarting actor");
            Next::Restart
        }
        Decision::Restart => {
            tracing::error!("restart limit reached; stopping actor");
            Next::Exit(ExitReason::RestartLimit(failure))
        }
        Decision::Stop => Next::Exit(ExitReason::Failed(failure)),
        Decision::Escalate => Next::Exit(ExitReason::Escalated(failure)),
    }
}
