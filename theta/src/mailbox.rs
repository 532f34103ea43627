//! The mailbox: an unbounded many-producer, one-consumer queue that allocates
//! nothing until its first item.
//!
//! A live idle actor is mostly its mailbox, so its shape decides what a million
//! actors cost. tokio's unbounded channel allocates a 32-slot block and a
//! cache-padded channel header when it is created (about 1 KiB for a small
//! message type); this mailbox is one mutex-protected `VecDeque` and the
//! receiver's waker, inline in the actor's cell, and its buffer is allocated on
//! the first send.
//!
//! The consumer never pops under the lock: it swaps the whole shared queue with
//! its own empty one ([`Inbox`]) and then works through its batch without
//! locking, so a sender and the receiver meet at the lock once per batch, not
//! once per item, and the senders' lock is uncontended except for the moment of
//! a swap. `benches/runtime.rs` measures it against a bare task on tokio's
//! unbounded channel (tell, ask, memory); the README has the figures.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Locks a mutex whose data stays consistent even if a holder panicked (every
/// critical section here is a plain push, swap or flag change).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shared half: what senders push into.
#[derive(Debug)]
pub(crate) struct Mailbox<T> {
    shared: Mutex<Shared<T>>,
}

#[derive(Debug)]
struct Shared<T> {
    queue: VecDeque<T>,
    /// The receiver, parked on an empty queue.
    waker: Option<Waker>,
    closed: bool,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Self {
            shared: Mutex::new(Shared {
                queue: VecDeque::new(),
                waker: None,
                closed: false,
            }),
        }
    }
}

impl<T> Mailbox<T> {
    /// Queues `item`; gives it back if the mailbox is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let mut shared = lock(&self.shared);
        if shared.closed {
            return Err(item);
        }
        shared.queue.push_back(item);
        let waker = shared.waker.take();
        drop(shared);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Wakes the receiver so that it looks at its condition again (the last
    /// strong ref is gone, say).
    pub(crate) fn wake(&self) {
        let waker = lock(&self.shared).waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Closes the mailbox: later pushes fail. Returns what was still queued, to
    /// be dropped outside the lock (dropping an ask's reply slot wakes its asker).
    pub(crate) fn close(&self) -> VecDeque<T> {
        let mut shared = lock(&self.shared);
        shared.closed = true;
        shared.waker = None;
        std::mem::take(&mut shared.queue)
    }

    /// Moves everything queued into `batch` (empty), or, if nothing is queued,
    /// parks `cx`'s waker unless `finished()` says no item can come any more
    /// (checked under the lock, so a sender that makes it true and then calls
    /// [`wake`](Self::wake) is never missed).
    fn poll_swap(
        &self,
        batch: &mut VecDeque<T>,
        cx: &mut Context<'_>,
        finished: impl FnOnce() -> bool,
    ) -> Poll<bool> {
        let mut shared = lock(&self.shared);
        if !shared.queue.is_empty() {
            std::mem::swap(&mut shared.queue, batch);
            return Poll::Ready(true);
        }
        if shared.closed || finished() {
            return Poll::Ready(false);
        }
        match &shared.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => shared.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The receiving half: the batch being worked through. Lives in the actor's task.
#[derive(Debug)]
pub(crate) struct Inbox<T> {
    batch: VecDeque<T>,
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self {
            batch: VecDeque::new(),
        }
    }
}

impl<T> Inbox<T> {
    /// The next item of `mailbox`; `None` once it is closed or `finished()`
    /// holds with nothing queued.
    pub(crate) async fn recv(
        &mut self,
        mailbox: &Mailbox<T>,
        finished: impl Fn() -> bool,
    ) -> Option<T> {
        if let Some(item) = self.batch.pop_front() {
            return Some(item);
        }
        let got =
            std::future::poll_fn(|cx| mailbox.poll_swap(&mut self.batch, cx, &finished)).await;
        if got { self.batch.pop_front() } else { None }
    }

    /// Drops what is left of the current batch (after the mailbox was closed).
    pub(crate) fn clear(&mut self) -> VecDeque<T> {
        std::mem::take(&mut self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_new_mailbox_allocates_nothing() {
        let mailbox: Mailbox<[u8; 64]> = Mailbox::default();
        assert_eq!(lock(&mailbox.shared).queue.capacity(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn items_from_many_senders_arrive_in_per_sender_order() {
        let mailbox = Arc::new(Mailbox::default());
        let done = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..4u64)
            .map(|s| {
                let mailbox = Arc::clone(&mailbox);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        mailbox.push((s, i)).unwrap();
                    }
                })
            })
            .collect();
        let receiver = {
            let (mailbox, done) = (Arc::clone(&mailbox), Arc::clone(&done));
            tokio::spawn(async move {
                let mut inbox = Inbox::default();
                let mut next = [0u64; 4];
                while let Some((s, i)) = inbox.recv(&mailbox, || done.load(Ordering::Acquire)).await
                {
                    assert_eq!(i, next[s as usize], "sender {s} out of order");
                    next[s as usize] += 1;
                }
                next
            })
        };
        for sender in senders {
            sender.join().unwrap();
        }
        done.store(true, Ordering::Release);
        mailbox.wake();
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), receiver)
            .await
            .expect("the receiver ends once finished and drained")
            .unwrap();
        assert_eq!(next, [10_000; 4]);
    }

    #[test]
    fn a_closed_mailbox_refuses_and_hands_back_what_was_queued() {
        let mailbox = Mailbox::default();
        mailbox.push(1).unwrap();
        mailbox.push(2).unwrap();
        assert_eq!(mailbox.close(), VecDeque::from([1, 2]));
        assert_eq!(mailbox.push(3), Err(3));
    }
}
