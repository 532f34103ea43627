//! What is particular to `PostgresStorage`: the table layout's version and
//! ownership, errors that name the server and never the password, leases that
//! run out, a batch whose writes get their own outcomes, the statement timeout.

mod common;
mod postgres_support;

use std::time::{Duration, Instant};

use common::within;
use theta::ActorId;
use theta::persistence::envelope::{self, Stamp};
use theta::persistence::{
    ClaimMode, Durability, Fenced, OwnedElsewhere, OwnerId, PersistentStorage, SnapshotNotFound,
    StaleSnapshot,
};
use theta_persistence_postgres::{PostgresError, PostgresStorage};

const TYPE: uuid::Uuid = uuid::uuid!("9e5f0000-0000-4000-8000-0000000009e5");

fn at(id: ActorId, epoch: u64, sequence: u64) -> Vec<u8> {
    envelope::Seal::new(TYPE)
        .actor_id(id)
        .stamp(Stamp::new(epoch, sequence))
        .seal(format!("{epoch}/{sequence}").as_bytes())
}

/// A schema of its own, dropped at the end of the test.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: postgres_support::fresh_schema("theta_pg"),
        }
    }

    fn builder(&self) -> theta_persistence_postgres::PostgresBuilder {
        PostgresStorage::builder(&self.url).schema(&self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        postgres_support::drop_schemas(&self.url, vec![self.name.clone()]);
    }
}

fn postgres_error(err: anyhow::Error) -> PostgresError {
    match err.downcast::<PostgresError>() {
        Ok(err) => err,
        Err(other) => panic!("expected a PostgresError, got {other:#}"),
    }
}

