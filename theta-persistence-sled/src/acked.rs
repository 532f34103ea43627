//! `<dir>/ACKED`: what theta acknowledged, kept outside sled's log, so that an
//! open can tell a database that lost acknowledged snapshots from an intact one.
//!
//! sled 0.34 recovers its log up to the first damaged message and skips the rest
//! of a damaged segment: one flipped byte or a truncated `db` file silently drops
//! every later entry, and the actors whose snapshots were there would start
//! fresh. So every open compares the tree with the last record here:
//!
//! - **closed** (written by a clean close): the exact [`Digest`] of the tree's
//!   id keys. Any lost, reverted or damaged entry changes it.
//! - **open** (written at open, then after every durable flush): the number of
//!   id keys acknowledged so far. Keys are never removed (deletes leave
//!   tombstones), so a tree with fewer keys lost acknowledged snapshots.
//!
//! The file has two 512-byte slots, each a self-checking record with a sequence
//! number; the valid one with the higher number counts. The slot holding the
//! last *synced* record is never overwritten until a newer record is synced in
//! the other one, so a torn write or a power loss always leaves one valid,
//! durable record. Records after durable flushes are written without a sync
//! (at most one sync a second): a process kill loses none of them, a power
//! loss may leave the previous one, which is weaker but never wrong (it never
//! claims more than the database holds).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::keys::Digest;

/// The file name.
pub(crate) const ACKED_FILE: &str = "ACKED";
const MAGIC: [u8; 4] = *b"THSA";
const VERSION: u16 = 1;
const SLOT_LEN: u64 = 512;
/// The bytes of a record: magic, version, mark kind, reserved, sequence,
/// generation, keys, live, sum, CRC-32C.
const RECORD_LEN: usize = 4 + 2 + 1 + 1 + 8 + 8 + 8 + 8 + 16 + 4;
const KIND_OPEN: u8 = 1;
const KIND_CLOSED: u8 = 2;
/// Records written after flushes are synced at most this often.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// What a record says about the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    /// The store is open (or crashed while open); `keys` id keys had been
    /// acknowledged.
    Open {
        /// Id keys acknowledged.
        keys: u64,
    },
    /// The store was closed cleanly with exactly this content.
    Closed(Digest),
}

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Higher is newer.
    pub(crate) sequence: u64,
    /// The open generation that wrote it.
    pub(crate) generation: u64,
    /// What it says.
    pub(crate) mark: Mark,
}

impl Record {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let (kind, digest) = match self.mark {
            Mark::Open { keys } => (
                KIND_OPEN,
                Digest {
                    keys,
                    ..Digest::default()
                },
            ),
            Mark::Closed(digest) => (KIND_CLOSED, digest),
        };
        let mut out = [0u8; RECORD_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6] = kind;
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out[16..24].copy_from_slice(&self.generation.to_le_bytes());
        out[24..32].copy_from_slice(&digest.keys.to_le_bytes());
        out[32..40].copy_from_slice(&digest.live.to_le_bytes());
        out[40..56].copy_from_slice(&digest.sum.to_le_bytes());
        let crc = crc32c::crc32c(&out[..RECORD_LEN - 4]);
        out[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(slot: &[u8]) -> Option<Record> {
        let bytes = slot.get(..RECORD_LEN)?;
        let (body, crc) = bytes.split_at(RECORD_LEN - 4);
        if body[..4] != MAGIC || crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        if u16::from_le_bytes([body[4], body[5]]) != VERSION {
            return None;
        }
        let u64_at = |at: usize| body[at..at + 8].try_into().ok().map(u64::from_le_bytes);
        let keys = u64_at(24)?;
        let mark = match body[6] {
            KIND_OPEN => Mark::Open { keys },
            KIND_CLOSED => Mark::Closed(Digest {
                keys,
                live: u64_at(32)?,
                sum: u128::from_le_bytes(body[40..56].try_into().ok()?),
            }),
            _ => return None,
        };
        Some(Record {
            sequence: u64_at(8)?,
            generation: u64_at(16)?,
            mark,
        })
    }
}

/// What reading the file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// No file, or an empty one (a crash while it was first created).
    Absent,
    /// The newest valid record, and the slot it is in.
    Record(Record, u64),
    /// A file with no valid record: damaged.
    Unreadable {
        /// Its length.
        len: u64,
    },
}

