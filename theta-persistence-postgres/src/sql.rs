//! The SQL of the backend: the table layout (versioned) and every statement,
//! built once per storage from its schema and table names.
//!
//! Stamps are stored in `bigint` columns (epoch, sequence); the write rule and
//! the claim rule run inside one `INSERT .. ON CONFLICT DO UPDATE` each, which
//! locks the row and evaluates the rule on its newest committed version.
//!
//! Refused writes and claims still *update* the row, to the values it has:
//! that way the statement's `RETURNING` reports, from the very row version the
//! rule was evaluated on, why a write was refused (`last_write`: 1 fenced, 2
//! stale) or who holds a refused claim, in the same round trip and without a
//! second read that could see another version.

/// The newest table layout this build creates and reads.
pub(crate) const LAYOUT_VERSION: i32 = 1;

/// `last_write` codes.
pub(crate) const WRITE_STORED: i16 = 0;
pub(crate) const WRITE_FENCED: i16 = 1;
pub(crate) const WRITE_STALE: i16 = 2;

/// Every statement of one storage.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `schema.table`, unquoted, for messages.
    pub display: String,
    /// `schema.table_migrations`, unquoted, for messages.
    pub migrations_display: String,
    pub schema: String,
    pub table: String,
    pub create_schema: String,
    pub migrations_exists: String,
    pub create_migrations: String,
    pub read_version: String,
    pub layout_v1: String,
    pub record_version: String,
    pub migration_lock: String,
    pub write_one: String,
    pub write_many: String,
    pub read_one: String,
    pub read_many: String,
    pub claim_one: String,
    pub claim_many: String,
    pub release: String,
    pub delete: String,
    pub list: String,
    pub list_type: String,
    pub register_owners: String,
    pub drop_owners: String,
    pub purge_owners: String,
    /// Whether the durable statements (writes, claims, deletes) set
    /// `synchronous_commit` themselves, from a last text parameter: for a
    /// caller's pool, whose sessions may have any setting. The storage's own
    /// connections set it when they start, which saves the statements a CTE.
    pub level_per_statement: bool,
}

/// The write rule on the row `r` (stored) and `excluded` (incoming): not fenced
/// (an epoch at least the claimed one) and newer than the stored or tombstoned
/// stamp (equal refused).
const ACCEPT: &str = "(excluded.epoch >= r.claimed_epoch \
     AND (r.epoch IS NULL OR (excluded.epoch, excluded.sequence) > (r.epoch, r.sequence)))";

