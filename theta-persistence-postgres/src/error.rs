//! [`PostgresError`]: what goes wrong talking to PostgreSQL, naming the server and
//! database (never the password) and, for per-actor operations, the actor.

use std::time::Duration;

use theta::ActorId;
use theta::persistence::UnsupportedDurability;

/// An error of the PostgreSQL backend.
///
/// Every message names the server as `user@host:port/database` (never the
/// password) and, where there is one, the actor id. The runtime's marker errors
/// ([`SnapshotNotFound`](theta::persistence::SnapshotNotFound),
/// [`StaleSnapshot`](theta::persistence::StaleSnapshot),
/// [`Fenced`](theta::persistence::Fenced), ...) are returned as themselves, not
/// wrapped in this type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection URL does not parse. The URL itself is not repeated (it may
    /// hold a password).
    #[error("invalid postgres url: {reason}")]
    InvalidUrl {
        /// The parser's message.
        reason: String,
    },
    /// A schema or table name the backend would not use.
    #[error(
        "invalid {what} name {name:?}: use 1 to {max} lowercase ascii letters, digits and underscores, not starting with a digit",
        max = crate::options::MAX_NAME_LEN
    )]
    InvalidName {
        /// `"schema"` or `"table"`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A [`Durability`](theta::persistence::Durability) this backend cannot give.
    #[error(transparent)]
    Durability(#[from] UnsupportedDurability),
    /// Connecting failed: the server is unreachable, refused the login (wrong
    /// password, unknown user) or has no such database.
    #[error("connecting to postgres at {target} failed: {}", cause(source))]
    Connect {
        /// `user@host:port/database`.
        target: String,
        /// The client's error (shared by every request of a failed batch).
        #[source]
        source: std::sync::Arc<tokio_postgres::Error>,
    },
    /// A statement failed: the connection broke (the server stopped, restarted or
    /// the network was cut), the server refused it, or its statement timeout
    /// fired. A write that fails this way was not acknowledged; it may or may not
    /// have been committed.
    #[error("{what} on {target} failed: {}", cause(source))]
    Statement {
        /// What was being done, e.g. `"write of actor 67e5…"`.
        what: String,
        /// `user@host:port/database`.
        target: String,
        /// The client's error (shared by every request of a failed batch).
        #[source]
        source: std::sync::Arc<tokio_postgres::Error>,
    },
    /// An operation got no answer in time (the client-side deadline, set a little
    /// above the statement timeout, so that a silent network does not hang a
    /// save forever).
    #[error("{what} on {target} got no answer within {after:?}")]
    Timeout {
        /// What was being done.
        what: String,
        /// `user@host:port/database`.
        target: String,
        /// The deadline.
        after: Duration,
    },
    /// The snapshot table was created by a newer version of this crate, with a
    /// layout this build does not know.
    #[error(
        "the snapshot table {table} on {target} has layout version {found}; this build knows versions up to {supported}: upgrade theta-persistence-postgres"
    )]
    SchemaTooNew {
        /// `schema.table`.
        table: String,
        /// `user@host:port/database`.
        target: String,
        /// The version the table's migrations table records.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
    /// A table with the snapshot table's name exists but was not created by this
    /// crate (it has no migrations table): it is not used.
    #[error(
        "the table {table} on {target} exists but was not created by theta-persistence-postgres (it has no {migrations} table); choose another table name"
    )]
    ForeignTable {
        /// `schema.table`.
        table: String,
        /// `user@host:port/database`.
        target: String,
        /// The migrations table that is missing.
        migrations: String,
    },
    /// The server does not sync its write-ahead log (`fsync = off`), so
    /// [`Durability::PowerLoss`](theta::persistence::Durability::PowerLoss) would
    /// be a lie.
    #[error(
        "the postgres server at {target} runs with fsync = off: its commits do not survive a power loss, so it cannot acknowledge writes as PowerLoss; use Durability::ProcessKill or fix the server"
    )]
    ServerNotDurable {
        /// `user@host:port/database`.
        target: String,
    },
    /// A snapshot's epoch or sequence number is above what a postgres `bigint`
    /// holds (2^63 - 1). theta never writes such a stamp; the write is refused
    /// before anything is sent.
    #[error(
        "refused snapshot of actor {id}: epoch {epoch} / sequence {sequence} is above 2^63 - 1, the largest stamp this backend stores"
    )]
    StampOutOfRange {
        /// The actor.
        id: ActorId,
        /// The envelope's epoch.
        epoch: u64,
        /// The envelope's sequence number.
        sequence: u64,
    },
    /// The stored snapshot is longer than any theta writes
    /// ([`MAX_ENVELOPE_LEN`](theta::persistence::envelope::MAX_ENVELOPE_LEN)); it
    /// was not fetched.
    #[error(
        "the stored snapshot of actor {id} on {target} is {len} bytes, over the limit of {limit} bytes; it was not read"
    )]
    StoredTooLarge {
        /// The actor.
        id: ActorId,
        /// `user@host:port/database`.
        target: String,
        /// Stored length.
        len: i64,
        /// The limit.
        limit: usize,
    },
    /// The statement answered with something this build does not expect (a row
    /// missing from a batch's answer, an unknown outcome code): a bug or a table
    /// changed behind the backend's back.
    #[error("{what} on {target}: unexpected answer: {detail}")]
    Protocol {
        /// What was being done.
        what: String,
        /// `user@host:port/database`.
        target: String,
        /// What was wrong.
        detail: String,
    },
}

impl PostgresError {
    /// Whether the error is a broken or unreachable connection (as opposed to the
    /// server refusing a statement): the storage reconnects by itself on the next
    /// operation.
    pub fn is_connection(&self) -> bool {
        match self {
            PostgresError::Connect { .. } | PostgresError::Timeout { .. } => true,
            PostgresError::Statement { source, .. } => is_connection_error(source),
            _ => false,
        }
    }
}

/// The client error with its cause: the server's message (`ERROR: ...`) or the
/// I/O error, which the client's own `Display` leaves out.
fn cause(err: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db, db.code().code()),
        None => match err.source() {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

/// Whether a client error means the connection is gone (closed, reset, a server
/// shutting down), not a refused statement.
pub(crate) fn is_connection_error(err: &tokio_postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        // Class 08: connection exception; 57P01..57P03: admin shutdown, crash
        // shutdown, cannot connect now (starting up or shutting down).
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: an I/O error or a protocol error on the socket.
        None => err.as_db_error().is_none(),
    }
}
