//! [`Core`]: what every task of one storage shares: the pool, the statements,
//! the options, and how a statement is run (deadline, error naming, dropping
//! a broken connection).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError};
use theta::persistence::{Durability, StorageClosed};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::{PostgresError, is_connection_error};
use crate::sql::Statements;

/// The numbers of [`PostgresBuilder`](crate::PostgresBuilder) the tasks need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub lease_ttl: Duration,
    pub statement_timeout: Duration,
    pub durability: Durability,
    pub max_batch_rows: usize,
    pub max_batch_bytes: usize,
    pub max_in_flight: usize,
}

impl Options {
    /// The client-side deadline of one operation.
    pub(crate) fn deadline(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(2)
    }

    /// `synchronous_commit` for writes, claims and deletes.
    pub(crate) fn synchronous_commit(&self) -> &'static str {
        synchronous_commit(self.durability)
    }
}

/// `synchronous_commit` for writes, claims and deletes under `durability`.
pub(crate) fn synchronous_commit(durability: Durability) -> &'static str {
    match durability {
        Durability::ProcessKill => "off",
        _ => "on",
    }
}

/// Shared by the storage handles and its tasks.
#[derive(Debug)]
pub(crate) struct Core {
    pub pool: Pool,
    pub sql: Statements,
    pub options: Options,
    /// `user@host:port/database` as configured (or a placeholder for a
    /// caller's pool until the server names itself).
    configured_target: String,
    learned_target: OnceLock<String>,
}

impl Core {
    pub(crate) fn new(
        pool: Pool,
        sql: Statements,
        options: Options,
        configured_target: String,
    ) -> Self {
        Self {
            pool,
            sql,
            options,
            configured_target,
            learned_target: OnceLock::new(),
        }
    }

    /// `user@host:port/database`.
    pub(crate) fn target(&self) -> String {
        self.learned_target
            .get()
            .cloned()
            .unwrap_or_else(|| self.configured_target.clone())
    }

    /// Records the server's own name for itself (for a caller's pool).
    pub(crate) fn learn_target(&self, target: String) {
        let _ = self.learned_target.set(target);
    }

    /// `schema.table at user@host:port/database`, for [`StorageClosed`].
    pub(crate) fn location(&self) -> String {
        format!("postgres table {} at {}", self.sql.display, self.target())
    }

    /// A pooled connection, within the deadline.
    pub(crate) async fn connection(&self) -> Result<Object, Failure> {
        match tokio::time::timeout(self.options.deadline(), self.pool.get()).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(PoolError::Backend(source))) => Err(Failure::Connect(Arc::new(source))),
            Ok(Err(PoolError::Closed)) => Err(Failure::Closed),
            Ok(Err(PoolError::Timeout(_))) | Err(_) => Err(Failure::NoConnection),
            Ok(Err(other)) => Err(Failure::Pool(other.to_string())),
        }
    }

    /// Runs `sql` (prepared and cached per connection) on a pooled connection,
    /// within the deadline. A connection that broke or timed out is dropped,
    /// not returned to the pool.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Failure> {
        let client = self.connection().await?;
        let run = async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        };
        match tokio::time::timeout(self.options.deadline(), run).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(source)) => {
                if is_connection_error(&source) {
                    drop(Object::take(client));
                } else if source
                    .code()
                    .is_some_and(|c| c.code() == "26000" || c.code() == "0A000")
                {
                    // A cached statement the server no longer knows (a table
                    // recreated under us): forget this connection's cache.
                    client.statement_cache.clear();
                }
                Err(Failure::Statement(Arc::new(source)))
            }
            Err(_) => {
                drop(Object::take(client));
                Err(Failure::Timeout)
            }
        }
    }

    /// [`query`](Self::query) for a statement that commits durable state (a
    /// write, claim or delete): with the `synchronous_commit` level as its last
    /// parameter where the statement sets it itself (a caller's pool); the
    /// storage's own connections set it when they start.
    pub(crate) async fn query_durable(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Failure> {
        if !self.sql.level_per_statement {
            return self.query(sql, params).await;
        }
        let level = self.options.synchronous_commit();
        let mut all: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(params.len() + 1);
        all.extend_from_slice(params);
        all.push(&level);
        self.query(sql, &all).await
    }

    /// The error for a failed statement, for the request described by `what`.
    pub(crate) fn error(&self, what: String, failure: &Failure) -> anyhow::Error {
        let target = self.target();
        let err = match failure {
            Failure::Statement(source) => PostgresError::Statement {
                what,
                target,
                source: Arc::clone(source),
            },
            Failure::Connect(source) => PostgresError::Connect {
                target,
                source: Arc::clone(source),
            },
            Failure::Timeout => PostgresError::Timeout {
                what,
                target,
                after: self.options.deadline(),
            },
            Failure::NoConnection => PostgresError::Timeout {
                what: format!("{what} (waiting for a connection)"),
                target,
                after: self.options.deadline(),
            },
            Failure::Closed => {
                return anyhow::Error::new(StorageClosed {
                    location: self.location(),
                });
            }
            Failure::Pool(detail) => PostgresError::Protocol {
                what,
                target,
                detail: format!("connection pool: {detail}"),
            },
        };
        anyhow::Error::new(err)
    }
}

/// Why a statement failed; cheap to clone, so that every request of a failed
/// batch gets its own error naming its own actor.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The server or the connection reported an error.
    Statement(Arc<tokio_postgres::Error>),
    /// No new connection could be made.
    Connect(Arc<tokio_postgres::Error>),
    /// No answer within the deadline.
    Timeout,
    /// No connection was free within the deadline.
    NoConnection,
    /// The pool was closed.
    Closed,
    /// Another pool error.
    Pool(String),
}
