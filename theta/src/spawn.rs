//! The one way an actor comes to life, shared by [`Context`] (children) and
//! [`RootContext`](crate::RootContext) (top-level actors), plain or persistent.

use std::any::type_name;
use std::sync::Arc;

use tracing::Instrument;

use crate::actor::{Actor, Context};
use crate::actor_ref::ActorRef;
use crate::attachment::Attachment;
use crate::cell::ActorCell;
use crate::control::{Children, ParentLink};
use crate::hooks::Hooks;
use crate::id::ActorId;
use crate::registry::{Registry, Reservation};
use crate::task;

/// Where a spawned actor hangs in the tree.
pub(crate) struct Site<'a> {
    pub(crate) registry: &'a Arc<Registry>,
    /// The parent's link and child list; `None` for a top-level actor.
    pub(crate) parent: Option<(Arc<dyn ParentLink>, &'a Children)>,
}

/// The id an actor is spawned under.
pub(crate) enum Id {
    /// A fresh random id.
    Fresh,
    /// An id claimed beforehand (its snapshot was read meanwhile, say).
    Reserved(Reservation),
}

/// Something actors can be spawned from: a context (children) or a root
/// (top-level actors).
pub(crate) trait Spawner {
    /// Where actors spawned from here go.
    fn site(&self) -> Site<'_>;

    /// The registry of the tree.
    fn registry(&self) -> &Arc<Registry>;

    /// Claims `id` in the tree; `None` if it is live.
    fn reserve(&self, id: ActorId) -> Option<Reservation> {
        self.registry().reserve(id)
    }
}

impl Site<'_> {
    /// Starts the actor's task with `hooks` (and `attachment`, for its context).
    pub(crate) fn spawn<A: Actor, H: Hooks<A>>(
        self,
        id: Id,
        hooks: H,
        attachment: Option<Arc<dyn Attachment>>,
    ) -> ActorRef<A> {
        let parent_link = self.parent.as_ref().map(|(link, _)| Arc::clone(link));
        let top = self.parent.is_none();
        let cell = match id {
            Id::Reserved(reservation) => {
                let cell = Arc::new(ActorCell::<A::Msg>::new(
                    reservation.id(),
                    Arc::clone(self.registry),
                    parent_link,
                    attachment,
                ));
                reservation.commit(cell.clone(), top);
                cell
            }
            Id::Fresh => loop {
                let cell = Arc::new(ActorCell::<A::Msg>::new(
                    ActorId::new_v4(),
                    Arc::clone(self.registry),
                    parent_link.clone(),
                    attachment.clone(),
                ));
                if self.registry.insert_new(cell.id, cell.clone(), top) {
                    break cell;
                }
            },
        };
        if let Some((_, children)) = &self.parent {
            children.add(cell.clone());
        }
        let ctx = Context {
            cell: Arc::clone(&cell),
        };
        // Boxed here, once: tokio moves the future through several calls and
        // allocates its task cell cache-aligned, both of which cost in proportion
        // to the future's size; a box keeps that cell as small as a bare task's.
        let task = Box::pin(task::run(ctx, hooks));
        let span = tracing::info_span!("actor", actor.id = %cell.id, actor.type = type_name::<A>());
        let handle = if span.is_disabled() {
            tokio::spawn(task)
        } else {
            tracing::debug!(parent: &span, "actor spawned");
            tokio::spawn(task.instrument(span))
        };
        cell.set_abort(handle.abort_handle());
        ActorRef::from_cell(cell)
    }
}
