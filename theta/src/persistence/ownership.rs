//! Ownership of actor ids in a store: owners, claims, epochs, and the in-process
//! claim table that single-process backends share. The design, the claim modes
//! and how to fence external effects are documented on [`ClaimMode`] (public,
//! re-exported as `theta::persistence::ClaimMode`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crate::id::ActorId;

use super::envelope::{self, Stamp};
use super::errors::OwnedElsewhere;

/// Identifies one owner of actor ids: one [`RootContext`](crate::RootContext) (one
/// instance of a service). Random, so owners never collide across processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerId(uuid::Uuid);

impl OwnerId {
    /// A new random owner id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// The owner id with this uuid (for backends reading one back).
    pub const fn from_uuid(uuid: uuid::Uuid) -> Self {
        Self(uuid)
    }

    /// The uuid.
    pub const fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl Default for OwnerId {
    /// A new random owner id.
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "owner {}", self.0)
    }
}

/// What a claim does when another live owner holds the id; and how ownership
/// of actor ids works.
///
/// # The design
///
/// Every activation of a persistent actor *claims* its id in the storage
/// ([`PersistentStorage::try_claim`](super::PersistentStorage::try_claim)) and gets
/// a new **owner epoch**, higher than any epoch the id had before. Every snapshot
/// it writes carries that epoch in its envelope, and the store applies one rule
/// atomically with each write ([`envelope::check_write`](super::envelope::check_write)):
///
/// - a write whose epoch is older than the id's current claim is refused with
///   [`Fenced`](super::Fenced): the writer is a stale owner (its instance was
///   taken over while it was paused, partitioned or slow), and the actor stops
///   with [`ExitReason::Fenced`](crate::ExitReason::Fenced); replies waiting for
///   that save fail, so nothing is acknowledged that is not stored;
/// - a write whose (epoch, sequence) [`Stamp`] is not newer than the stored one
///   (or the last deleted one) is refused with
///   [`StaleSnapshot`](super::StaleSnapshot).
///
/// So at most one instance at a time gets writes of an id acknowledged, whatever
/// the number of processes. A claim is [`Exclusive`](Self::Exclusive) (refused
/// with [`OwnedElsewhere`] while another live owner holds the id) or
/// [`Takeover`](Self::Takeover) (always granted; fences the previous holder). A
/// claim ends with [`try_release`](super::PersistentStorage::try_release) when
/// the actor stops. How a backend tells that a holder is alive is its own: the
/// single-process backends hold claims in memory (a second process cannot open
/// their store at all), a networked backend uses leases that a crashed process
/// stops renewing, so its ids can be claimed again once its lease ran out.
///
/// # Fencing side effects
///
/// A stale owner only learns that it is stale at its next write, so an effect it
/// causes before that (a row in another system, an HTTP call) is not fenced by
/// the store. The owner epoch is a fencing token for those too: a handler reads
/// it with [`owner_epoch`](super::PersistentContextExt::owner_epoch) and sends it
/// with the effect, and the receiving system refuses an epoch older than the
/// newest it has seen for the id (a conditional insert into an outbox keyed by
/// id and epoch, an idempotency key that carries the epoch, ...).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{LazyLock, Mutex};
///
/// use serde::{Deserialize, Serialize};
/// use theta::persistence::{ClaimMode, MemoryStorage, SharedStorage, SnapshotPolicy};
/// use theta::prelude::*;
///
/// /// Another system: it accepts a payment only with the newest owner epoch it
/// /// has seen for the account (in SQL: an insert guarded by
/// /// `epoch >= (SELECT max(epoch) FROM outbox WHERE account = $1)`).
/// #[derive(Default)]
/// struct Outbox {
///     newest: HashMap<ActorId, u64>,
///     rows: Vec<(ActorId, u64, i64)>,
/// }
///
/// static OUTBOX: LazyLock<Mutex<Outbox>> = LazyLock::new(Mutex::default);
///
/// fn pay(account: ActorId, epoch: u64, amount: i64) -> Result<(), String> {
///     let mut outbox = OUTBOX.lock().unwrap();
///     let newest = outbox.newest.entry(account).or_insert(0);
///     if epoch < *newest {
///         return Err(format!("{account}: epoch {epoch} is stale, {newest} owns it"));
///     }
///     *newest = epoch;
///     outbox.rows.push((account, epoch, amount));
///     Ok(())
/// }
///
/// #[derive(Debug, Clone, Serialize, Deserialize, ActorArgs)]
/// struct Account {
///     balance: i64,
/// }
///
/// #[derive(Debug)]
/// struct PayOut(i64);
/// #[derive(Debug)]
/// struct Deposit(i64);
///
/// #[actor("2f0e6c1a-7b3d-4e5f-9a8b-0c1d2e3f4a5b", snapshot)]
/// impl Actor for Account {
///     const _: () = {
///         async |PayOut(amount): PayOut| -> Result<i64, String> {
///             // The same token the store checks on this activation's saves.
///             let epoch = ctx.owner_epoch().ok_or("the storage cannot fence")?;
///             pay(ctx.id(), epoch, amount)?;
///             self.balance -= amount;
///             Ok(self.balance)
///         };
///         async |Deposit(amount): Deposit| -> i64 {
///             self.balance += amount;
///             self.balance
///         };
///     };
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Save after every message; an answered ask means a stored change.
/// let storage = SharedStorage::new(MemoryStorage::new())
///     .with_policy(SnapshotPolicy::new().every_n_messages(1).confirm_replies());
/// let id = ActorId::new_v4();
/// let open = || Account { balance: 100 };
///
/// // Instance one of the service owns the account and pays out.
/// let one = RootContext::default();
/// let stale = one.respawn_or(&storage, id, || (), open).await?;
/// assert_eq!(stale.ask(PayOut(10)).await?, Ok(90));
///
/// // Instance two takes the account over (failover) while instance one still
/// // runs (paused, partitioned...), and pays out under a newer epoch.
/// let two = RootContext::default();
/// let failover = storage.clone().with_claim_mode(ClaimMode::Takeover);
/// let owner = two.respawn_or(&failover, id, || (), open).await?;
/// assert_eq!(owner.ask(PayOut(5)).await?, Ok(85));
///
/// // Instance one does not know yet. Its next payment is refused by the outbox,
/// // with the same epoch its next save would be refused with by the store.
/// let refused = stale.ask(PayOut(50)).await?;
/// assert!(refused.unwrap_err().contains("is stale"));
/// let rows = OUTBOX.lock().unwrap().rows.clone();
/// assert_eq!(rows.iter().map(|r| r.2).collect::<Vec<_>>(), [10, 5]);
/// assert!(rows[0].1 < rows[1].1, "the takeover's epoch is newer");
///
/// // And its next save is refused by the store: it stops, fenced, and its
/// // ask fails instead of acknowledging a change that was not stored.
/// assert!(stale.ask(Deposit(1)).await.is_err());
/// assert!(matches!(stale.stopped().await, ExitReason::Fenced { .. }));
/// assert_eq!(owner.ask(Deposit(1)).await?, 86);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ClaimMode {
    /// Refuse with [`OwnedElsewhere`] (the default): an id runs in one place; a
    /// second activation elsewhere fails instead of fighting over it.
    #[default]
    Exclusive,
    /// Take the id over: the new claim gets a higher epoch and the previous holder
    /// is fenced (its next write is refused and it stops). For failover, when the
    /// caller knows (or has decided) that the previous holder is gone.
    Takeover,
}

