//! Creating and checking the tables on first use.
//!
//! In one transaction, under an advisory lock per schema (so that processes
//! starting together do not race): create the schema if needed; then
//!
//! - neither the snapshot table nor its migrations table exists: create both
//!   at [`LAYOUT_VERSION`] and record it;
//! - the table exists without a migrations table: refuse it
//!   ([`PostgresError::ForeignTable`]), it is not ours;
//! - the migrations table records a version newer than this build's: refuse
//!   ([`PostgresError::SchemaTooNew`]);
//! - an older one: apply the migrations in between (none yet: layout 1 is the
//!   first).

use std::sync::Arc;

use theta::persistence::Durability;

use crate::core::{Core, Failure};
use crate::error::PostgresError;
use crate::sql::LAYOUT_VERSION;

/// Makes sure the tables exist at this build's layout, and that the server can
/// give the durability asked for.
pub(crate) async fn prepare(core: &Core, learn_target: bool) -> Result<(), anyhow::Error> {
    let what = || format!("preparing the table {}", core.sql.display);
    let mut client = core
        .connection()
        .await
        .map_err(|failure| core.error(what(), &failure))?;
    let pg =
        |source: tokio_postgres::Error| core.error(what(), &Failure::Statement(Arc::new(source)));
    if learn_target {
        let row = client
            .query_one(
                "SELECT current_user::text, coalesce(host(inet_server_addr()), 'local socket'), \
                 coalesce(inet_server_port(), 5432), current_database()::text",
                &[],
            )
            .await
            .map_err(pg)?;
        let (user, host, port, db): (String, String, i32, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        core.learn_target(format!("{user}@{host}:{port}/{db}"));
    }
    let sql = &core.sql;
    let body = async {
        let tx = client.transaction().await?;
        let lock_key = format!("theta-persistence-postgres:{}", sql.schema);
        tx.query_one(&sql.migration_lock, &[&lock_key]).await?;
        tx.batch_execute(&sql.create_schema).await?;
        let quoted_table = format!("\"{}\".\"{}\"", sql.schema, sql.table);
        let quoted_migrations = format!("\"{}\".\"{}_migrations\"", sql.schema, sql.table);
        let row = tx
            .query_one(&sql.migrations_exists, &[&quoted_table, &quoted_migrations])
            .await?;
        let (table_exists, migrations_exist): (bool, bool) = (row.get(0), row.get(1));
        let found = if migrations_exist {
            tx.query_one(&sql.read_version, &[]).await?.get::<_, i32>(0)
        } else {
            0
        };
        let verdict = match (table_exists, migrations_exist, found) {
            (true, false, _) => Err(PostgresError::ForeignTable {
                table: sql.display.clone(),
                target: core.target(),
                migrations: sql.migrations_display.clone(),
            }),
            (_, _, found) if found > LAYOUT_VERSION => Err(PostgresError::SchemaTooNew {
                table: sql.display.clone(),
                target: core.target(),
                found,
                supported: LAYOUT_VERSION,
            }),
            _ => Ok(()),
        };
        if verdict.is_err() {
            tx.rollback().await?;
            return Ok(verdict);
        }
        if found < 1 {
            tx.batch_execute(&sql.create_migrations).await?;
            tx.batch_execute(&sql.layout_v1).await?;
            tx.execute(&sql.record_version, &[&1i32]).await?;
        }
        // Later layouts: `if found < 2 { .. }` here, in order.
        tx.commit().await?;
        Ok(verdict)
    };
    match tokio::time::timeout(core.options.deadline(), body).await {
        Ok(Ok(verdict)) => verdict?,
        Ok(Err(source)) => return Err(pg(source)),
        Err(_) => return Err(core.error(what(), &Failure::Timeout)),
    }
    if core.options.durability == Durability::PowerLoss {
        let fsync: String = client
            .query_one("SELECT current_setting('fsync')", &[])
            .await
            .map_err(pg)?
            .get(0);
        if fsync != "on" {
            return Err(PostgresError::ServerNotDurable {
                target: core.target(),
            }
            .into());
        }
    }
    // Owners that died a day ago or more: nobody waits for their leases.
    client
        .execute(&core.sql.purge_owners, &[])
        .await
        .map_err(pg)?;
    Ok(())
}
