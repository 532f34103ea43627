//! Opening a store: the recovery path, as numbered steps in `ARCHITECTURE.md`
//! ("The recovery path"). The open writes no snapshot file: what the journal
//! holds is served from memory and checkpointed in the background, so a store
//! opens on a nearly full disk.

use std::path::Path;
use std::sync::Arc;

use theta::persistence::envelope::Header;
use theta::persistence::{ClaimTable, Durability, UnsupportedDurability};

use crate::committer::Committer;
use crate::dir::{self, Dir, Disk};
use crate::error::FsError;
use crate::failpoint::Failpoints;
use crate::journal::{self, Link, Replayed, Rules, Segment};
use crate::layout::{self, Format, Unmarked};
use crate::snapshot_files::SnapshotFiles;
use crate::state::Shared;

/// The durabilities this store offers.
const OFFERED: &[Durability] = &[Durability::PowerLoss, Durability::ProcessKill];

/// What [`open`] needs to know.
#[derive(Debug)]
pub(crate) struct Options<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) durability: Durability,
    pub(crate) journal_limit: u64,
    pub(crate) failpoints: Failpoints,
    pub(crate) disk: Disk,
}

/// Opens (or creates) the store; returns its shared state and its committer,
/// ready to run.
pub(crate) fn open(options: Options<'_>) -> Result<(Arc<Shared>, Committer), FsError> {
    let Options {
        dir,
        durability,
        journal_limit,
        failpoints,
        disk,
    } = options;
    // 1. Refuse what this store cannot promise.
    if !OFFERED.contains(&durability) {
        return Err(FsError::UnsupportedDurability(UnsupportedDurability {
            backend: "theta-persistence-fs",
            requested: durability,
            offered: OFFERED,
        }));
    }
    // 2. The directory, and a first look at it before anything is written
    //    into it: a foreign directory is refused untouched.
    disk.create_dir_all_durable(dir, false)?;
    let root = Dir::open(&disk, dir)?;
    if layout::read_format(&root)? == Format::Absent {
        if let Unmarked::Foreign(found) = layout::classify_unmarked(&root)? {
            return Err(not_a_store(&root, found));
        }
        // Not marked yet: an earlier open may have created the path and
        // failed before its entries were durable (see the function).
        disk.create_dir_all_durable(dir, true)?;
    }
    // 3. The lock: one open store per directory.
    let lock = root.lock(layout::LOCK_FILE)?;
    // 4. The layout, looked at again under the lock.
    let format = layout::read_format(&root)?;
    let mut leftovers = Vec::new();
    if format == Format::Absent {
        match layout::classify_unmarked(&root)? {
            Unmarked::Foreign(found) => return Err(not_a_store(&root, found)),
            Unmarked::Empty { leftovers: found } => leftovers = found,
        }
    }
    // 5. `snapshots/` and `journal/`.
    let (snapshots, journal) = directories(&root, format)?;
    for name in leftovers {
        // What a creation cut short left: no writes (see `classify_unmarked`).
        journal
            .remove_if_present(&name)
            .map_err(|e| FsError::io("removing", journal.join(&name), e))?;
    }
    // 6. The generation: bumped and synced before any claim is granted, so
    //    epochs of this open are above every epoch of the earlier ones.
    let generation = match (format, layout::read_generation(&root)?) {
        (Format::Current, None) => {
            return Err(FsError::Damaged {
                path: root.join(layout::GENERATION_FILE),
                cause: "it is missing".into(),
            });
        }
        (_, found) => found.unwrap_or(0).checked_add(1),
    };
    let generation = generation
        .filter(|g| *g <= u64::from(u32::MAX))
        .ok_or_else(|| FsError::Damaged {
            path: root.join(layout::GENERATION_FILE),
            cause: "the generation is too large to grow".into(),
        })?;
    layout::write_generation(&root, generation).map_err(|f| f.into_error())?;
    // 7. The snapshot files: temp files removed, every header read (the index).
    let files = SnapshotFiles::new(snapshots);
    let scanned = files.scan()?;
    // 8. The journal: every segment it needs, checked and replayed.
    let replayed = match format {
        Format::Current => journal::replay(&journal, Rules::Current)?,
        Format::Legacy => journal::replay(&journal, Rules::Legacy)?,
        Format::Absent => Replayed::default(),
    };
    // 9. A new segment to write to, after the newest whole one (whose torn
    //    tail, if any, is cut off first: the new segment records its length).
    let number = replayed.next().ok_or_else(|| FsError::Damaged {
        path: journal.join(layout::segment_name(u64::MAX)),
        cause: "its number is the largest a segment can have; no segment can follow it".into(),
    })?;
    let prev = replayed.tail.map(|tail| Link {
        number: tail.number,
        salt: tail.salt,
        len: tail.valid_len,
    });
    if let Some(tail) = &replayed.tail
        && replayed.aborted.is_none()
    {
        journal::cut_torn_tail(&journal, tail).map_err(|f| f.into_error())?;
    }
    let synced = durability == Durability::PowerLoss;
    let segment =
        Segment::create(&journal, number, prev, synced, || Ok(())).map_err(|f| f.into_error())?;
    // 10. A new or upgraded store: `START`, then the layout marker, last.
    let start = replayed.start.unwrap_or(number);
    if format != Format::Current {
        journal::write_start(&journal, start).map_err(|f| f.into_error())?;
        layout::write_format(&root).map_err(|f| f.into_error())?;
    }
    // 11. The shared state: the index of every stored snapshot, and the
    //     replayed writes, pending (served from memory until checkpointed).
    let shared = Arc::new(Shared::new(
        root,
        journal,
        files,
        failpoints,
        ClaimTable::new(generation << 32),
    ));
    *shared.journal_start() = start;
    {
        // (The committer's lock order: pending, then the index.)
        let mut pending = shared.pending();
        let mut index = shared.index();
        for (id, described) in scanned {
            index.insert(id, described);
        }
        for (id, replay) in replayed.entries {
            match &replay.snapshot {
                Some(bytes) => {
                    let described = Header::peek(bytes)
                        .ok()
                        .map(|header| (header.actor_type, header.stamp()));
                    index.insert(id, described);
                }
                None => index.remove(id),
            }
            pending.publish(id, replay.snapshot.map(Arc::new), replay.segment);
        }
    }
    // 12. The committer, and a first checkpoint of the replayed segments in the
    //     background.
    let replayed_segments = (start < number || !replayed.leftovers.is_empty()).then(|| number - 1);
    let committer = Committer::new(
        shared.clone(),
        durability,
        journal_limit,
        segment,
        lock,
        replayed_segments,
    )?;
    Ok((shared, committer))
}

fn not_a_store(root: &Dir, found: String) -> FsError {
    FsError::NotAStore {
        path: root.path().to_path_buf(),
        found,
    }
}

/// `snapshots/` and `journal/`: created in a new or older store; required in a
/// store of this layout (without them, every snapshot would read as absent).
fn directories(root: &Dir, format: Format) -> Result<(Dir, Dir), FsError> {
    if format == Format::Current {
        let required = |name: &str| match root.kind_of(name) {
            Ok(Some(dir::Kind::Dir)) => root.open_sub(name),
            Ok(_) => Err(FsError::Damaged {
                path: root.join(name),
                cause: "the directory is missing".into(),
            }),
            Err(e) => Err(FsError::io("inspecting", root.join(name), e)),
        };
        return Ok((required(layout::SNAPSHOTS)?, required(layout::JOURNAL)?));
    }
    let mut created = root.create_dir(layout::SNAPSHOTS)?;
    created |= root.create_dir(layout::JOURNAL)?;
    if created {
        root.sync()?;
    }
    Ok((
        root.open_sub(layout::SNAPSHOTS)?,
        root.open_sub(layout::JOURNAL)?,
    ))
}
