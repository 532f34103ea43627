//! The write-ahead journal: where a write becomes durable before it is
//! acknowledged, with one `fdatasync` per batch of writes.
//!
//! ```text
//! <dir>/journal/<generation, 16 hex digits>.log
//! ```
//!
//! # Segment format (all integers little-endian)
//!
//! ```text
//! header  "THETAJNL" | version: u32 = 1 | flags: u32 | generation: u64 | salt: u64
//!         | crc32c(previous 32 bytes): u32
//! batch   len: u32 | offset: u64 | crc32c(salt ++ offset ++ len ++ records): u32 | records
//! record  1 (put) | actor id: 16 bytes | snapshot length: u32 | snapshot bytes
//!         2 (delete) | actor id: 16 bytes
//! ```
//!
//! `offset` is the batch's own position in the segment and `salt` a random
//! number drawn when the segment is created, so a valid batch header can only be
//! a real one at its real place: bytes inside a snapshot can never pass as one
//! (their writer cannot know the salt). Flag bit 0 (`SYNCED`) says every batch
//! was synced before the next was written (durable mode).
//!
//! # What a crash can leave, and how it is read
//!
//! A batch is acknowledged only after it was written whole (and, in durable
//! mode, synced). The header of a segment is synced (with the journal directory)
//! before any batch goes into it, and a segment is synced before the next one is
//! created. So the only damage a crash can do is to the *tail of the newest
//! segment* (the last batch, cut off or not written at all; in buffered mode,
//! any of the batches since the last sync) and to the header of a segment whose
//! creation it interrupted (which then holds no batch).
//!
//! Replay reads the segments in order and, in the newest one, stops at the first
//! batch that does not check out: the torn tail. Anything else is damage to
//! acknowledged data and fails the open with [`FsError::CorruptJournal`], never
//! skipped: a bad batch in an older segment, a bad header of a segment that has
//! batches, and, in a `SYNCED` segment, a bad batch followed by a valid one
//! (found by scanning the rest of the segment for a header that names its own
//! offset and passes the salted checksum).
//!
//! A failed append (`ENOSPC`, `EIO`) is cut off again (`ftruncate` back to the
//! last good length) before anything else is appended, so no half-written batch
//! ever sits in the middle of a segment; if even that fails the store is
//! poisoned.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use theta::ActorId;
use theta::persistence::envelope::MAX_ENVELOPE_LEN;

use crate::{FsError, layout};

pub(crate) const JOURNAL: &str = "journal";
const SEGMENT_EXT: &str = ".log";
const SEGMENT_MAGIC: [u8; 8] = *b"THETAJNL";
const SEGMENT_VERSION: u32 = 1;
const SEGMENT_HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 4;
/// Segment flag: every batch was synced before the next one was written.
const SYNCED: u32 = 1;
const BATCH_HEADER_LEN: usize = 4 + 8 + 4;
const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// A put record without its snapshot bytes: kind, id, length.
const PUT_FIXED_LEN: usize = 1 + 16 + 4;
/// Bytes read per `read` call during replay.
const READ_CHUNK: usize = 1 << 20;

/// Starts a batch in `buf` (clearing it): room for the batch header, which
/// [`Segment::append`] fills in.
pub(crate) fn start_batch(buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(BATCH_HEADER_LEN, 0);
}

/// Adds the record of a put (`Some(snapshot)`) or a delete (`None`) to the
/// batch in `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, id: ActorId, snapshot: Option<&[u8]>) {
    match snapshot {
        Some(bytes) => {
            let len = u32::try_from(bytes.len())
                .expect("a snapshot fits a record: envelopes are at most MAX_ENVELOPE_LEN bytes");
            buf.reserve(PUT_FIXED_LEN + bytes.len());
            buf.push(KIND_PUT);
            buf.extend_from_slice(id.as_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(bytes);
        }
        None => {
            buf.push(KIND_DELETE);
            buf.extend_from_slice(id.as_bytes());
        }
    }
}

/// Whether a snapshot of `len` bytes can be journaled.
pub(crate) fn fits(len: usize) -> bool {
    len <= MAX_ENVELOPE_LEN
}

