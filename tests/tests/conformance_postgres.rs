//! The storage conformance kit against `PostgresStorage` on the server of
//! `THETA_POSTGRES_URL`, one test per case, each in a schema of its own.

mod postgres_support;

use std::sync::Mutex;

use postgres_support::{client, drop_schemas, fresh_schema, server};
use theta::persistence::conformance::Harness;
use theta_persistence_postgres::PostgresStorage;

/// The conformance harness: each `open` is a new store in a schema of its own
/// (so tests run in parallel on one server), dropped with the harness.
struct Pg {
    url: String,
    schemas: Mutex<Vec<String>>,
}

impl Pg {
    /// `None` (after the skip line) without a server.
    fn new() -> Option<Self> {
        Some(Self {
            url: server()?,
            schemas: Mutex::default(),
        })
    }

    fn last_schema(&self) -> anyhow::Result<String> {
        self.schemas
            .lock()
            .unwrap()
            .last()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("nothing was opened"))
    }

    async fn connect(&self, schema: &str) -> anyhow::Result<PostgresStorage> {
        Ok(PostgresStorage::builder(&self.url)
            .schema(schema)
            .pool_size(8)
            .connect()
            .await?)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
        drop_schemas(&self.url, schemas);
    }
}

impl Harness for Pg {
    type Storage = PostgresStorage;

    async fn open(&self) -> anyhow::Result<PostgresStorage> {
        let schema = fresh_schema("theta_kit");
        self.schemas.lock().unwrap().push(schema.clone());
        self.connect(&schema).await
    }

    async fn reopen(&self, storage: PostgresStorage) -> anyhow::Result<PostgresStorage> {
        use theta::persistence::PersistentStorage;
        storage.try_close().await?;
        self.connect(&self.last_schema()?).await
    }

    /// What a crash or another program leaves in a database: an id claimed
    /// but never written, a tombstone, the lease of a dead owner, and a table
    /// of another layout beside ours with rows of its own.
    async fn litter(&self, storage: &PostgresStorage) -> anyhow::Result<()> {
        let client = client(&self.url).await;
        let table = storage.qualified_table().to_owned();
        let (schema, name) = table.split_once('.').expect("schema.table");
        client
            .batch_execute(&format!(
                "INSERT INTO \"{schema}\".\"{name}\" (id, claimed_epoch, holder) \
                   VALUES (gen_random_uuid(), 7, gen_random_uuid()); \
                 INSERT INTO \"{schema}\".\"{name}\" (id, epoch, sequence, claimed_epoch) \
                   VALUES (gen_random_uuid(), 3, 9, 3); \
                 INSERT INTO \"{schema}\".\"{name}_owners\" (owner, expires_at) \
                   VALUES (gen_random_uuid(), now() - interval '1 hour'); \
                 CREATE TABLE \"{schema}\".\"{name}_old\" (id text PRIMARY KEY, data text); \
                 INSERT INTO \"{schema}\".\"{name}_old\" VALUES ('junk', 'not a snapshot');"
            ))
            .await?;
        Ok(())
    }
}

theta::conformance_tests!(match Pg::new() {
    Some(harness) => harness,
    None => return,
});
