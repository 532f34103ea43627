//! [`PostgresStorage`]: the handle, its lazily started tasks, and the
//! [`PersistentStorage`] implementation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::Pool;
use theta::ActorId;
use theta::persistence::{
    Claim, ClaimMode, OwnerId, PersistentStorage, SharedStorage, SnapshotNotFound, envelope,
};
use tokio::sync::{OnceCell, oneshot};
use uuid::Uuid;

use crate::batch::{Batcher, closed};
use crate::core::{Core, Options};
use crate::error::PostgresError;
use crate::lease::{self, Leases};
use crate::ops::{ClaimOp, ClaimRequest, ReadOp, ReadRequest, WriteOp, WriteRequest};
use crate::options::PostgresBuilder;
use crate::sql::Statements;

/// A [`PersistentStorage`] in a PostgreSQL table, shared by every process that
/// points at it: snapshots, their stamps, ownership claims and leases live in
/// the database, so a second instance of a service sees (and fences) the
/// first.
///
/// - **The write rule in SQL.** Each write is one `INSERT .. ON CONFLICT DO
///   UPDATE` that applies [`envelope::check_write`]'s rule to the row it locks:
///   a stamp not newer than the stored or deleted one is
///   [`StaleSnapshot`](theta::persistence::StaleSnapshot), an epoch older than
///   the id's claim is [`Fenced`](theta::persistence::Fenced). The length
///   ([`MAX_ENVELOPE_LEN`](envelope::MAX_ENVELOPE_LEN)) and the envelope
///   header are checked before anything is sent. A delete keeps the stamps
///   (a tombstone).
/// - **Group commit.** Concurrent writes (and reads, and claims) go out as one
///   statement per round trip, each still getting its own outcome.
/// - **Ownership across processes.** [`try_claim`](PersistentStorage::try_claim)
///   is one statement that bumps the id's epoch and returns its snapshot.
///   Owners hold leases that this storage renews (one statement per `ttl / 3`
///   for all of them); an exclusive claim succeeds once the holder's lease has
///   run out, so the ids of a killed or stalled process move on after the TTL
///   (default 10 s, [`PostgresBuilder::lease_ttl`]). A process that was paused
///   past its lease and wakes up finds its writes refused with `Fenced` for
///   every id claimed elsewhere meanwhile; ids nobody claimed stay its own.
/// - **Durability.** [`Durability::PowerLoss`](theta::persistence::Durability)
///   (default): writes, claims and deletes commit with `synchronous_commit =
///   on` and are acknowledged after the commit (the server refuses to start
///   this level with `fsync = off`). The storage's own connections set the
///   level when they start, over whatever the URL, the role or the database
///   asks for; on a caller's pool each durable statement sets it for its own
///   transaction.
///   [`Durability::ProcessKill`](theta::persistence::Durability): `synchronous_commit
///   = off`: an acknowledged write survives this process dying (the server has
///   it), but a crash of the *database server* can lose the last moments
///   (up to three `wal_writer_delay`s, 600 ms by default) of acknowledged
///   writes; what survives is consistent and older. `Volatile` is refused.
/// - **Faults.** A broken connection fails the operations in flight with a
///   [`PostgresError`] (never an acknowledgement); the pool opens new
///   connections when the server is back. Statements have a server-side
///   timeout and every operation a client-side deadline.
///
/// Clones are cheap handles to the same storage (one pool, one set of tasks).
///
/// # Examples
///
/// ```no_run
/// use theta::ActorId;
/// use theta::persistence::{PersistentStorage, SnapshotNotFound, envelope};
/// use theta_persistence_postgres::PostgresStorage;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> anyhow::Result<()> {
/// let storage = PostgresStorage::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
///
/// let id = ActorId::new_v4();
/// assert!(storage.try_read(id).await.unwrap_err().is::<SnapshotNotFound>());
///
/// let snapshot = envelope::Seal::new(uuid::Uuid::nil()).actor_id(id).sequence(1).seal(b"state");
/// storage.try_write(id, snapshot.clone()).await?; // committed when this returns
/// assert_eq!(storage.try_read(id).await?, snapshot);
///
/// storage.try_close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct PostgresStorage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("table", &self.inner.core.sql.display)
            .field("target", &self.inner.core.target())
            .field("durability", &self.inner.core.options.durability)
            .finish_non_exhaustive()
    }
}