#[tokio::test]
async fn a_table_of_a_newer_layout_is_refused() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    let storage = within("connect", schema.builder().connect()).await.unwrap();
    storage.try_close().await.unwrap();
    let client = postgres_support::client(&url).await;
    client
        .batch_execute(&format!(
            "INSERT INTO \"{}\".theta_snapshots_migrations (version) VALUES (2)",
            schema.name
        ))
        .await
        .unwrap();
    let err = within("connect", schema.builder().connect())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PostgresError::SchemaTooNew {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}.theta_snapshots", schema.name)) && text.contains("version 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_foreign_table_of_the_same_name_is_refused() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    let client = postgres_support::client(&url).await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".theta_snapshots (id text, v text); \
             INSERT INTO \"{0}\".theta_snapshots VALUES ('a', 'b')",
            schema.name
        ))
        .await
        .unwrap();
    let err = within("connect", schema.builder().connect())
        .await
        .unwrap_err();
    assert!(matches!(err, PostgresError::ForeignTable { .. }), "{err}");
    // Untouched.
    let rows = client
        .query(
            &format!("SELECT count(*) FROM \"{}\".theta_snapshots", schema.name),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

#[tokio::test]
async fn connect_errors_name_host_and_database_but_never_the_password() {
    if postgres_support::server().is_none() {
        return;
    }
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://theta:hunter2@127.0.0.1:{port}/orders");
    let err = within(
        "connect",
        PostgresStorage::builder(&url)
            .connect_timeout(Duration::from_secs(2))
            .connect(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PostgresError::Connect { .. }), "{text}");
    assert!(
        text.contains(&format!("theta@127.0.0.1:{port}/orders")),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(err.is_connection());

    // A database that does not exist, on a server that does.
    let server = postgres_support::server().unwrap();
    let mut config: tokio_postgres::Config = server.parse().unwrap();
    config.dbname("theta_no_such_database").password("hunter2");
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("a TCP test server, not {other:?}"),
    };
    let url = format!(
        "postgres://{}:hunter2@{host}:{}/theta_no_such_database",
        config.get_user().unwrap_or("postgres"),
        config.get_ports().first().copied().unwrap_or(5432)
    );
    let err = within("connect", PostgresStorage::connect(&url))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/theta_no_such_database") && text.contains("does not exist"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

/// Claims until `owner` gets `id` exclusively, or fails after `limit`.
async fn claim_when_free(
    storage: &PostgresStorage,
    id: ActorId,
    owner: OwnerId,
    limit: Duration,
) -> (theta::persistence::Claim, u32) {
    let deadline = Instant::now() + limit;
    let mut refusals = 0;
    loop {
        match storage.try_claim(id, owner, ClaimMode::Exclusive).await {
            Ok(claim) => return (claim, refusals),
            Err(e) if e.is::<OwnedElsewhere>() && Instant::now() < deadline => {
                refusals += 1;
                // The lease runs out on the server's clock; ask again shortly.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("claim of {id} by {owner}: {e:#}"),
        }
    }
}

#[tokio::test]
async fn an_owner_that_stops_renewing_loses_its_ids_after_the_ttl_and_is_fenced() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    let ttl = Duration::from_millis(600);
    let first = within("connect", schema.builder().lease_ttl(ttl).connect())
        .await
        .unwrap();
    let second = within("connect", schema.builder().lease_ttl(ttl).connect())
        .await
        .unwrap();
    let (a, b) = (OwnerId::new(), OwnerId::new());
    let id = ActorId::new_v4();
    let old = first.try_claim(id, a, ClaimMode::Exclusive).await.unwrap();
    first.try_write(id, at(id, old.epoch, 1)).await.unwrap();

    // While the first storage renews, the id stays its owner's well past the TTL.
    let renewed_until = Instant::now() + ttl * 3;
    while Instant::now() < renewed_until {
        let err = second
            .try_claim(id, b, ClaimMode::Exclusive)
            .await
            .unwrap_err();
        assert!(err.is::<OwnedElsewhere>(), "{err:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The first storage goes silent (as a paused or killed process does): a
    // handle on the same table keeps the old epoch to write with.
    let stale_writer = within("connect", schema.builder().connect()).await.unwrap();
    drop(first);
    let started = Instant::now();
    let (new, refusals) = claim_when_free(&second, id, b, Duration::from_secs(10)).await;
    assert!(new.epoch > old.epoch);
    assert_eq!(new.snapshot, Some(at(id, old.epoch, 1)));
    assert!(
        started.elapsed() < ttl * 4,
        "the lease ran out only after {:?} (ttl {ttl:?}, {refusals} refusals)",
        started.elapsed()
    );
    let err = stale_writer
        .try_write(id, at(id, old.epoch, 2))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<Fenced>(),
        Some(&Fenced {
            id,
            epoch: old.epoch,
            current: new.epoch
        })
    );
    second.try_write(id, at(id, new.epoch, 1)).await.unwrap();
    assert_eq!(
        stale_writer.try_read(id).await.unwrap(),
        at(id, new.epoch, 1)
    );
}

#[tokio::test]
async fn close_ends_the_leases_at_once() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    let first = schema.builder().connect().await.unwrap();
    let second = schema.builder().connect().await.unwrap();
    let id = ActorId::new_v4();
    first
        .try_claim(id, OwnerId::new(), ClaimMode::Exclusive)
        .await
        .unwrap();
    first.try_close().await.unwrap();
    second
        .try_claim(id, OwnerId::new(), ClaimMode::Exclusive)
        .await
        .expect("the closed storage's owner no longer holds the id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_write_of_a_batch_gets_its_own_outcome() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    // One write statement in flight at a time: the writes queue up into batches.
    let storage = schema.builder().max_in_flight(1).connect().await.unwrap();
    let owner = OwnerId::new();
    let ids: Vec<ActorId> = (0..90).map(|_| ActorId::new_v4()).collect();
    let mut epochs = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let claim = storage
            .try_claim(*id, owner, ClaimMode::Exclusive)
            .await
            .unwrap();
        storage
            .try_write(*id, at(*id, claim.epoch, 5))
            .await
            .unwrap();
        if i % 3 == 2 {
            // Taken over: its owner's next write is fenced.
            storage
                .try_claim(*id, OwnerId::new(), ClaimMode::Takeover)
                .await
                .unwrap();
        }
        epochs.push(claim.epoch);
    }
    // Every third write is good, every third stale, every third fenced, all at once.
    let writes = ids.iter().zip(&epochs).enumerate().map(|(i, (id, epoch))| {
        let storage = storage.clone();
        let (id, epoch) = (*id, *epoch);
        let sequence = if i % 3 == 1 { 4 } else { 6 };
        tokio::spawn(async move { storage.try_write(id, at(id, epoch, sequence)).await })
    });
    let writes: Vec<_> = writes.collect();
    for (i, write) in writes.into_iter().enumerate() {
        let result = within("write", write).await.unwrap();
        let id = ids[i];
        match i % 3 {
            0 => result.unwrap_or_else(|e| panic!("write {i} of {id}: {e:#}")),
            1 => assert!(result.unwrap_err().is::<StaleSnapshot>(), "write {i}"),
            _ => assert!(result.unwrap_err().is::<Fenced>(), "write {i}"),
        }
        let want = if i % 3 == 0 { 6 } else { 5 };
        assert_eq!(
            storage.try_read(id).await.unwrap(),
            at(id, epochs[i], want),
            "write {i}"
        );
    }
}

#[tokio::test]
async fn a_blocked_write_fails_at_the_statement_timeout_and_is_not_stored() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    let storage = schema
        .builder()
        .statement_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let id = ActorId::new_v4();
    storage.try_write(id, at(id, 0, 1)).await.unwrap();
    // Another session holds the row.
    let mut blocker = postgres_support::client(&url).await;
    let tx = blocker.transaction().await.unwrap();
    tx.execute(
        &format!(
            "SELECT 1 FROM \"{}\".theta_snapshots WHERE id = $1 FOR UPDATE",
            schema.name
        ),
        &[&id],
    )
    .await
    .unwrap();
    let started = Instant::now();
    let err = within("blocked write", storage.try_write(id, at(id, 0, 2)))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    let text = format!("{err:#}");
    assert!(
        text.contains("statement timeout") && text.contains(&id.to_string()),
        "{text}"
    );
    assert!(
        matches!(postgres_error(err), PostgresError::Statement { .. }),
        "{text}"
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    tx.rollback().await.unwrap();
    assert_eq!(storage.try_read(id).await.unwrap(), at(id, 0, 1));
    storage.try_write(id, at(id, 0, 2)).await.unwrap();
}

#[tokio::test]
async fn process_kill_durability_is_offered_and_volatile_refused() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    let storage = schema
        .builder()
        .durability(Durability::ProcessKill)
        .connect()
        .await
        .unwrap();
    let id = ActorId::new_v4();
    storage.try_write(id, at(id, 0, 1)).await.unwrap();
    assert_eq!(storage.try_read(id).await.unwrap(), at(id, 0, 1));
    let err = schema
        .builder()
        .durability(Durability::Volatile)
        .build()
        .unwrap_err();
    assert!(matches!(err, PostgresError::Durability(_)), "{err}");
    assert!(
        storage
            .try_read(ActorId::new_v4())
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );
}

#[tokio::test]
async fn the_storages_own_sessions_commit_at_its_durability_whatever_the_url_says() {
    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    // A URL that asks for asynchronous commits, as a misconfigured service's might.
    let separator = if url.contains('?') { '&' } else { '?' };
    let lax = format!("{url}{separator}options=-c%20synchronous_commit%3Doff");
    for (durability, level) in [
        (Durability::PowerLoss, "on"),
        (Durability::ProcessKill, "off"),
    ] {
        let storage = PostgresStorage::builder(&lax)
            .schema(&schema.name)
            .durability(durability)
            .connect()
            .await
            .unwrap();
        let client = storage.pool().get().await.unwrap();
        let row = client.query_one("SHOW synchronous_commit", &[]).await;
        let session: String = row.unwrap().get(0);
        assert_eq!(session, level, "{durability:?}");
        drop(client);
        // Every durable statement runs on these sessions.
        let (id, owner) = (ActorId::new_v4(), OwnerId::new());
        let claim = storage.try_claim(id, owner, ClaimMode::Exclusive).await;
        let epoch = claim.unwrap().epoch;
        storage.try_write(id, at(id, epoch, 1)).await.unwrap();
        assert_eq!(storage.try_read(id).await.unwrap(), at(id, epoch, 1));
        storage.try_delete(id).await.unwrap();
        storage.try_close().await.unwrap();
    }
}

#[tokio::test]
async fn on_a_callers_pool_each_durable_statement_sets_its_level_and_leaves_the_session_alone() {
    use theta_persistence_postgres::deadpool_postgres::{Manager, Pool};
    use theta_persistence_postgres::tokio_postgres::{Config, NoTls};

    let Some(url) = postgres_support::server() else {
        return;
    };
    let schema = Schema::new(&url);
    // The caller's sessions commit asynchronously by default.
    let mut config: Config = url.parse().unwrap();
    config.options("-c synchronous_commit=off");
    let pool = Pool::builder(Manager::new(config, NoTls))
        .max_size(4)
        .build()
        .unwrap();
    let storage = PostgresStorage::builder_from_pool(pool.clone())
        .schema(&schema.name)
        .connect()
        .await
        .unwrap();
    let ids: Vec<ActorId> = (0..8).map(|_| ActorId::new_v4()).collect();
    let owner = OwnerId::new();
    // One at a time (single-row statements), then all at once (batched ones).
    let epoch = storage
        .try_claim(ids[0], owner, ClaimMode::Exclusive)
        .await
        .unwrap()
        .epoch;
    storage
        .try_write(ids[0], at(ids[0], epoch, 1))
        .await
        .unwrap();
    let all = ids[1..].iter().map(|&id| {
        let storage = storage.clone();
        async move {
            let epoch = storage
                .try_claim(id, owner, ClaimMode::Exclusive)
                .await?
                .epoch;
            storage.try_write(id, at(id, epoch, 1)).await?;
            anyhow::Ok(epoch)
        }
    });
    let tasks: Vec<_> = all.map(tokio::spawn).collect();
    for task in tasks {
        within("claim and write", task).await.unwrap().unwrap();
    }
    for id in &ids {
        assert!(storage.try_read(*id).await.is_ok());
    }
    storage.try_delete(ids[0]).await.unwrap();
    assert!(
        storage
            .try_read(ids[0])
            .await
            .unwrap_err()
            .is::<SnapshotNotFound>()
    );
    // The level was set inside each statement's own transaction only.
    for _ in 0..4 {
        let client = pool.get().await.unwrap();
        let row = client.query_one("SHOW synchronous_commit", &[]).await;
        let session: String = row.unwrap().get(0);
        assert_eq!(session, "off");
    }
    storage.try_close().await.unwrap();
}
