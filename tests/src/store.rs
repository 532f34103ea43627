//! One way to open a store from a spec string, for the ledger, the crash harness
//! and the tests:
//!
//! | spec | backend (cargo feature) |
//! |---|---|
//! | `memory` | `theta::persistence::MemoryStorage` |
//! | `fs:PATH` | `theta_persistence_fs::FsStorage`, `Durability::PowerLoss` (`fs`) |
//! | `fs+buffered:PATH` | the same with `Durability::ProcessKill` |
//! | `sled:PATH` | `theta_persistence_sled::SledStorage` (`sled`) |
//! | `postgres://…`, `postgresql://…` | `theta_persistence_postgres::PostgresStorage` (`postgres`); an optional `theta_schema=NAME` query parameter picks the schema |
//!
//! A backend whose feature is off is an error that says which feature to turn on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use theta::ActorId;
use theta::persistence::{
    Claim, ClaimMode, MemoryStorage, OwnerId, PersistentStorage, SharedStorage, SnapshotPolicy,
};

/// A parsed store spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// In memory (lost with the process).
    Memory,
    /// The file-system backend in a directory; `buffered`: acknowledged before
    /// the sync (survives a process kill, not a power loss).
    Fs {
        /// The store directory.
        dir: PathBuf,
        /// `fs+buffered:`.
        buffered: bool,
        /// The journal limit, if not the default (the crash harness uses a
        /// small one, so that kills land in checkpoints too).
        journal_limit: Option<u64>,
    },
    /// The sled backend in a directory.
    Sled {
        /// The database directory.
        dir: PathBuf,
    },
    /// PostgreSQL.
    Postgres {
        /// The connection URL, without theta's own query parameters.
        url: String,
        /// The schema (`theta_schema=`), if given.
        schema: Option<String>,
    },
}