impl Statements {
    pub(crate) fn new(schema: &str, table: &str, level_per_statement: bool) -> Self {
        let q = |name: &str| format!("\"{schema}\".\"{name}\"");
        let t = q(table);
        let owners = q(&format!("{table}_owners"));
        let migrations = q(&format!("{table}_migrations"));
        let by_type = format!("\"{table}_by_type\"");
        // For a caller's pool, set per statement, so that the level holds
        // whatever the session's default is: the commit of the statement's
        // transaction reads it. `with(n)` opens the statement (parameter `$n`
        // is the level); `from` / `from_and` join its one row in.
        let with = |n: u8| {
            if level_per_statement {
                format!(
                    "WITH settings AS MATERIALIZED \
                     (SELECT set_config('synchronous_commit', ${n}::text, true) AS level) "
                )
            } else {
                String::new()
            }
        };
        let (from, from_and) = if level_per_statement {
            ("FROM settings", "settings, ")
        } else {
            ("", "")
        };
        let write_set = format!(
            "ON CONFLICT (id) DO UPDATE SET \
               last_write = CASE WHEN excluded.epoch < r.claimed_epoch THEN {WRITE_FENCED} \
                                 WHEN NOT {ACCEPT} THEN {WRITE_STALE} ELSE {WRITE_STORED} END, \
               bytes = CASE WHEN {ACCEPT} THEN excluded.bytes ELSE r.bytes END, \
               actor_type = CASE WHEN {ACCEPT} THEN excluded.actor_type ELSE r.actor_type END, \
               epoch = CASE WHEN {ACCEPT} THEN excluded.epoch ELSE r.epoch END, \
               sequence = CASE WHEN {ACCEPT} THEN excluded.sequence ELSE r.sequence END, \
               claimed_epoch = CASE WHEN {ACCEPT} THEN greatest(r.claimed_epoch, excluded.epoch) \
                                    ELSE r.claimed_epoch END \
             RETURNING r.id, r.last_write, r.claimed_epoch, r.epoch, r.sequence"
        );
        let claim_granted = format!(
            "($3::bool OR r.holder IS NULL OR r.holder = excluded.holder OR NOT EXISTS \
               (SELECT 1 FROM {owners} o WHERE o.owner = r.holder AND o.expires_at > now()))"
        );
        let claim_set = format!(
            "ON CONFLICT (id) DO UPDATE SET \
               claimed_epoch = CASE WHEN {claim_granted} \
                   THEN greatest(r.claimed_epoch, coalesce(r.epoch, 0)) + 1 ELSE r.claimed_epoch END, \
               holder = CASE WHEN {claim_granted} THEN excluded.holder ELSE r.holder END \
             RETURNING r.id, r.claimed_epoch, r.holder, octet_length(r.bytes), \
               CASE WHEN octet_length(r.bytes) <= $4::int4 THEN r.bytes END"
        );
        Self {
            display: format!("{schema}.{table}"),
            migrations_display: format!("{schema}.{table}_migrations"),
            schema: schema.to_owned(),
            table: table.to_owned(),
            create_schema: format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            migrations_exists: "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL"
                .to_owned(),
            create_migrations: format!(
                "CREATE TABLE IF NOT EXISTS {migrations} (\
                   version integer PRIMARY KEY, \
                   applied_at timestamptz NOT NULL DEFAULT now())"
            ),
            read_version: format!("SELECT coalesce(max(version), 0) FROM {migrations}"),
            // Layout 1. `bytes` NULL with a stamp is a tombstone (deleted; the
            // stamp still refuses stale writers); NULL without one, an id only
            // claimed. `claimed_epoch` is the newest epoch granted or written;
            // epochs only grow because rows are never removed.
            layout_v1: format!(
                "CREATE TABLE {t} (\
                   id uuid PRIMARY KEY, \
                   actor_type uuid, \
                   epoch bigint, \
                   sequence bigint, \
                   claimed_epoch bigint NOT NULL DEFAULT 0, \
                   holder uuid, \
                   last_write smallint NOT NULL DEFAULT 0, \
                   bytes bytea \
                 ) WITH (fillfactor = 80); \
                 ALTER TABLE {t} ALTER COLUMN bytes SET STORAGE EXTERNAL; \
                 CREATE INDEX {by_type} ON {t} (actor_type); \
                 CREATE TABLE {owners} (\
                   owner uuid PRIMARY KEY, \
                   expires_at timestamptz NOT NULL)"
            ),
            record_version: format!("INSERT INTO {migrations} (version) VALUES ($1)"),
            migration_lock: "SELECT pg_advisory_xact_lock(hashtext($1))".to_owned(),
            write_one: format!(
                "{}INSERT INTO {t} AS r (id, actor_type, epoch, sequence, claimed_epoch, bytes, last_write) \
                 SELECT $1::uuid, $2::uuid, $3::int8, $4::int8, $3::int8, $5::bytea, {WRITE_STORED} \
                 {from} \
                 {write_set}",
                with(6)
            ),
            write_many: format!(
                "{}INSERT INTO {t} AS r (id, actor_type, epoch, sequence, claimed_epoch, bytes, last_write) \
                 SELECT w.id, w.actor_type, w.epoch, w.sequence, w.epoch, w.bytes, {WRITE_STORED} \
                 FROM {from_and}unnest($1::uuid[], $2::uuid[], $3::int8[], $4::int8[], $5::bytea[]) \
                   AS w(id, actor_type, epoch, sequence, bytes) \
                 {write_set}",
                with(6)
            ),
            read_one: format!(
                "SELECT id, octet_length(bytes), \
                   CASE WHEN octet_length(bytes) <= $2::int4 THEN bytes END \
                 FROM {t} WHERE id = $1 AND bytes IS NOT NULL"
            ),
            read_many: format!(
                "SELECT id, octet_length(bytes), \
                   CASE WHEN octet_length(bytes) <= $2::int4 THEN bytes END \
                 FROM {t} WHERE id = ANY($1::uuid[]) AND bytes IS NOT NULL"
            ),
            claim_one: format!(
                "{}INSERT INTO {t} AS r (id, claimed_epoch, holder) \
                 SELECT $1::uuid, 1, $2::uuid {from} \
                 {claim_set}",
                with(5)
            ),
            claim_many: format!(
                "{}INSERT INTO {t} AS r (id, claimed_epoch, holder) \
                 SELECT c.id, 1, c.owner \
                 FROM {from_and}unnest($1::uuid[], $2::uuid[]) AS c(id, owner) \
                 {claim_set}",
                with(5)
            ),
            release: format!(
                "UPDATE {t} SET holder = NULL WHERE id = $1 AND holder = $2 AND claimed_epoch = $3"
            ),
            delete: format!(
                "{}UPDATE {t} SET bytes = NULL, actor_type = NULL {from} \
                 WHERE id = $1::uuid AND bytes IS NOT NULL",
                with(2)
            ),
            list: format!("SELECT id FROM {t} WHERE bytes IS NOT NULL"),
            list_type: format!("SELECT id FROM {t} WHERE actor_type = $1 AND bytes IS NOT NULL"),
            register_owners: format!(
                "INSERT INTO {owners} (owner, expires_at) \
                 SELECT o, now() + make_interval(secs => $2::float8) FROM unnest($1::uuid[]) AS o \
                 ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at"
            ),
            drop_owners: format!("DELETE FROM {owners} WHERE owner = ANY($1)"),
            purge_owners: format!(
                "DELETE FROM {owners} WHERE expires_at < now() - interval '1 day'"
            ),
            level_per_statement,
        }
    }
}
