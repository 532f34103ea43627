//! [`PostgresBuilder`]: where the snapshots go and how they are written.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use theta::persistence::{Durability, UnsupportedDurability};

use crate::error::PostgresError;
use crate::storage::PostgresStorage;

/// The longest schema or table name accepted (the derived names, such as
/// `<table>_migrations`, must stay within PostgreSQL's 63 bytes).
pub const MAX_NAME_LEN: usize = 48;

/// The schema used unless [`PostgresBuilder::schema`] says otherwise.
pub const DEFAULT_SCHEMA: &str = "public";
/// The snapshot table's name unless [`PostgresBuilder::table`] says otherwise.
pub const DEFAULT_TABLE: &str = "theta_snapshots";
/// How long an owner's lease lasts without renewal, by default.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// The server-side statement timeout, by default.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The levels this backend offers.
pub(crate) const OFFERED: &[Durability] = &[Durability::PowerLoss, Durability::ProcessKill];

/// Where the connections come from.
enum Source {
    Url(String),
    Pool(Pool),
}

/// Options of a [`PostgresStorage`]; start with [`PostgresStorage::builder`] or
/// [`PostgresStorage::builder_from_pool`].
///
/// ```no_run
/// # async fn example() -> Result<(), theta_persistence_postgres::PostgresError> {
/// use std::time::Duration;
/// use theta::persistence::Durability;
/// use theta_persistence_postgres::PostgresStorage;
///
/// let storage = PostgresStorage::builder("postgres://app@db.internal/orders")
///     .schema("billing")
///     .table("actor_snapshots")
///     .lease_ttl(Duration::from_secs(15))
///     .statement_timeout(Duration::from_secs(5))
///     .durability(Durability::PowerLoss)
///     .connect()
///     .await?;
/// # let _ = storage;
/// # Ok(())
/// # }
/// ```
pub struct PostgresBuilder {
    source: Source,
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) lease_ttl: Duration,
    pub(crate) statement_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) durability: Durability,
    pub(crate) pool_size: usize,
    pub(crate) max_batch_rows: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_in_flight: usize,
}