impl Spec {
    /// Parses a spec string (see the module docs).
    pub fn parse(spec: &str) -> anyhow::Result<Spec> {
        if spec == "memory" {
            return Ok(Spec::Memory);
        }
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            let (base, query) = spec.split_once('?').unwrap_or((spec, ""));
            let mut schema = None;
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.strip_prefix("theta_schema=") {
                    Some(name) if !name.is_empty() => schema = Some(name.to_owned()),
                    Some(_) => bail!("store spec {spec:?}: theta_schema= needs a name"),
                    None => kept.push(pair),
                }
            }
            let url = if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
            return Ok(Spec::Postgres { url, schema });
        }
        let Some((kind, path)) = spec.split_once(':') else {
            bail!(
                "store spec {spec:?} has no backend: write fs:PATH, fs+buffered:PATH, sled:PATH, postgres://… or memory"
            );
        };
        if path.is_empty() {
            bail!("store spec {spec:?} names no directory");
        }
        let dir = PathBuf::from(path);
        match kind {
            "fs" => Ok(Spec::Fs {
                dir,
                buffered: false,
                journal_limit: None,
            }),
            "fs+buffered" => Ok(Spec::Fs {
                dir,
                buffered: true,
                journal_limit: None,
            }),
            "sled" => Ok(Spec::Sled { dir }),
            other => bail!(
                "store spec {spec:?}: unknown backend {other:?} (known: fs, fs+buffered, sled, postgres, memory)"
            ),
        }
    }

    /// The spec of a backend by name (`fs`, `fs-buffered`, `sled`, `postgres`,
    /// `memory`) at `dir` (for postgres, `url` and a schema named after `dir`).
    pub fn for_backend(backend: &str, dir: &Path, url: &str) -> anyhow::Result<Spec> {
        Ok(match backend {
            "memory" => Spec::Memory,
            "fs" => Spec::Fs {
                dir: dir.to_path_buf(),
                buffered: false,
                journal_limit: None,
            },
            "fs-buffered" | "fs+buffered" => Spec::Fs {
                dir: dir.to_path_buf(),
                buffered: true,
                journal_limit: None,
            },
            "sled" => Spec::Sled {
                dir: dir.to_path_buf(),
            },
            "postgres" => Spec::Postgres {
                url: url.to_owned(),
                schema: Some(schema_for(dir)),
            },
            other => {
                bail!("unknown backend {other:?} (known: fs, fs-buffered, sled, postgres, memory)")
            }
        })
    }

    /// The same spec with an fs journal limit of `bytes` (other backends are
    /// unchanged).
    pub fn with_journal_limit(mut self, bytes: u64) -> Self {
        if let Spec::Fs { journal_limit, .. } = &mut self {
            *journal_limit = Some(bytes);
        }
        self
    }

    /// The backend's short name.
    pub fn backend(&self) -> &'static str {
        match self {
            Spec::Memory => "memory",
            Spec::Fs {
                buffered: false, ..
            } => "fs",
            Spec::Fs { buffered: true, .. } => "fs-buffered",
            Spec::Sled { .. } => "sled",
            Spec::Postgres { .. } => "postgres",
        }
    }

    /// Files of unfinished writes that must not survive a reopen (fs only; the
    /// other backends leave none to look for). Errors if the store directory has
    /// no `snapshots/` at all: the scan would prove nothing.
    pub fn leftovers(&self) -> anyhow::Result<Vec<PathBuf>> {
        let Spec::Fs { dir, .. } = self else {
            return Ok(Vec::new());
        };
        let snapshots = dir.join("snapshots");
        let shards = std::fs::read_dir(&snapshots)
            .with_context(|| format!("listing {} for temp files", snapshots.display()))?;
        let mut out = Vec::new();
        for shard in shards {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&shard)? {
                let file = file?.path();
                if file.to_string_lossy().ends_with(".tmp") {
                    out.push(file);
                }
            }
        }
        Ok(out)
    }

    /// Removes what the store left outside its directory (a postgres schema).
    pub async fn cleanup(&self) -> anyhow::Result<()> {
        #[cfg(feature = "postgres")]
        if let Spec::Postgres {
            url,
            schema: Some(schema),
        } = self
        {
            use theta_persistence_postgres::tokio_postgres;
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .context("connecting to drop the schema")?;
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .context("dropping the schema")?;
        }
        Ok(())
    }
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Memory => f.write_str("memory"),
            Spec::Fs {
                dir,
                buffered: false,
                ..
            } => write!(f, "fs:{}", dir.display()),
            Spec::Fs {
                dir,
                buffered: true,
                ..
            } => write!(f, "fs+buffered:{}", dir.display()),
            Spec::Sled { dir } => write!(f, "sled:{}", dir.display()),
            Spec::Postgres { url, schema } => {
                // Never the password.
                let shown = match url.split_once('@') {
                    Some((creds, rest)) => match creds.split_once("://") {
                        Some((scheme, user)) => {
                            format!("{scheme}://{}@{rest}", user.split(':').next().unwrap_or(""))
                        }
                        None => url.clone(),
                    },
                    None => url.clone(),
                };
                match schema {
                    Some(schema) => write!(f, "{shown} (schema {schema})"),
                    None => f.write_str(&shown),
                }
            }
        }
    }
}

/// A schema name for a run directory: stable across a parent and its children.
pub fn schema_for(dir: &Path) -> String {
    // FNV-1a of the path.
    let hash = dir
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("theta_{hash:016x}")
}