/// A granted claim: the owner epoch, and the snapshot the store holds for the id
/// at that moment (`None` if there is none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The owner epoch of this claim; every snapshot written under it carries it.
    pub epoch: u64,
    /// The stored snapshot, read under the claim (`None`: no snapshot stored).
    pub snapshot: Option<Vec<u8>>,
}

/// What a single-process store knows about the ownership of one id.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// The newest epoch granted (or written).
    claimed: u64,
    /// Who holds the claim; `None` once released.
    holder: Option<OwnerId>,
    /// The stamp of the last deleted snapshot, while no newer one is stored: so
    /// a stale writer cannot resurrect a deleted id.
    tombstone: Option<Stamp>,
}

/// The claim table of a single-process backend (memory, fs, sled): claims are held
/// in memory, which is exact when only one process can have the store open.
///
/// Epochs start above `floor`: a backend keeps a durable generation that it bumps
/// at every open and passes `generation << 32`, so epochs keep growing across
/// restarts without a durable write per claim.
///
/// The table does not serialize writes: the backend calls [`check_write`] and
/// [`record_write`] for one id without another write of that id in between (its
/// committer thread, its map lock, ...).
///
/// [`check_write`]: Self::check_write
/// [`record_write`]: Self::record_write
#[derive(Debug, Default)]
pub struct ClaimTable {
    floor: u64,
    records: Mutex<HashMap<ActorId, Record>>,
}

