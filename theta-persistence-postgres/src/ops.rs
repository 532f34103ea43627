//! The three batched operations: writes (the write rule in SQL), reads, and
//! claims. Each runs a batch of one as a statement with scalar parameters and
//! a larger batch as one statement over arrays (`unnest`, `= ANY`).

use std::collections::HashMap;
use std::sync::Arc;

use theta::ActorId;
use theta::persistence::{Claim, Fenced, OwnedElsewhere, OwnerId, StaleSnapshot, envelope};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::batch::BatchOp;
use crate::core::{Core, Failure};
use crate::error::PostgresError;
use crate::sql::{WRITE_FENCED, WRITE_STALE, WRITE_STORED};

/// The longest snapshot a read fetches (`octet_length` is checked first).
const READ_LIMIT: i32 = envelope::MAX_ENVELOPE_LEN as i32;

/// One write, checked (length, envelope, stamp range) before it is queued.
pub(crate) struct WriteRequest {
    pub id: ActorId,
    pub actor_type: Uuid,
    pub epoch: i64,
    pub sequence: i64,
    pub bytes: Vec<u8>,
}

pub(crate) struct WriteOp;

impl BatchOp for WriteOp {
    type Request = WriteRequest;
    type Response = ();
    const SHARES_IDS: bool = false;

    fn id(request: &WriteRequest) -> ActorId {
        request.id
    }

    fn describe(id: &ActorId) -> String {
        format!("write of actor {id}")
    }

    fn weight(request: &WriteRequest) -> usize {
        request.bytes.len()
    }

    async fn run(core: Arc<Core>, batch: Vec<WriteRequest>) -> Vec<Result<(), anyhow::Error>> {
        let result = if let [one] = batch.as_slice() {
            core.query_durable(
                &core.sql.write_one,
                &[
                    &one.id,
                    &one.actor_type,
                    &one.epoch,
                    &one.sequence,
                    &one.bytes.as_slice(),
                ],
            )
            .await
        } else {
            let ids: Vec<Uuid> = batch.iter().map(|w| w.id).collect();
            let types: Vec<Uuid> = batch.iter().map(|w| w.actor_type).collect();
            let epochs: Vec<i64> = batch.iter().map(|w| w.epoch).collect();
            let sequences: Vec<i64> = batch.iter().map(|w| w.sequence).collect();
            let bytes: Vec<&[u8]> = batch.iter().map(|w| w.bytes.as_slice()).collect();
            core.query_durable(
                &core.sql.write_many,
                &[&ids, &types, &epochs, &sequences, &bytes],
            )
            .await
        };
        let what = |w: &WriteRequest| write_what(w.id, batch.len());
        let rows = match result {
            Ok(rows) => rows,
            Err(failure) => return fail_all(&core, &batch, &failure, what),
        };
        let mut by_id = index(&rows);
        batch
            .iter()
            .map(|w| {
                let Some(row) = by_id.remove(&w.id) else {
                    return Err(missing(&core, what(w)));
                };
                let outcome: i16 = row.try_get(1)?;
                let claimed: i64 = row.try_get(2)?;
                let stored_sequence: Option<i64> = row.try_get(4)?;
                match outcome {
                    WRITE_STORED => Ok(()),
                    WRITE_FENCED => Err(anyhow::Error::new(Fenced {
                        id: w.id,
                        epoch: w.epoch as u64,
                        current: claimed as u64,
                    })),
                    WRITE_STALE => Err(anyhow::Error::new(StaleSnapshot {
                        id: w.id,
                        stored: stored_sequence.unwrap_or(0) as u64,
                        attempted: w.sequence as u64,
                    })),
                    other => Err(anyhow::Error::new(PostgresError::Protocol {
                        what: what(w),
                        target: core.target(),
                        detail: format!("unknown write outcome {other}"),
                    })),
                }
            })
            .collect()
    }
}

fn write_what(id: ActorId, batch: usize) -> String {
    if batch == 1 {
        format!("write of actor {id}")
    } else {
        format!("write of actor {id} (in a batch of {batch})")
    }
}

/// One read.
pub(crate) struct ReadRequest {
    pub id: ActorId,
}

pub(crate) struct ReadOp;

impl BatchOp for ReadOp {
    type Request = ReadRequest;
    /// `None`: no snapshot stored.
    type Response = Option<Vec<u8>>;
    const SHARES_IDS: bool = true;

    fn id(request: &ReadRequest) -> ActorId {
        request.id
    }

    fn describe(id: &ActorId) -> String {
        format!("read of actor {id}")
    }

