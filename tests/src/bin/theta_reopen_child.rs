//! The child of `tests/tests/reopen_process.rs`: opens a store another process
//! wrote and closed, and prints what it finds, for the parent to compare with
//! what it wrote.
//!
//! ```text
//! theta_reopen_child fs|sled DIR [ABSENT_ID...]
//! ```
//!
//! Prints, in id order, one line per listed snapshot,
//!
//! ```text
//! SNAP <id> <bytes as hex> TYPE <actor type>   (the bytes open as an envelope)
//! SNAP <id> <bytes as hex> BAD <error>         (they do not)
//! ```
//!
//! then `ABSENT <id>` for each `ABSENT_ID` that reads as `SnapshotNotFound`,
//! and `DONE`. Anything else (the store does not open, a listed id does not
//! read, an `ABSENT_ID` reads as something other than not found) is an error
//! on stderr and exit status 1. The child judges nothing: the parent asserts.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use theta::ActorId;
use theta::persistence::{PersistentStorage, SharedStorage, SnapshotNotFound, envelope};
use theta_tests::store::{Spec, Store};

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn open(backend: &str, dir: &std::path::Path) -> anyhow::Result<SharedStorage> {
    let spec = Spec::for_backend(backend, dir, "")?;
    Ok(Store::open(spec)?.storage().clone())
}

async fn dump(backend: &str, dir: PathBuf, absent: Vec<ActorId>) -> anyhow::Result<()> {
    let storage = open(backend, &dir)?;
    let mut listed = storage.try_list().await.context("listing the store")?;
    listed.sort();
    for id in listed {
        let bytes = storage
            .try_read(id)
            .await
            .with_context(|| format!("{id} is listed but does not read"))?;
        let verdict = match envelope::open(&bytes, envelope::DEFAULT_MAX_PAYLOAD) {
            Ok((header, _)) => format!("TYPE {}", header.actor_type),
            Err(e) => format!("BAD {e}"),
        };
        println!("SNAP {id} {} {verdict}", hex(&bytes));
    }
    for id in absent {
        match storage.try_read(id).await {
            Err(e) if e.is::<SnapshotNotFound>() => println!("ABSENT {id}"),
            Err(e) => bail!("{id} should be absent; its read failed: {e:#}"),
            Ok(bytes) => bail!("{id} should be absent; it reads as {} bytes", bytes.len()),
        }
    }
    println!("DONE");
    Ok(())
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: theta_reopen_child fs|sled DIR [ABSENT_ID...]";
    let backend = args.next().context(usage)?;
    let dir = PathBuf::from(args.next().context(usage)?);
    let absent = args
        .map(|a| {
            a.parse::<ActorId>()
                .with_context(|| format!("{a:?} is not an actor id"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a tokio runtime")?;
    runtime.block_on(dump(&backend, dir, absent))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("theta_reopen_child: {e:#}");
            ExitCode::FAILURE
        }
    }
}
