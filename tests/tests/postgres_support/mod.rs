//! The one place the postgres test binaries find their server.
//!
//! `THETA_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names it. Without a reachable server a postgres test prints one loud line
//! per binary, `postgres suite skipped: no server at …`, and returns; with
//! `CI=true` it fails instead, so CI never passes a postgres suite that did not
//! run.

use std::sync::OnceLock;
use std::time::Duration;

/// The server the suite uses unless `THETA_POSTGRES_URL` names another.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The configured URL.
pub fn url() -> String {
    std::env::var("THETA_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// The URL of a reachable server, or `None` after the loud skip line (outside
/// CI); under `CI=true` an unreachable server fails the test.
pub fn server() -> Option<String> {
    static CHECKED: OnceLock<Result<String, String>> = OnceLock::new();
    static SAID: std::sync::Once = std::sync::Once::new();
    let checked = CHECKED.get_or_init(|| {
        let url = url();
        let probe = url.clone();
        // A thread of its own: the caller may be inside a runtime.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let config: tokio_postgres::Config = probe.parse().map_err(|e| format!("{e}"))?;
                match tokio::time::timeout(
                    Duration::from_secs(5),
                    config.connect(tokio_postgres::NoTls),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within 5 s".to_owned()),
                }
            })
        })
        .join()
        .map_err(|_| "the probe panicked".to_owned())
        .and_then(|r| r)
        .map(|()| url.clone())
        .map_err(|why| format!("{} ({why})", redact(&url)))
    });
    match checked {
        Ok(url) => Some(url.clone()),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("postgres suite: no server at {why}, and CI=true requires one")
        }
        Err(why) => {
            SAID.call_once(|| {
                eprintln!(
                    "\n!!!!! postgres suite skipped: no server at {why}; set THETA_POSTGRES_URL !!!!!\n"
                )
            });
            None
        }
    }
}

/// `url` without a password.
pub fn redact(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            };
            format!(
                "{}@{}:{}/{}",
                config.get_user().unwrap_or("(default user)"),
                host,
                config.get_ports().first().copied().unwrap_or(5432),
                config.get_dbname().unwrap_or("(default)")
            )
        }
        Err(_) => "(an unparsable THETA_POSTGRES_URL)".to_owned(),
    }
}

/// A fresh schema name, unique across processes and runs.
#[allow(
    dead_code,
    reason = "postgres_crash needs only `server`: theta_crash makes and drops its schema"
)]
pub fn fresh_schema(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Drops `schemas` on the server at `url` (from a thread of its own, so this
/// works from `Drop` and inside a runtime).
#[allow(
    dead_code,
    reason = "postgres_crash needs only `server`: theta_crash makes and drops its schema"
)]
pub fn drop_schemas(url: &str, schemas: Vec<String>) {
    if schemas.is_empty() {
        return;
    }
    let url = url.to_owned();
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let Ok((client, connection)) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await
            else {
                return;
            };
            tokio::spawn(connection);
            for schema in schemas {
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
            }
        })
    })
    .join();
}

/// A plain client of the server, for tests that look at or damage the tables.
#[allow(
    dead_code,
    reason = "postgres_storage and conformance_postgres use it; model_storage, \
              postgres_crash and postgres_two_process do not"
)]
pub async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test server");
    tokio::spawn(connection);
    client
}