struct Inner {
    core: Arc<Core>,
    /// The pool was made here (and is closed with the storage), not given.
    own_pool: bool,
    leases: Arc<Leases>,
    running: OnceCell<Running>,
    closed: AtomicBool,
}

/// What runs once the tables are checked.
struct Running {
    writes: Batcher<WriteOp>,
    reads: Batcher<ReadOp>,
    claims: Batcher<ClaimOp>,
    stop_renewal: std::sync::Mutex<Option<oneshot::Sender<()>>>,
}

impl PostgresStorage {
    /// Connects to the server at `url` (`postgres://user[:password]@host[:port]/database`,
    /// or the `key=value` form) with the default options, and creates the
    /// tables (`public.theta_snapshots`, `_owners`, `_migrations`) or checks
    /// that they have this build's layout.
    pub async fn connect(url: &str) -> Result<Self, PostgresError> {
        Self::builder(url).connect().await
    }

    /// A builder for a storage connecting to `url`, with options.
    pub fn builder(url: &str) -> PostgresBuilder {
        PostgresBuilder::from_url(url)
    }

    /// A builder for a storage using an existing pool (its connections' own
    /// settings apply, except `synchronous_commit`, which each write, claim
    /// and delete sets for itself, inside its statement). The pool is not
    /// closed by [`try_close`](PersistentStorage::try_close).
    pub fn builder_from_pool(pool: Pool) -> PostgresBuilder {
        PostgresBuilder::from_pool(pool)
    }

    /// A storage using an existing pool, with the default options. Nothing is
    /// sent until the first operation.
    pub fn from_pool(pool: Pool) -> Result<Self, PostgresError> {
        Self::builder_from_pool(pool).build()
    }