fn segment_name(generation: u64) -> String {
    format!("{generation:016x}{SEGMENT_EXT}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_EXT)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn header(generation: u64, flags: u32, salt: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    out[16..24].copy_from_slice(&generation.to_le_bytes());
    out[24..32].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&out[..32]);
    out[32..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The flags and salt of a valid header of segment `generation`.
fn parse_header(bytes: &[u8; SEGMENT_HEADER_LEN], generation: u64) -> Option<(u32, u64)> {
    let flags = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let salt = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
    (*bytes == header(generation, flags, salt)).then_some((flags, salt))
}

/// The checksum of a batch at `offset` whose records are `records`.
fn batch_crc(salt: u64, offset: u64, records: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&salt.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &offset.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &(records.len() as u32).to_le_bytes());
    crc32c::crc32c_append(crc, records)
}

/// Why a segment could not be created.
#[derive(Debug)]
pub(crate) enum CreateError {
    /// Creating or writing failed: no harm done, it can be tried again.
    Plain(FsError),
    /// A sync failed: the store must be poisoned.
    Sync(FsError),
}

/// Why an append failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The append failed and the segment was cut back: nothing of it remains.
    Undone(io::Error),
    /// The append failed and cutting it back failed too: the segment may end in
    /// a partial batch, so nothing may be appended after it.
    Stuck { error: io::Error, undo: io::Error },
}

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Segment {
    generation: u64,
    salt: u64,
    path: PathBuf,
    file: File,
    /// Bytes known to be whole batches (or the header).
    len: u64,
}