impl ClaimTable {
    /// An empty table whose epochs start above `floor`.
    pub fn new(floor: u64) -> Self {
        Self {
            floor,
            records: Mutex::new(HashMap::new()),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<ActorId, Record>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Claims `id` for `owner`; `stored` is the stamp of the snapshot the store
    /// holds for it (if any). Returns the new epoch, or [`OwnedElsewhere`] (in an
    /// `anyhow::Error`) in [`ClaimMode::Exclusive`] while another owner holds it.
    pub fn claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
        stored: Option<Stamp>,
    ) -> Result<u64, anyhow::Error> {
        let mut records = self.records();
        let record = records.entry(id).or_insert(Record {
            claimed: 0,
            holder: None,
            tombstone: None,
        });
        if let (ClaimMode::Exclusive, Some(holder)) = (mode, record.holder)
            && holder != owner
        {
            return Err(anyhow::Error::new(OwnedElsewhere {
                id,
                holder,
                epoch: record.claimed,
            }));
        }
        let newest = [
            record.claimed,
            self.floor,
            stored.map_or(0, |s| s.epoch),
            record.tombstone.map_or(0, |s| s.epoch),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        record.claimed = newest.saturating_add(1);
        record.holder = Some(owner);
        Ok(record.claimed)
    }

    /// Ends `owner`'s claim of `id` under `epoch`; a no-op if the claim has moved
    /// on. `stored` is the stamp of the snapshot the store holds now.
    pub fn release(&self, id: ActorId, owner: OwnerId, epoch: u64, stored: Option<Stamp>) {
        let mut records = self.records();
        let Some(record) = records.get_mut(&id) else {
            return;
        };
        if record.holder != Some(owner) || record.claimed != epoch {
            return;
        }
        record.holder = None;
        // Once the stored snapshot carries the claimed epoch, it fences older
        // owners by itself (their stamps are older): the record can go.
        if record.tombstone.is_none() && stored.is_some_and(|s| s.epoch >= record.claimed) {
            records.remove(&id);
        }
    }

    /// The write rule for `incoming`, given the stamp of the stored snapshot
    /// (`None` if nothing is stored): see
    /// [`envelope::check_write`](super::envelope::check_write). Returns the
    /// incoming stamp; nothing is recorded.
    pub fn check_write(
        &self,
        id: ActorId,
        stored: Option<Stamp>,
        incoming: &[u8],
    ) -> Result<Stamp, anyhow::Error> {
        let (claimed, tombstone) = self
            .records()
            .get(&id)
            .map_or((0, None), |r| (r.claimed, r.tombstone));
        envelope::check_write(id, stored.max(tombstone), claimed, incoming)
    }

    /// Records that a write of `stamp` (accepted by [`check_write`](Self::check_write))
    /// is stored.
    pub fn record_write(&self, id: ActorId, stamp: Stamp) {
        let mut records = self.records();
        if let Some(record) = records.get_mut(&id) {
            record.tombstone = None;
            record.claimed = record.claimed.max(stamp.epoch);
        } else if stamp.epoch > 0 {
            // An epoch written without a claim here (a claim from before a
            // reopen cannot exist, so this is a writer that claimed elsewhere):
            // remember it so that older epochs stay fenced.
            records.insert(
                id,
                Record {
                    claimed: stamp.epoch,
                    holder: None,
                    tombstone: None,
                },
            );
        }
    }

    /// Records that the snapshot of `id`, of stamp `deleted` (if one was stored),
    /// was deleted: later writes must still be newer than it.
    pub fn record_delete(&self, id: ActorId, deleted: Option<Stamp>) {
        let mut records = self.records();
        let record = records.entry(id).or_insert(Record {
            claimed: 0,
            holder: None,
            tombstone: None,
        });
        record.tombstone = record.tombstone.max(deleted);
    }

    /// The current claim of `id`: its epoch and holder, if any.
    pub fn holder(&self, id: ActorId) -> Option<(OwnerId, u64)> {
        let records = self.records();
        let record = records.get(&id)?;
        record.holder.map(|h| (h, record.claimed))
    }

    /// Number of ids the table keeps a record of (claimed, or deleted in this
    /// process).
    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// Whether the table keeps no record.
    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::{Fenced, StaleSnapshot, envelope::Seal};

    fn at(id: ActorId, epoch: u64, sequence: u64) -> Vec<u8> {
        Seal::new(uuid::Uuid::nil())
            .actor_id(id)
            .epoch(epoch)
            .sequence(sequence)
            .seal(b"x")
    }

    #[test]
    fn exclusive_claims_are_refused_while_held_and_takeover_fences() {
        let table = ClaimTable::new(0);
        let id = ActorId::from_u128(1);
        let (a, b) = (OwnerId::new(), OwnerId::new());
        let first = table.claim(id, a, ClaimMode::Exclusive, None).unwrap();
        let held = table.claim(id, b, ClaimMode::Exclusive, None).unwrap_err();
        assert_eq!(
            held.downcast_ref::<OwnedElsewhere>(),
            Some(&OwnedElsewhere {
                id,
                holder: a,
                epoch: first
            })
        );
        let second = table.claim(id, b, ClaimMode::Takeover, None).unwrap();
        assert!(second > first);
        let fenced = table.check_write(id, None, &at(id, first, 1)).unwrap_err();
        assert!(fenced.is::<Fenced>());
        let stamp = table.check_write(id, None, &at(id, second, 1)).unwrap();
        table.record_write(id, stamp);
        // The fenced owner's release does not end the new claim.
        table.release(id, a, first, Some(stamp));
        assert_eq!(table.holder(id), Some((b, second)));
        table.release(id, b, second, Some(stamp));
        assert_eq!(table.holder(id), None);
        assert!(table.is_empty(), "the stored stamp fences on its own");
        let third = table
            .claim(id, a, ClaimMode::Exclusive, Some(stamp))
            .unwrap();
        assert!(third > second);
    }

    #[test]
    fn epochs_start_above_the_floor() {
        let table = ClaimTable::new(7 << 32);
        let id = ActorId::from_u128(2);
        assert_eq!(
            table
                .claim(id, OwnerId::new(), ClaimMode::Exclusive, None)
                .unwrap(),
            (7 << 32) + 1
        );
    }

    #[test]
    fn a_deleted_id_cannot_be_resurrected_by_a_stale_writer() {
        let table = ClaimTable::new(0);
        let id = ActorId::from_u128(3);
        table.record_delete(id, Some(Stamp::new(0, 5)));
        let stale = table.check_write(id, None, &at(id, 0, 3)).unwrap_err();
        assert!(stale.is::<StaleSnapshot>());
        assert!(table.check_write(id, None, &at(id, 0, 6)).is_ok());
        // A new claim starts above the deleted epoch.
        let epoch = table
            .claim(id, OwnerId::new(), ClaimMode::Exclusive, None)
            .unwrap();
        assert!(table.check_write(id, None, &at(id, epoch, 1)).is_ok());
    }
}