/// The PostgreSQL server of the suites: `THETA_POSTGRES_URL`, or the project
/// machines' default.
pub fn postgres_url() -> String {
    std::env::var("THETA_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// An open store: any backend behind one type-erased handle, counting the
/// snapshots written through it.
#[derive(Clone)]
pub struct Store {
    spec: Spec,
    storage: SharedStorage,
    writes: Arc<AtomicU64>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("spec", &self.spec.to_string())
            .field("writes", &self.writes())
            .finish()
    }
}

/// Opens the store of `spec` (a string, see the module docs).
pub fn open(spec: &str) -> anyhow::Result<Store> {
    Store::open(Spec::parse(spec)?)
}

impl Store {
    /// Opens the store `spec` describes.
    pub fn open(spec: Spec) -> anyhow::Result<Store> {
        let storage = open_backend(&spec).with_context(|| format!("opening the store {spec}"))?;
        Ok(Store {
            spec,
            storage,
            writes: Arc::default(),
        })
    }

    /// What was opened.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The type-erased handle.
    pub fn storage(&self) -> &SharedStorage {
        &self.storage
    }

    /// A handle to this store (writes counted) whose actors use `policy`
    /// instead of their type's.
    pub fn with_policy(&self, policy: SnapshotPolicy) -> SharedStorage {
        SharedStorage::new(self.clone()).with_policy(policy)
    }

    /// Snapshots written (acknowledged) through this handle and its clones.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Finishes every acknowledged write and closes the store.
    pub async fn close(&self) -> anyhow::Result<()> {
        self.storage
            .try_close()
            .await
            .with_context(|| format!("closing the store {}", self.spec))
    }
}

fn open_backend(spec: &Spec) -> anyhow::Result<SharedStorage> {
    match spec {
        Spec::Memory => Ok(SharedStorage::new(MemoryStorage::new())),
        #[cfg(feature = "fs")]
        Spec::Fs {
            dir,
            buffered,
            journal_limit,
        } => {
            use theta::persistence::Durability;
            let durability = if *buffered {
                Durability::ProcessKill
            } else {
                Durability::PowerLoss
            };
            let mut builder = theta_persistence_fs::FsStorage::builder(dir).durability(durability);
            if let Some(bytes) = journal_limit {
                builder = builder.journal_limit(*bytes);
            }
            Ok(SharedStorage::new(builder.open()?))
        }
        #[cfg(feature = "sled")]
        Spec::Sled { dir } => Ok(SharedStorage::new(
            theta_persistence_sled::SledStorage::open(dir)?,
        )),
        #[cfg(feature = "postgres")]
        Spec::Postgres { url, schema } => {
            let mut builder = theta_persistence_postgres::PostgresStorage::builder(url);
            if let Some(schema) = schema {
                builder = builder.schema(schema.clone());
            }
            // Connects on the first operation, inside the caller's runtime.
            Ok(SharedStorage::new(builder.build()?))
        }
        #[allow(unreachable_patterns)] // every backend compiled in
        other => bail!(
            "the {} backend is not compiled in: enable the tests crate's `{}` feature",
            other.backend(),
            match other {
                Spec::Fs { .. } => "fs",
                Spec::Sled { .. } => "sled",
                _ => "postgres",
            }
        ),
    }
}

impl PersistentStorage for Store {
    async fn try_read(&self, id: ActorId) -> Result<Vec<u8>, anyhow::Error> {
        self.storage.try_read(id).await
    }

    async fn try_write(&self, id: ActorId, bytes: Vec<u8>) -> Result<(), anyhow::Error> {
        self.storage.try_write(id, bytes).await?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn try_delete(&self, id: ActorId) -> Result<(), anyhow::Error> {
        self.storage.try_delete(id).await
    }

    async fn try_list(&self) -> Result<Vec<ActorId>, anyhow::Error> {
        self.storage.try_list().await
    }

    async fn try_list_type(&self, actor_type: uuid::Uuid) -> Result<Vec<ActorId>, anyhow::Error> {
        self.storage.try_list_type(actor_type).await
    }

    async fn try_claim(
        &self,
        id: ActorId,
        owner: OwnerId,
        mode: ClaimMode,
    ) -> Result<Claim, anyhow::Error> {
        self.storage.try_claim(id, owner, mode).await
    }

    async fn try_release(
        &self,
        id: ActorId,
        owner: OwnerId,
        epoch: u64,
    ) -> Result<(), anyhow::Error> {
        self.storage.try_release(id, owner, epoch).await
    }

    async fn try_close(&self) -> Result<(), anyhow::Error> {
        self.storage.try_close().await
    }

    fn shared(&self) -> Option<SharedStorage> {
        Some(SharedStorage::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(Spec::parse("memory").unwrap(), Spec::Memory);
        assert_eq!(
            Spec::parse("fs:./theta-data").unwrap(),
            Spec::Fs {
                dir: "./theta-data".into(),
                buffered: false,
                journal_limit: None
            }
        );
        assert_eq!(
            Spec::parse("fs+buffered:/d").unwrap().backend(),
            "fs-buffered"
        );
        assert_eq!(
            Spec::parse("sled:./dir").unwrap(),
            Spec::Sled {
                dir: "./dir".into()
            }
        );
        assert_eq!(
            Spec::parse("postgres://u:pw@h:5432/db?sslmode=disable&theta_schema=s1").unwrap(),
            Spec::Postgres {
                url: "postgres://u:pw@h:5432/db?sslmode=disable".into(),
                schema: Some("s1".into())
            }
        );
        for bad in ["", "fs:", "nope:/x", "./theta-data"] {
            assert!(Spec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_postgres_spec_never_shows_its_password() {
        let spec = Spec::parse("postgres://app:s3cret@db/orders").unwrap();
        let shown = spec.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app@db/orders"), "{shown}");
    }
}