impl std::fmt::Debug for PostgresBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBuilder")
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("lease_ttl", &self.lease_ttl)
            .field("statement_timeout", &self.statement_timeout)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl PostgresBuilder {
    fn new(source: Source) -> Self {
        Self {
            source,
            schema: DEFAULT_SCHEMA.to_owned(),
            table: DEFAULT_TABLE.to_owned(),
            lease_ttl: DEFAULT_LEASE_TTL,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            connect_timeout: Duration::from_secs(5),
            durability: Durability::PowerLoss,
            pool_size: 16,
            max_batch_rows: 512,
            max_batch_bytes: 4 << 20,
            max_in_flight: 2,
        }
    }

    pub(crate) fn from_url(url: &str) -> Self {
        Self::new(Source::Url(url.to_owned()))
    }

    pub(crate) fn from_pool(pool: Pool) -> Self {
        Self::new(Source::Pool(pool))
    }

    /// The schema of the tables (default `public`); created if missing.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The snapshot table's name (default `theta_snapshots`). The backend also
    /// uses `<table>_owners` (leases) and `<table>_migrations` (layout version).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// How long an owner's claims stay protected without a renewal (default 10 s):
    /// after a process dies or stalls for this long, another process's exclusive
    /// claim of its ids succeeds. Leases are renewed every third of it.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// The server-side statement timeout of the connections this storage opens
    /// (default 10 s). Every operation also has a client-side deadline 2 s
    /// above it, so that a silent network fails a save instead of hanging it.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long to wait for a new connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// What an acknowledged write survives (default
    /// [`Durability::PowerLoss`]): see [`PostgresStorage`] for how each level maps
    /// to `synchronous_commit`. [`Durability::Volatile`] is refused at
    /// [`connect`](Self::connect) / [`build`](Self::build).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The most connections the storage opens (default 16; ignored with
    /// [`PostgresStorage::builder_from_pool`], whose pool has its own size).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(2);
        self
    }

    /// Group commit: the most writes (or reads, claims) in one statement
    /// (default 512).
    pub fn max_batch_rows(mut self, rows: usize) -> Self {
        self.max_batch_rows = rows.max(1);
        self
    }

    /// Group commit: a batch closes once it holds this many snapshot bytes
    /// (default 4 MiB); a larger snapshot goes alone.
    pub fn max_batch_bytes(mut self, bytes: usize) -> Self {
        self.max_batch_bytes = bytes.max(1);
        self
    }

    /// Group commit: how many batches of one kind may be in flight at once,
    /// each on its own connection (default 2: with more, the same load
    /// splits into smaller batches that each wait for their own commit).
    pub fn max_in_flight(mut self, batches: usize) -> Self {
        self.max_in_flight = batches.max(1);
        self
    }

    /// Builds the storage and checks the server right away: connects, creates or
    /// checks the tables, starts the lease renewal. Fails with a
    /// [`PostgresError`] naming the server and database.
    pub async fn connect(self) -> Result<PostgresStorage, PostgresError> {
        let storage = self.build()?;
        storage.ready().await?;
        Ok(storage)
    }

    /// Builds the storage without touching the server (no runtime needed): the
    /// first operation connects, creates or checks the tables and starts the
    /// storage's tasks on the runtime it runs on, and reports any failure to do
    /// so, on every operation until it succeeds.
    pub fn build(self) -> Result<PostgresStorage, PostgresError> {
        check_name("schema", &self.schema)?;
        check_name("table", &self.table)?;
        if !OFFERED.contains(&self.durability) {
            return Err(UnsupportedDurability {
                backend: "theta-persistence-postgres",
                requested: self.durability,
                offered: OFFERED,
            }
            .into());
        }
        let (pool, target, own_pool) = match &self.source {
            Source::Url(url) => {
                let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
                    PostgresError::InvalidUrl {
                        reason: e.to_string(),
                    }
                })?;
                let target = describe(&config);
                let mut options = config.get_options().unwrap_or_default().to_owned();
                // After the URL's own options, so these win; they also win over
                // role and database defaults (`ALTER ROLE .. SET`). Every durable
                // statement of these sessions commits at this level.
                options.push_str(&format!(
                    " -c statement_timeout={} -c synchronous_commit={}",
                    self.statement_timeout.as_millis(),
                    crate::core::synchronous_commit(self.durability)
                ));
                config
                    .options(options.trim())
                    .connect_timeout(self.connect_timeout)
                    .keepalives_idle(Duration::from_secs(30));
                if config.get_application_name().is_none() {
                    config.application_name("theta-persistence-postgres");
                }
                let manager = Manager::from_config(
                    config,
                    tokio_postgres::NoTls,
                    ManagerConfig {
                        recycling_method: RecyclingMethod::Fast,
                    },
                );
                let pool = Pool::builder(manager)
                    .max_size(self.pool_size)
                    .runtime(Runtime::Tokio1)
                    .create_timeout(Some(self.connect_timeout))
                    .wait_timeout(Some(self.statement_timeout + Duration::from_secs(2)))
                    .build()
                    .map_err(|e| PostgresError::InvalidUrl {
                        reason: format!("cannot build a connection pool: {e}"),
                    })?;
                (pool, target, true)
            }
            Source::Pool(pool) => (pool.clone(), "a caller-supplied pool".to_owned(), false),
        };
        Ok(PostgresStorage::new(self, pool, target, own_pool))
    }
}

/// `user@host:port/database`, from a client config: no password.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("(default)");
    format!("{user}@{host}:{port}/{db}")
}

fn check_name(what: &'static str, name: &str) -> Result<(), PostgresError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(PostgresError::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("table", "theta_snapshots").is_ok());
        assert!(check_name("table", "_t1").is_ok());
        for bad in ["", "1t", "Snap", "a-b", "a\"b", &"x".repeat(49)] {
            assert!(check_name("table", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_target_never_shows_the_password() {
        let config =
            tokio_postgres::Config::from_str("postgres://app:s3cret@db.example:6543/orders")
                .unwrap();
        let target = describe(&config);
        assert_eq!(target, "app@db.example:6543/orders");
        assert!(!target.contains("s3cret"));
    }

    #[test]
    fn a_bad_url_does_not_echo_it() {
        let err = PostgresStorage::builder("postgres://app:s3cret@db:notaport/x")
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("invalid postgres url"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn volatile_is_refused() {
        let err = PostgresStorage::builder("postgres://app@db/x")
            .durability(Durability::Volatile)
            .build()
            .unwrap_err();
        assert!(matches!(err, PostgresError::Durability(_)), "{err}");
    }
}