impl Segment {
    /// Creates segment `generation` in `journal` and makes it (its header and
    /// its directory entry) durable. `synced`: every batch will be synced before
    /// the next one is appended.
    pub(crate) fn create(
        journal: &Path,
        generation: u64,
        synced: bool,
    ) -> Result<Segment, CreateError> {
        let path = journal.join(segment_name(generation));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(layout::FILE_MODE)
            .open(&path)
            .map_err(|e| CreateError::Plain(FsError::io("creating journal segment", &path, e)))?;
        let salt = uuid::Uuid::new_v4().as_u64_pair().0;
        let flags = if synced { SYNCED } else { 0 };
        if let Err(e) = file.write_all(&header(generation, flags, salt)) {
            // A segment whose header is cut short is read as empty, wherever it
            // is, so a failed removal does no harm either.
            let _ = fs::remove_file(&path);
            let error = FsError::io("writing the header of journal segment", &path, e);
            return Err(CreateError::Plain(error));
        }
        file.sync_data()
            .map_err(|e| FsError::io("syncing journal segment", &path, e))
            .and_then(|()| layout::sync_dir(journal))
            .map_err(CreateError::Sync)?;
        Ok(Segment {
            generation,
            salt,
            path,
            file,
            len: SEGMENT_HEADER_LEN as u64,
        })
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the segment.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends the batch in `batch` (begun with [`start_batch`]; its header is
    /// filled in here) at the end of the good part of the segment. On failure
    /// the segment is cut back to that length (see [`AppendError`]).
    pub(crate) fn append(
        &mut self,
        batch: &mut [u8],
        after_write: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), AppendError> {
        let records_len = batch.len() - BATCH_HEADER_LEN;
        let len = u32::try_from(records_len).map_err(|_| {
            AppendError::Undone(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a batch of 4 GiB or more",
            ))
        })?;
        let crc = batch_crc(self.salt, self.len, &batch[BATCH_HEADER_LEN..]);
        batch[..4].copy_from_slice(&len.to_le_bytes());
        batch[4..12].copy_from_slice(&self.len.to_le_bytes());
        batch[12..16].copy_from_slice(&crc.to_le_bytes());
        // Positional writes: after a failed append the next one starts at the
        // good length again, whatever the failed one left behind.
        let result = self
            .file
            .write_all_at(batch, self.len)
            .and_then(|()| after_write());
        match result {
            Ok(()) => {
                self.len += batch.len() as u64;
                Ok(())
            }
            Err(error) => match self.file.set_len(self.len) {
                Ok(()) => Err(AppendError::Undone(error)),
                Err(undo) => Err(AppendError::Stuck { error, undo }),
            },
        }
    }

    /// Cuts the segment back to `len` bytes (a length [`Segment::len`] reported
    /// earlier): drops the batch whose sync failed, so that it does not come
    /// back at the next open although it was refused.
    pub(crate) fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    /// `fdatasync`: every appended batch is durable once this returns `Ok`.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The segments in `journal`, oldest first. Files with other names are ignored.
pub(crate) fn segments(journal: &Path) -> Result<Vec<(u64, PathBuf)>, FsError> {
    let entries = match fs::read_dir(journal) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::io("listing", journal, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("listing", journal, e))?;
        let name = entry.file_name();
        if let Some(generation) = name.to_str().and_then(parse_segment_name) {
            out.push((generation, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(generation, _)| *generation);
    Ok(out)
}

/// What the journal says: the last put (`Some`) or delete (`None`) of every id it
/// mentions, in the order of the segments and records.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub(crate) entries: HashMap<ActorId, Option<Vec<u8>>>,
    /// The segments read, oldest first.
    pub(crate) segments: Vec<(u64, PathBuf)>,
    /// Records applied.
    pub(crate) records: u64,
}

/// Reads every segment in `journal`.
pub(crate) fn replay(journal: &Path) -> Result<Replayed, FsError> {
    let segments = segments(journal)?;
    let mut replayed = Replayed::default();
    let newest = segments.last().map(|(generation, _)| *generation);
    for (generation, path) in &segments {
        let segment = SegmentReader::open(path, *generation, Some(*generation) == newest)?;
        segment.read_into(&mut replayed)?;
    }
    replayed.segments = segments;
    Ok(replayed)
}

struct SegmentReader<'a> {
    path: &'a Path,
    generation: u64,
    file: File,
    len: u64,
    newest: bool,
}

impl<'a> SegmentReader<'a> {
    fn open(path: &'a Path, generation: u64, newest: bool) -> Result<Self, FsError> {
        let file = File::open(path).map_err(|e| FsError::io("opening journal segment", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| FsError::io("inspecting journal segment", path, e))?
            .len();
        Ok(Self {
            path,
            generation,
            file,
            len,
            newest,
        })
    }

    fn corrupt(&self, offset: u64, cause: &'static str) -> FsError {
        FsError::CorruptJournal {
            path: self.path.to_path_buf(),
            offset,
            cause,
        }
    }

    fn io(&self, e: io::Error) -> FsError {
        FsError::io("reading journal segment", self.path, e)
    }

    fn read_into(self, replayed: &mut Replayed) -> Result<(), FsError> {
        let mut reader = io::BufReader::with_capacity(READ_CHUNK, &self.file);
        let mut head = [0u8; SEGMENT_HEADER_LEN];
        let got = read_full(&mut reader, &mut head).map_err(|e| self.io(e))?;
        let parsed = (got == SEGMENT_HEADER_LEN)
            .then(|| parse_header(&head, self.generation))
            .flatten();
        let Some((flags, salt)) = parsed else {
            // A segment is created with its header synced before any batch is
            // appended: a bad header with nothing after it is a creation that a
            // crash or an error cut short (it holds no batch); with more after
            // it, it is damage.
            return if self.len <= SEGMENT_HEADER_LEN as u64 {
                Ok(())
            } else {
                Err(self.corrupt(0, "bad segment header"))
            };
        };

        let mut offset = SEGMENT_HEADER_LEN as u64;
        let mut records = Vec::new();
        loop {
            let mut batch_header = [0u8; BATCH_HEADER_LEN];
            let got = read_full(&mut reader, &mut batch_header).map_err(|e| self.io(e))?;
            if got == 0 {
                return Ok(());
            }
            let len = u32::from_le_bytes(batch_header[..4].try_into().expect("4 bytes")) as u64;
            let claimed = u64::from_le_bytes(batch_header[4..12].try_into().expect("8 bytes"));
            let crc = u32::from_le_bytes(batch_header[12..].try_into().expect("4 bytes"));
            let remaining = self.len.saturating_sub(offset + BATCH_HEADER_LEN as u64);
            let valid = got == BATCH_HEADER_LEN && claimed == offset && len <= remaining && {
                // `len` is bounded by the file's length, so this allocation is.
                records.clear();
                records.resize(len as usize, 0);
                let got = read_full(&mut reader, &mut records).map_err(|e| self.io(e))?;
                got == records.len() && batch_crc(salt, offset, &records) == crc
            };
            if !valid {
                return self.bad_batch(offset, salt, flags);
            }
            let parsed = parse_records(&records).map_err(|cause| self.corrupt(offset, cause))?;
            for (id, snapshot) in parsed {
                replayed.entries.insert(id, snapshot.map(<[u8]>::to_vec));
                replayed.records += 1;
            }
            offset += BATCH_HEADER_LEN as u64 + len;
        }
    }

    /// A batch at `offset` does not check out: the torn tail of the newest
    /// segment, or damage.
    fn bad_batch(&self, offset: u64, salt: u64, flags: u32) -> Result<(), FsError> {
        if !self.newest {
            return Err(self.corrupt(offset, "damaged batch in a sealed segment"));
        }
        if flags & SYNCED != 0 && self.valid_batch_after(offset, salt)? {
            return Err(self.corrupt(offset, "damaged batch followed by valid ones"));
        }
        Ok(())
    }

    /// Whether a valid batch starts anywhere after `offset`.
    fn valid_batch_after(&self, offset: u64, salt: u64) -> Result<bool, FsError> {
        let mut reader = &self.file;
        let mut window = Vec::with_capacity(READ_CHUNK + BATCH_HEADER_LEN);
        let mut window_start = offset + 1;
        reader
            .seek(SeekFrom::Start(window_start))
            .map_err(|e| self.io(e))?;
        loop {
            let keep = window.len().saturating_sub(BATCH_HEADER_LEN - 1);
            window_start += keep as u64;
            window.drain(..keep);
            let before = window.len();
            window.resize(before + READ_CHUNK, 0);
            let got = read_full(&mut reader, &mut window[before..]).map_err(|e| self.io(e))?;
            window.truncate(before + got);
            for i in 0..window.len().saturating_sub(BATCH_HEADER_LEN - 1) {
                let at = window_start + i as u64;
                let claimed = u64::from_le_bytes(window[i + 4..i + 12].try_into().expect("8"));
                if claimed == at && self.batch_checks_out(at, &window[i..i + 16], salt)? {
                    return Ok(true);
                }
            }
            if got == 0 {
                return Ok(false);
            }
        }
    }

    fn batch_checks_out(&self, at: u64, header: &[u8], salt: u64) -> Result<bool, FsError> {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        let start = at + BATCH_HEADER_LEN as u64;
        if len > self.len.saturating_sub(start) {
            return Ok(false);
        }
        let mut records = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut records, start)
            .map_err(|e| self.io(e))?;
        Ok(batch_crc(salt, at, &records) == crc)
    }
}
/// A put (`Some(snapshot)`) or a delete (`None`) of an actor's snapshot.
type Record<'a> = (ActorId, Option<&'a [u8]>);

/// The records of a batch that checked out, in order. A malformed one in a
/// checksummed batch is not a torn write: it is reported as damage.
fn parse_records(mut records: &[u8]) -> Result<Vec<Record<'_>>, &'static str> {
    const CUT_SHORT: &str = "record cut short inside a checksummed batch";
    let mut out = Vec::new();
    while let Some((&kind, rest)) = records.split_first() {
        let Some((id, rest)) = rest.split_first_chunk::<16>() else {
            return Err(CUT_SHORT);
        };
        let id = ActorId::from_bytes(*id);
        match kind {
            KIND_DELETE => {
                out.push((id, None));
                records = rest;
            }
            KIND_PUT => {
                let Some((len, rest)) = rest.split_first_chunk::<4>() else {
                    return Err(CUT_SHORT);
                };
                let len = u32::from_le_bytes(*len) as usize;
                if rest.len() < len {
                    return Err(CUT_SHORT);
                }
                let (snapshot, rest) = rest.split_at(len);
                out.push((id, Some(snapshot)));
                records = rest;
            }
            _ => return Err("unknown record kind inside a checksummed batch"),
        }
    }
    Ok(out)
}

/// Reads until `buf` is full or the end of the input; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> ActorId {
        ActorId::from_u128(n)
    }

    /// A batch for [`write_segment`]: (id number, put or delete) records.
    type Batch<'a> = &'a [(u128, Option<&'a [u8]>)];

    /// Creates segment `generation` in `dir` with one appended batch per entry
    /// of `batches`; returns its path and the offsets of the batches.
    fn write_segment(
        dir: &Path,
        generation: u64,
        synced: bool,
        batches: &[Batch<'_>],
    ) -> (PathBuf, Vec<u64>) {
        let mut segment = Segment::create(dir, generation, synced).unwrap();
        let mut offsets = Vec::new();
        let mut buf = Vec::new();
        for batch in batches {
            start_batch(&mut buf);
            for (n, snapshot) in *batch {
                encode(&mut buf, id(*n), *snapshot);
            }
            offsets.push(segment.len());
            segment.append(&mut buf, || Ok(())).unwrap();
        }
        (segment.path().to_path_buf(), offsets)
    }

    fn flip(path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize] ^= 0x01;
        fs::write(path, bytes).unwrap();
    }

    const ONE_TWO: Batch<'static> = &[(1, Some(b"one")), (2, Some(b"two"))];

    #[test]
    fn last_record_per_id_wins_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, true, &[ONE_TWO]);
        write_segment(
            dir.path(),
            2,
            true,
            &[&[(1, None), (2, Some(b"two again"))], &[(3, Some(b""))]],
        );
        let replayed = replay(dir.path()).unwrap();
        assert_eq!(replayed.records, 5);
        assert_eq!(replayed.entries[&id(1)], None);
        assert_eq!(replayed.entries[&id(2)].as_deref(), Some(&b"two again"[..]));
        assert_eq!(replayed.entries[&id(3)].as_deref(), Some(&b""[..]));
        assert_eq!(replayed.segments.len(), 2);
    }

    #[test]
    fn every_cut_of_the_newest_segment_keeps_the_whole_batches_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) =
            write_segment(dir.path(), 7, true, &[ONE_TWO, &[(3, Some(b"three"))]]);
        let whole = fs::read(&path).unwrap();
        for cut in SEGMENT_HEADER_LEN..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let replayed = replay(dir.path()).unwrap();
            let expected = if cut as u64 >= offsets[1] { 2 } else { 0 };
            assert_eq!(replayed.entries.len(), expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_torn_last_batch_of_the_newest_segment_is_dropped() {
        // Damage anywhere in the last batch: the part a crash may have torn.
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = write_segment(dir.path(), 1, true, &[ONE_TWO, ONE_TWO]);
        let len = fs::metadata(&path).unwrap().len();
        for at in offsets[1]..len {
            flip(&path, at);
            let replayed = replay(dir.path()).unwrap();
            assert_eq!(replayed.records, 2, "flip at {at}");
            flip(&path, at);
        }
    }

    #[test]
    fn damage_followed_by_a_valid_batch_is_an_error_in_a_synced_segment() {
        let dir = tempfile::tempdir().unwrap();
        let batches: &[Batch<'_>] = &[ONE_TWO, ONE_TWO, &[(3, None)]];
        let (path, offsets) = write_segment(dir.path(), 1, true, batches);
        for at in [offsets[0], offsets[0] + 5, offsets[0] + 20, offsets[1] + 17] {
            flip(&path, at);
            let err = replay(dir.path()).unwrap_err();
            let damaged = if at >= offsets[1] {
                offsets[1]
            } else {
                offsets[0]
            };
            assert!(
                matches!(&err, FsError::CorruptJournal { offset, .. } if *offset == damaged),
                "flip at {at}: {err}"
            );
            flip(&path, at);
        }
        assert_eq!(replay(dir.path()).unwrap().records, 5);
    }

    #[test]
    fn in_a_buffered_segment_the_first_bad_batch_ends_it() {
        // Unsynced batches can reach the disk out of order: what follows a gap
        // may be there or not, and is dropped with it.
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = write_segment(dir.path(), 1, false, &[ONE_TWO, ONE_TWO, ONE_TWO]);
        flip(&path, offsets[1] + 20);
        assert_eq!(replay(dir.path()).unwrap().records, 2);
    }

    #[test]
    fn snapshot_bytes_shaped_like_a_batch_are_never_read_as_one() {
        // A snapshot holding a whole valid-looking batch (header with a right
        // offset and a checksum without the salt) after a torn batch header.
        let dir = tempfile::tempdir().unwrap();
        let mut fake = vec![0u8; BATCH_HEADER_LEN];
        encode(&mut fake, id(9), Some(b"forged"));
        let (path, offsets) = write_segment(dir.path(), 1, true, &[ONE_TWO]);
        let second = offsets[0] + 16 + (fake.len() as u64);
        let fake_at = second + BATCH_HEADER_LEN as u64 + 1 + 16 + 4;
        let records = fake[BATCH_HEADER_LEN..].to_vec();
        let unsalted = batch_crc(0, fake_at, &records);
        fake[..4].copy_from_slice(&(records.len() as u32).to_le_bytes());
        fake[4..12].copy_from_slice(&fake_at.to_le_bytes());
        fake[12..16].copy_from_slice(&unsalted.to_le_bytes());
        let mut segment_bytes = fs::read(&path).unwrap();
        // A second batch carrying `fake` as its snapshot, its header torn.
        let mut batch = vec![0u8; BATCH_HEADER_LEN];
        encode(&mut batch, id(8), Some(&fake));
        segment_bytes.extend_from_slice(&batch);
        fs::write(&path, segment_bytes).unwrap();
        let replayed = replay(dir.path()).unwrap();
        assert_eq!(replayed.records, 2);
        assert!(!replayed.entries.contains_key(&id(9)));
    }

    #[test]
    fn damage_in_an_older_segment_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = write_segment(dir.path(), 1, false, &[ONE_TWO]);
        write_segment(dir.path(), 2, true, &[]);
        for (at, expected) in [(3, 0), (14, 0), (offsets[0] + 2, offsets[0])] {
            flip(&path, at);
            let err = replay(dir.path()).unwrap_err();
            assert!(
                matches!(&err, FsError::CorruptJournal { path: p, offset, .. }
                    if p == &path && *offset == expected),
                "flip at {at}: {err}"
            );
            assert!(err.to_string().contains("0000000000000001.log"), "{err}");
            flip(&path, at);
        }
    }

    #[test]
    fn a_segment_with_a_bad_header_is_empty_only_if_it_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_name(3));
        fs::write(&path, &header(3, SYNCED, 1)[..10]).unwrap();
        // Not the newest: a creation that failed before a newer one succeeded.
        write_segment(dir.path(), 4, true, &[ONE_TWO]);
        assert_eq!(replay(dir.path()).unwrap().entries.len(), 2);
        fs::remove_file(dir.path().join(segment_name(4))).unwrap();
        assert!(replay(dir.path()).unwrap().entries.is_empty());

        let (path, _) = write_segment(dir.path(), 5, true, &[ONE_TWO]);
        flip(&path, 20);
        assert!(matches!(
            replay(dir.path()),
            Err(FsError::CorruptJournal { offset: 0, .. })
        ));
    }

    #[test]
    fn a_malformed_record_in_a_checksummed_batch_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 1, true).unwrap();
        let mut buf = Vec::new();
        start_batch(&mut buf);
        encode(&mut buf, id(1), Some(b"x"));
        buf.push(7); // an unknown kind, checksummed with the rest
        buf.extend_from_slice(id(2).as_bytes());
        segment.append(&mut buf, || Ok(())).unwrap();
        assert!(matches!(
            replay(dir.path()),
            Err(FsError::CorruptJournal {
                cause: "unknown record kind inside a checksummed batch",
                ..
            })
        ));
    }

    #[test]
    fn a_huge_claimed_length_is_not_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = write_segment(dir.path(), 1, true, &[]);
        let mut bytes = fs::read(&path).unwrap();
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&[0; 4 + 64]);
        fs::write(&path, bytes).unwrap();
        assert_eq!(replay(dir.path()).unwrap().records, 0);
    }

    #[test]
    fn a_failed_append_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 1, true).unwrap();
        let mut buf = Vec::new();
        start_batch(&mut buf);
        encode(&mut buf, id(1), Some(b"one"));
        segment.append(&mut buf, || Ok(())).unwrap();
        let good = segment.len();
        let failed = segment.append(&mut buf, || Err(io::Error::from_raw_os_error(28)));
        assert!(matches!(failed, Err(AppendError::Undone(_))));
        assert_eq!(segment.len(), good);
        assert_eq!(fs::metadata(segment.path()).unwrap().len(), good);
        start_batch(&mut buf);
        encode(&mut buf, id(3), None);
        segment.append(&mut buf, || Ok(())).unwrap();
        let replayed = replay(dir.path()).unwrap();
        assert_eq!(replayed.records, 2);
        assert_eq!(replayed.entries[&id(3)], None);
    }

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(0xabc)), Some(0xabc));
        for name in ["1.log", "000000000000000G.log", "0000000000000001.tmp", "x"] {
            assert_eq!(parse_segment_name(name), None, "{name}");
        }
    }
}
