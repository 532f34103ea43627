//! Leases: how other processes tell that the owners this storage serves are
//! alive.
//!
//! Each owner that claims through a storage handle gets a row in
//! `<table>_owners` with `expires_at = now() + ttl` (the server's clock, so
//! client clocks do not matter), written before its first claim is sent. One
//! task per storage renews every such owner in one statement every `ttl / 3`.
//! An exclusive claim of an id whose holder's lease has expired (or is gone)
//! is granted, so a process that was killed or paused loses its ids after the
//! TTL without anyone cleaning up.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use theta::persistence::OwnerId;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::core::Core;

/// The owners one storage serves.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    owners: Mutex<HashSet<OwnerId>>,
}

impl Leases {
    fn owners(&self) -> Vec<Uuid> {
        self.lock().iter().map(OwnerId::as_uuid).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<OwnerId>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `owner` holds a lease (writing it, the first time) before
    /// one of its claims is sent.
    pub(crate) async fn ensure(&self, core: &Core, owner: OwnerId) -> Result<(), anyhow::Error> {
        if self.lock().contains(&owner) {
            return Ok(());
        }
        register(core, &[owner.as_uuid()])
            .await
            .map_err(|failure| core.error(format!("lease of {owner}"), &failure))?;
        self.lock().insert(owner);
        Ok(())
    }

    /// Ends the leases of every owner served here (at close): their ids can be
    /// claimed elsewhere at once.
    pub(crate) async fn drop_all(&self, core: &Core) -> Result<(), anyhow::Error> {
        let owners = self.owners();
        if owners.is_empty() {
            return Ok(());
        }
        core.query(&core.sql.drop_owners, &[&owners])
            .await
            .map_err(|failure| core.error("ending the leases".into(), &failure))?;
        self.lock().clear();
        Ok(())
    }
}

async fn register(core: &Core, owners: &[Uuid]) -> Result<(), crate::core::Failure> {
    let ttl = core.options.lease_ttl.as_secs_f64();
    core.query(&core.sql.register_owners, &[&owners, &ttl])
        .await
        .map(drop)
}

/// The renewal task: every `ttl / 3` (sooner after a failure), one statement
/// renews every owner; ends when `stop` fires or its sender is dropped.
pub(crate) async fn renew(core: Arc<Core>, leases: Arc<Leases>, mut stop: oneshot::Receiver<()>) {
    let period = core.options.lease_ttl / 3;
    let mut wait = period;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(wait) => {}
        }
        let owners = leases.owners();
        if owners.is_empty() {
            wait = period;
            continue;
        }
        match register(&core, &owners).await {
            Ok(()) => wait = period,
            Err(failure) => {
                let err = core.error(format!("renewing {} leases", owners.len()), &failure);
                tracing::warn!(
                    "{err:#}; retrying (the ids of these owners can be claimed elsewhere once their leases run out, and then this process's writes of them are refused)"
                );
                wait = (period / 4).max(Duration::from_millis(10));
            }
        }
    }
}