/// Reads `<dir>/ACKED`.
pub(crate) fn read(dir: &Path) -> io::Result<Found> {
    let path = dir.join(ACKED_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() {
        return Ok(Found::Absent);
    }
    let newest = (0..2u64)
        .filter_map(|slot| {
            let start = (slot * SLOT_LEN) as usize;
            Record::decode(bytes.get(start..)?).map(|record| (record, slot))
        })
        .max_by_key(|(record, _)| record.sequence);
    Ok(match newest {
        Some((record, slot)) => Found::Record(record, slot),
        None => Found::Unreadable {
            len: bytes.len() as u64,
        },
    })
}

/// The open `ACKED` file of a store.
#[derive(Debug)]
pub(crate) struct Acked {
    file: File,
    path: PathBuf,
    state: Mutex<Slots>,
}

#[derive(Debug)]
struct Slots {
    /// The sequence number of the newest record written.
    sequence: u64,
    /// The slot of the newest record known to be synced (`None`: neither).
    durable: Option<u64>,
    /// Whether a record newer than the durable one was written unsynced.
    unsynced: bool,
    last_sync: Instant,
}

impl Acked {
    /// Opens (or creates, 0600) `<dir>/ACKED`, after [`read`] found `found`.
    /// Whatever is in the file is synced first, so the slot it was read from
    /// can be trusted as durable.
    pub(crate) fn open(dir: &Path, found: Found) -> io::Result<Acked> {
        let path = dir.join(ACKED_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::layout::FILE_MODE)
            .open(&path)?;
        file.set_permissions(std::fs::Permissions::from_mode(crate::layout::FILE_MODE))?;
        file.sync_all()?;
        crate::layout::sync_dir(dir)?;
        let (sequence, durable) = match found {
            Found::Record(record, slot) => (record.sequence, Some(slot)),
            Found::Absent | Found::Unreadable { .. } => (0, None),
        };
        Ok(Acked {
            file,
            path,
            state: Mutex::new(Slots {
                sequence,
                durable,
                unsynced: false,
                last_sync: Instant::now(),
            }),
        })
    }

    /// The file's path, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `mark` into the slot that does not hold the durable record.
    fn put(&self, slots: &mut Slots, generation: u64, mark: Mark) -> io::Result<u64> {
        slots.sequence += 1;
        let slot = match slots.durable {
            Some(durable) => 1 - durable,
            None => 0,
        };
        let record = Record {
            sequence: slots.sequence,
            generation,
            mark,
        };
        self.file.write_all_at(&record.encode(), slot * SLOT_LEN)?;
        Ok(slot)
    }

    /// Writes `mark` and syncs it: when this returns, the record survives power
    /// loss.
    pub(crate) fn write_durable(&self, generation: u64, mark: Mark) -> io::Result<()> {
        let mut slots = self.slots();
        let slot = self.put(&mut slots, generation, mark)?;
        self.file.sync_data()?;
        slots.durable = Some(slot);
        slots.unsynced = false;
        slots.last_sync = Instant::now();
        Ok(())
    }

    /// Writes `mark` without waiting for the disk (a process kill cannot lose
    /// it), syncing it if the last sync was a while ago.
    pub(crate) fn write_after_flush(&self, generation: u64, mark: Mark) -> io::Result<()> {
        let mut slots = self.slots();
        let slot = self.put(&mut slots, generation, mark)?;
        slots.unsynced = true;
        if slots.last_sync.elapsed() >= SYNC_EVERY {
            self.file.sync_data()?;
            slots.durable = Some(slot);
            slots.unsynced = false;
            slots.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Whether a record was written since the last sync.
    #[cfg(test)]
    pub(crate) fn has_unsynced(&self) -> bool {
        self.slots().unsynced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(keys: u64) -> Digest {
        Digest {
            keys,
            live: keys - 1,
            sum: u128::MAX - u128::from(keys),
        }
    }

    #[test]
    fn records_round_trip_and_the_newest_valid_slot_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), Found::Absent);
        let acked = Acked::open(dir.path(), Found::Absent).unwrap();
        acked.write_durable(1, Mark::Open { keys: 0 }).unwrap();
        acked.write_after_flush(1, Mark::Open { keys: 5 }).unwrap();
        acked.write_durable(1, Mark::Closed(digest(7))).unwrap();
        match read(dir.path()).unwrap() {
            Found::Record(record, _) => assert_eq!(
                record,
                Record {
                    sequence: 3,
                    generation: 1,
                    mark: Mark::Closed(digest(7))
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsynced_records_never_overwrite_the_durable_one() {
        let dir = tempfile::tempdir().unwrap();
        let acked = Acked::open(dir.path(), Found::Absent).unwrap();
        acked.write_durable(2, Mark::Open { keys: 3 }).unwrap();
        for keys in 4..10 {
            acked.write_after_flush(2, Mark::Open { keys }).unwrap();
        }
        assert!(acked.has_unsynced());
        // Destroy the slot of the unsynced records, as a torn write would: the
        // durable record is still there.
        let bytes = std::fs::read(dir.path().join(ACKED_FILE)).unwrap();
        let durable_slot = (0..2)
            .find(|slot| {
                Record::decode(&bytes[(slot * SLOT_LEN) as usize..])
                    .is_some_and(|r| r.mark == Mark::Open { keys: 3 })
            })
            .expect("the durable record is in one slot");
        let other = (1 - durable_slot) * SLOT_LEN;
        acked.file.write_all_at(&[0xee; 8], other + 8).unwrap();
        match read(dir.path()).unwrap() {
            Found::Record(record, slot) => {
                assert_eq!(record.mark, Mark::Open { keys: 3 });
                assert_eq!(slot, durable_slot);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_without_a_valid_record_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ACKED_FILE), [0x55; 100]).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Found::Unreadable { len: 100 });
    }
}