    async fn run(
        core: Arc<Core>,
        batch: Vec<ReadRequest>,
    ) -> Vec<Result<Option<Vec<u8>>, anyhow::Error>> {
        let result = if let [one] = batch.as_slice() {
            core.query(&core.sql.read_one, &[&one.id, &READ_LIMIT])
                .await
        } else {
            let mut ids: Vec<Uuid> = batch.iter().map(|r| r.id).collect();
            ids.sort_unstable();
            ids.dedup();
            core.query(&core.sql.read_many, &[&ids, &READ_LIMIT]).await
        };
        let what = |r: &ReadRequest| format!("read of actor {}", r.id);
        let rows = match result {
            Ok(rows) => rows,
            Err(failure) => return fail_all(&core, &batch, &failure, what),
        };
        let by_id = index(&rows);
        batch
            .iter()
            .map(|r| match by_id.get(&r.id) {
                None => Ok(None),
                Some(row) => snapshot_of(&core, r.id, row, 1, 2),
            })
            .collect()
    }
}

/// The snapshot bytes in columns `len_at` (octet_length) and `bytes_at` (the
/// bytes, NULL when over the read limit) of `row`.
fn snapshot_of(
    core: &Core,
    id: ActorId,
    row: &Row,
    len_at: usize,
    bytes_at: usize,
) -> Result<Option<Vec<u8>>, anyhow::Error> {
    let len: Option<i32> = row.try_get(len_at)?;
    let bytes: Option<Vec<u8>> = row.try_get(bytes_at)?;
    match (len, bytes) {
        (Some(_), Some(bytes)) => Ok(Some(bytes)),
        (Some(len), None) => Err(anyhow::Error::new(PostgresError::StoredTooLarge {
            id,
            target: core.target(),
            len: len.into(),
            limit: envelope::MAX_ENVELOPE_LEN,
        })),
        (None, _) => Ok(None),
    }
}

/// One claim.
pub(crate) struct ClaimRequest {
    pub id: ActorId,
    pub owner: OwnerId,
    pub takeover: bool,
}

pub(crate) struct ClaimOp;

impl BatchOp for ClaimOp {
    type Request = ClaimRequest;
    type Response = Claim;
    const SHARES_IDS: bool = false;

    fn id(request: &ClaimRequest) -> ActorId {
        request.id
    }

    fn describe(id: &ActorId) -> String {
        format!("claim of actor {id}")
    }

    fn compatible(first: &ClaimRequest, request: &ClaimRequest) -> bool {
        first.takeover == request.takeover
    }

    async fn run(core: Arc<Core>, batch: Vec<ClaimRequest>) -> Vec<Result<Claim, anyhow::Error>> {
        let takeover = batch.first().is_some_and(|c| c.takeover);
        let result = if let [one] = batch.as_slice() {
            core.query_durable(
                &core.sql.claim_one,
                &[&one.id, &one.owner.as_uuid(), &takeover, &READ_LIMIT],
            )
            .await
        } else {
            let ids: Vec<Uuid> = batch.iter().map(|c| c.id).collect();
            let owners: Vec<Uuid> = batch.iter().map(|c| c.owner.as_uuid()).collect();
            core.query_durable(
                &core.sql.claim_many,
                &[&ids, &owners, &takeover, &READ_LIMIT],
            )
            .await
        };
        let what = |c: &ClaimRequest| format!("claim of actor {} by {}", c.id, c.owner);
        let rows = match result {
            Ok(rows) => rows,
            Err(failure) => return fail_all(&core, &batch, &failure, what),
        };
        let mut by_id = index(&rows);
        batch
            .iter()
            .map(|c| {
                let Some(row) = by_id.remove(&c.id) else {
                    return Err(missing(&core, what(c)));
                };
                let epoch: i64 = row.try_get(1)?;
                let holder: Option<Uuid> = row.try_get(2)?;
                // The statement hands the row to the claimant exactly when it
                // grants the claim (see `sql`).
                if holder == Some(c.owner.as_uuid()) {
                    Ok(Claim {
                        epoch: epoch as u64,
                        snapshot: snapshot_of(&core, c.id, row, 3, 4)?,
                    })
                } else {
                    Err(anyhow::Error::new(OwnedElsewhere {
                        id: c.id,
                        holder: OwnerId::from_uuid(holder.unwrap_or_default()),
                        epoch: epoch as u64,
                    }))
                }
            })
            .collect()
    }
}

/// The returned rows by their first column, the actor id.
fn index(rows: &[Row]) -> HashMap<Uuid, &Row> {
    rows.iter()
        .filter_map(|row| row.try_get::<_, Uuid>(0).ok().map(|id| (id, row)))
        .collect()
}

/// Every request of a batch gets the batch's failure, naming its own actor.
fn fail_all<R, T>(
    core: &Core,
    batch: &[R],
    failure: &Failure,
    what: impl Fn(&R) -> String,
) -> Vec<Result<T, anyhow::Error>> {
    batch
        .iter()
        .map(|r| Err(core.error(what(r), failure)))
        .collect()
}

fn missing(core: &Core, what: String) -> anyhow::Error {
    anyhow::Error::new(PostgresError::Protocol {
        what,
        target: core.target(),
        detail: "the statement returned no row for this id".into(),
    })
}