    pub(crate) fn new(
        builder: PostgresBuilder,
        pool: Pool,
        target: String,
        own_pool: bool,
    ) -> Self {
        let options = Options {
            lease_ttl: builder.lease_ttl,
            statement_timeout: builder.statement_timeout,
            durability: builder.durability,
            max_batch_rows: builder.max_batch_rows,
            max_batch_bytes: builder.max_batch_bytes,
            max_in_flight: builder.max_in_flight,
        };
        let sql = Statements::new(&builder.schema, &builder.table, !own_pool);
        Self {
            inner: Arc::new(Inner {
                core: Arc::new(Core::new(pool, sql, options, target)),
                own_pool,
                leases: Arc::default(),
                running: OnceCell::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Checks the server now (connects, creates or checks the tables) instead of
    /// at the first operation.
    pub async fn ready(&self) -> Result<(), PostgresError> {
        self.running()
            .await
            .map(drop)
            .map_err(|err| match err.downcast::<PostgresError>() {
                Ok(err) => err,
                Err(other) => PostgresError::Protocol {
                    what: format!("preparing the table {}", self.inner.core.sql.display),
                    target: self.inner.core.target(),
                    detail: format!("{other:#}"),
                },
            })
    }

    /// `schema.table` of the snapshots.
    pub fn qualified_table(&self) -> &str {
        &self.inner.core.sql.display
    }

    /// The pool this storage uses.
    pub fn pool(&self) -> &Pool {
        &self.inner.core.pool
    }

    async fn running(&self) -> Result<&Running, anyhow::Error> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(closed(&inner.core));
        }
        inner
            .running
            .get_or_try_init(|| async {
                crate::schema::prepare(&inner.core, !inner.own_pool).await?;
                let (stop, stopped) = oneshot::channel();
                tokio::spawn(lease::renew(
                    Arc::clone(&inner.core),
                    Arc::clone(&inner.leases),
                    stopped,
                ));
                Ok::<_, anyhow::Error>(Running {
                    writes: Batcher::start(Arc::clone(&inner.core)),
                    reads: Batcher::start(Arc::clone(&inner.core)),
                    claims: Batcher::start(Arc::clone(&inner.core)),
                    stop_renewal: std::sync::Mutex::new(Some(stop)),
                })
            })
            .await
    }
}

/// Checks a write before it is queued: the common size limit first, then the
/// envelope header, then the stamp's range.
fn check(id: ActorId, bytes: Vec<u8>) -> Result<WriteRequest, anyhow::Error> {
    envelope::check_len(id, bytes.len())?;
    let header = envelope::Header::peek(&bytes)?;
    let (Ok(epoch), Ok(sequence)) = (i64::try_from(header.epoch), i64::try_from(header.sequence))
    else {
        return Err(anyhow::Error::new(PostgresError::StampOutOfRange {
            id,
            epoch: header.epoch,
            sequence: header.sequence,
        }));
    };
    Ok(WriteRequest {
        id,
        actor_type: header.actor_type,
        epoch,
        sequence,
        bytes,
    })
}

impl PersistentStorage for PostgresStorage {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        let running = self.running().await?;
        running
            .reads
            .submit(&self.inner.core, ReadRequest { id })
            .await?
            .ok_or_else(|| anyhow::Error::new(SnapshotNotFound))
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        let request = check(id, bytes)?;
        let running = self.running().await?;
        running.writes.submit(&self.inner.core, request).await
    }

    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        self.running().await?;
        let core = &self.inner.core;
        core.query_durable(&core.sql.delete, &[&id])
            .await
            .map(drop)
            .map_err(|failure| core.error(format!("delete of actor {id}"), &failure))
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        self.running().await?;
        let core = &self.inner.core;
        let rows = core
            .query(&core.sql.list, &[])
            .await
            .map_err(|failure| core.error("listing the snapshots".into(), &failure))?;
        rows.iter()
            .map(|row| row.try_get::<_, Uuid>(0).map_err(anyhow::Error::new))
            .collect()
    }

    async fn try_list_type(&self, actor_type: Uuid) -> Result<Vec<ActorId>, anyhow::Error> {
        self.running().await?;
        let core = &self.inner.core;
        let rows = core
            .query(&core.sql.list_type, &[&actor_type])
            .await
            .map_err(|failure| {
                core.error(
                    format!("listing the snapshots of actor type {actor_type}"),
                    &failure,
                )
            })?;
        rows.iter()
            .map(|row| row.try_get::<_, Uuid>(0).map_err(anyhow::Error::new))
            .collect()
    }

    async fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Result<Claim, anyhow::Error> {
        let running = self.running().await?;
        let core = &self.inner.core;
        self.inner.leases.ensure(core, owner).await?;
        let request = ClaimRequest {
            id,
            owner,
            takeover: mode == ClaimMode::Takeover,
        };
        running.claims.submit(core, request).await
    }

    async fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> Result<(), anyhow::Error> {
        self.running().await?;
        let core = &self.inner.core;
        let Ok(epoch) = i64::try_from(epoch) else {
            // No claim of this backend has such an epoch: nothing to release.
            return Ok(());
        };
        core.query(&core.sql.release, &[&id, &owner.as_uuid(), &epoch])
            .await
            .map(drop)
            .map_err(|failure| core.error(format!("release of actor {id} by {owner}"), &failure))
    }

    async fn try_close(&self) -> Result<(), anyhow::Error> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut result = Ok(());
        if let Some(running) = inner.running.get() {
            // Every queued write is finished (and reported to its caller)
            // before anything else is refused.
            running.writes.close().await;
            running.claims.close().await;
            running.reads.close().await;
            if let Some(stop) = running
                .stop_renewal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                let _ = stop.send(());
            }
            result = inner.leases.drop_all(&inner.core).await;
        }
        if inner.own_pool {
            inner.core.pool.close();
        }
        result
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}
