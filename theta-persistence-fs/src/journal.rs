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
//! header  "THETAJNL" | version: u32 = 1 | generation: u64 | crc32c(previous 20 bytes): u32
//! record  body_len: u32 | crc32c(body_len bytes ++ body): u32 | body
//! body    kind: u8 (1 = put, 2 = delete) | actor id: 16 bytes | snapshot bytes (put only)
//! ```
//!
//! # What a crash can leave, and how it is read
//!
//! Records are appended batch by batch; a batch is acknowledged only after its
//! `fdatasync`, and the next batch is written only after that. The header of a
//! segment is synced (with the journal directory) before any record goes into it,
//! and a segment is synced before the next one is created. So the only damage a
//! crash can do is to the *tail of the newest segment* (records of the last,
//! unacknowledged batch, cut off or not written at all) and to the header of a
//! segment whose creation it interrupted (which holds no records).
//!
//! Replay therefore reads the newest segment up to its first record that does not
//! check out (too short, a length that runs past the end, a bad checksum, an
//! unknown kind) and stops there without looking further: bytes after a torn
//! record are never interpreted, so a snapshot payload that happens to contain
//! record-shaped bytes cannot be mistaken for a record. A bad record anywhere
//! else (an older segment, or a damaged header of a segment that has records) is
//! damage to acknowledged data and fails the open with
//! [`FsError::CorruptJournal`]; it is never skipped.
//!
//! A failed append (`ENOSPC`, `EIO`) is cut off again (`ftruncate` back to the
//! last good length) before anything else is appended, so no half-written batch
//! ever sits in the middle of a segment; if even that fails the store is poisoned.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use theta::ActorId;
use theta::persistence::envelope::MAX_ENVELOPE_LEN;

use crate::{FsError, layout};

pub(crate) const JOURNAL: &str = "journal";
const SEGMENT_EXT: &str = ".log";
const SEGMENT_MAGIC: [u8; 8] = *b"THETAJNL";
const SEGMENT_VERSION: u32 = 1;
const SEGMENT_HEADER_LEN: usize = 8 + 4 + 8 + 4;
const RECORD_HEADER_LEN: usize = 4 + 4;
const KIND_PUT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// The body of a record without its snapshot bytes: kind and id.
const BODY_FIXED_LEN: usize = 1 + 16;
/// The largest body a record can have: a put of the largest envelope.
const MAX_BODY_LEN: usize = BODY_FIXED_LEN + MAX_ENVELOPE_LEN;
/// Bytes read per `read` call during replay.
const READ_CHUNK: usize = 1 << 20;

/// Appends the record of a put (`Some(snapshot)`) or a delete (`None`) to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, id: ActorId, snapshot: Option<&[u8]>) {
    let payload = snapshot.unwrap_or_default();
    let body_len = u32::try_from(BODY_FIXED_LEN + payload.len())
        .expect("a snapshot fits a record: envelopes are at most MAX_ENVELOPE_LEN bytes");
    let len_bytes = body_len.to_le_bytes();
    let kind = if snapshot.is_some() {
        KIND_PUT
    } else {
        KIND_DELETE
    };
    let mut crc = crc32c::crc32c(&len_bytes);
    crc = crc32c::crc32c_append(crc, &[kind]);
    crc = crc32c::crc32c_append(crc, id.as_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    buf.reserve(RECORD_HEADER_LEN + BODY_FIXED_LEN + payload.len());
    buf.extend_from_slice(&len_bytes);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(payload);
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

fn header(generation: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..].copy_from_slice(&crc.to_le_bytes());
    out
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

/// Why a segment could not be created.
#[derive(Debug)]
pub(crate) enum CreateError {
    /// Creating or writing failed: no harm done, it can be tried again.
    Plain(FsError),
    /// A sync failed: the store must be poisoned.
    Sync(FsError),
}

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct Segment {
    generation: u64,
    path: PathBuf,
    file: File,
    /// Bytes known to be whole records (or the header).
    len: u64,
}

impl Segment {
    /// Creates segment `generation` in `journal` and makes it (its header and its
    /// directory entry) durable.
    pub(crate) fn create(journal: &Path, generation: u64) -> Result<Segment, CreateError> {
        let path = journal.join(segment_name(generation));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(layout::FILE_MODE)
            .open(&path)
            .map_err(|e| CreateError::Plain(FsError::io("creating journal segment", &path, e)))?;
        if let Err(e) = file.write_all(&header(generation)) {
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

    /// Appends whole records at the end of the good part of the segment. On
    /// failure the segment is cut back to that length (see [`AppendError`]).
    pub(crate) fn append(
        &mut self,
        records: &[u8],
        after_write: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), AppendError> {
        // Positional writes: after a failed append the next one starts at the
        // good length again, whatever the failed one left behind.
        let result = self
            .file
            .write_all_at(records, self.len)
            .and_then(|()| after_write());
        match result {
            Ok(()) => {
                self.len += records.len() as u64;
                Ok(())
            }
            Err(error) => match self.file.set_len(self.len) {
                Ok(()) => Err(AppendError::Undone(error)),
                Err(undo) => Err(AppendError::Stuck { error, undo }),
            },
        }
    }

    /// Cuts the segment back to `len` bytes (a length [`Segment::len`] reported
    /// earlier): drops the records of a batch whose sync failed, so that they do
    /// not come back at the next open although they were refused.
    pub(crate) fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    /// `fdatasync`: every appended record is durable once this returns `Ok`.
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
        read_segment(
            path,
            *generation,
            Some(*generation) == newest,
            &mut replayed,
        )?;
    }
    replayed.segments = segments;
    Ok(replayed)
}

fn read_segment(
    path: &Path,
    generation: u64,
    newest: bool,
    replayed: &mut Replayed,
) -> Result<(), FsError> {
    let file = File::open(path).map_err(|e| FsError::io("opening journal segment", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| FsError::io("inspecting journal segment", path, e))?
        .len();
    let mut reader = io::BufReader::with_capacity(READ_CHUNK, file);
    let corrupt = |offset: u64, cause: &'static str| FsError::CorruptJournal {
        path: path.to_path_buf(),
        offset,
        cause,
    };

    let mut head = [0u8; SEGMENT_HEADER_LEN];
    let header_ok = match read_full(&mut reader, &mut head) {
        Ok(SEGMENT_HEADER_LEN) => head == header(generation),
        Ok(_) => false,
        Err(e) => return Err(FsError::io("reading journal segment", path, e)),
    };
    if !header_ok {
        // A segment is created with its header synced before any record is
        // appended: a bad header with nothing after it is a creation that a crash
        // or an error cut short (it holds no records); with records after it, it
        // is damage.
        return if file_len <= SEGMENT_HEADER_LEN as u64 {
            Ok(())
        } else {
            Err(corrupt(0, "bad segment header"))
        };
    }

    let mut offset = SEGMENT_HEADER_LEN as u64;
    let mut body = Vec::new();
    loop {
        let mut record_header = [0u8; RECORD_HEADER_LEN];
        let got = read_full(&mut reader, &mut record_header)
            .map_err(|e| FsError::io("reading journal segment", path, e))?;
        if got == 0 {
            return Ok(());
        }
        let bad = |cause| {
            if newest {
                // The torn tail of the last, unacknowledged batch: stop here.
                Ok(())
            } else {
                Err(corrupt(offset, cause))
            }
        };
        if got < RECORD_HEADER_LEN {
            return bad("record header cut short");
        }
        let body_len = u32::from_le_bytes(record_header[..4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(record_header[4..].try_into().expect("4 bytes"));
        let remaining = file_len.saturating_sub(offset + RECORD_HEADER_LEN as u64);
        if body_len < BODY_FIXED_LEN as u64 || body_len > MAX_BODY_LEN as u64 {
            return bad("record length out of range");
        }
        if body_len > remaining {
            return bad("record runs past the end of the segment");
        }
        // `body_len` is bounded by the file's length, so this allocation is too.
        body.clear();
        body.resize(body_len as usize, 0);
        let got = read_full(&mut reader, &mut body).map_err(|e| FsError::io("reading", path, e))?;
        if got < body.len() {
            return bad("record cut short");
        }
        let computed = crc32c::crc32c_append(crc32c::crc32c(&record_header[..4]), &body);
        if computed != crc {
            return bad("record checksum mismatch");
        }
        let id = ActorId::from_bytes(body[1..BODY_FIXED_LEN].try_into().expect("16 bytes"));
        match body[0] {
            KIND_PUT => {
                replayed
                    .entries
                    .insert(id, Some(body[BODY_FIXED_LEN..].to_vec()));
            }
            KIND_DELETE if body.len() == BODY_FIXED_LEN => {
                replayed.entries.insert(id, None);
            }
            _ => return bad("unknown record kind"),
        }
        replayed.records += 1;
        offset += RECORD_HEADER_LEN as u64 + body_len;
    }
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

    fn write_segment(dir: &Path, generation: u64, records: &[u8]) -> PathBuf {
        let path = dir.join(segment_name(generation));
        let mut bytes = header(generation).to_vec();
        bytes.extend_from_slice(records);
        fs::write(&path, bytes).unwrap();
        path
    }

    fn two_records() -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, id(1), Some(b"one"));
        encode(&mut buf, id(2), Some(b"two"));
        buf
    }

    #[test]
    fn last_record_per_id_wins_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &two_records());
        let mut later = Vec::new();
        encode(&mut later, id(1), None);
        encode(&mut later, id(2), Some(b"two again"));
        encode(&mut later, id(3), Some(b""));
        write_segment(dir.path(), 2, &later);
        let replayed = replay(dir.path()).unwrap();
        assert_eq!(replayed.records, 5);
        assert_eq!(replayed.entries[&id(1)], None);
        assert_eq!(replayed.entries[&id(2)].as_deref(), Some(&b"two again"[..]));
        assert_eq!(replayed.entries[&id(3)].as_deref(), Some(&b""[..]));
        assert_eq!(replayed.segments.len(), 2);
    }

    #[test]
    fn every_cut_of_the_newest_segment_keeps_the_whole_records_before_it() {
        let records = two_records();
        let first_len = records.len() / 2;
        for cut in 0..records.len() {
            let dir = tempfile::tempdir().unwrap();
            write_segment(dir.path(), 7, &records[..cut]);
            let replayed = replay(dir.path()).unwrap();
            let expected = usize::from(cut >= first_len);
            assert_eq!(replayed.entries.len(), expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_bad_record_in_the_newest_segment_ends_it_without_looking_further() {
        let mut records = two_records();
        let first_len = records.len() / 2;
        records[first_len + 9] ^= 0x40; // an id byte of the second record
        let mut third = Vec::new();
        encode(&mut third, id(3), Some(b"three"));
        records.extend_from_slice(&third);
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &records);
        let replayed = replay(dir.path()).unwrap();
        assert_eq!(replayed.entries.len(), 1);
        assert!(replayed.entries.contains_key(&id(1)));
    }

    #[test]
    fn damage_in_an_older_segment_is_an_error_naming_file_and_offset() {
        for flip in [0usize, 5, 30, 40] {
            let dir = tempfile::tempdir().unwrap();
            let path = write_segment(dir.path(), 1, &two_records());
            write_segment(dir.path(), 2, &[]);
            let mut bytes = fs::read(&path).unwrap();
            bytes[flip] ^= 1;
            fs::write(&path, bytes).unwrap();
            let err = replay(dir.path()).unwrap_err();
            match &err {
                FsError::CorruptJournal {
                    path: at, offset, ..
                } => {
                    assert_eq!(at, &path);
                    let expected = if flip < SEGMENT_HEADER_LEN {
                        0
                    } else {
                        SEGMENT_HEADER_LEN as u64
                    };
                    assert_eq!(*offset, expected, "flip at {flip}");
                }
                other => panic!("unexpected error {other}"),
            }
            assert!(err.to_string().contains("0000000000000001.log"), "{err}");
        }
    }

    #[test]
    fn a_segment_with_a_bad_header_is_empty_only_if_it_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_name(3));
        fs::write(&path, &header(3)[..10]).unwrap();
        // Not the newest: a creation that failed before a newer one succeeded.
        write_segment(dir.path(), 4, &two_records());
        assert_eq!(replay(dir.path()).unwrap().entries.len(), 2);
        fs::remove_file(dir.path().join(segment_name(4))).unwrap();
        assert!(replay(dir.path()).unwrap().entries.is_empty());

        let mut bytes = header(4).to_vec();
        bytes[2] ^= 1;
        bytes.extend_from_slice(&two_records());
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            replay(dir.path()),
            Err(FsError::CorruptJournal { offset: 0, .. })
        ));
    }

    #[test]
    fn a_huge_claimed_length_is_not_allocated() {
        let mut record = Vec::new();
        record.extend_from_slice(&(MAX_BODY_LEN as u32).to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        record.extend_from_slice(&[KIND_PUT; 17]);
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &record);
        write_segment(dir.path(), 2, &[]);
        assert!(matches!(
            replay(dir.path()),
            Err(FsError::CorruptJournal {
                cause: "record runs past the end of the segment",
                ..
            })
        ));
    }

    #[test]
    fn a_failed_append_is_cut_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = Segment::create(dir.path(), 1).unwrap();
        segment.append(&two_records(), || Ok(())).unwrap();
        let good = segment.len();
        let failed = segment.append(&two_records(), || Err(io::Error::from_raw_os_error(28)));
        assert!(matches!(failed, Err(AppendError::Undone(_))));
        assert_eq!(segment.len(), good);
        assert_eq!(fs::metadata(segment.path()).unwrap().len(), good);
        let mut third = Vec::new();
        encode(&mut third, id(3), None);
        segment.append(&third, || Ok(())).unwrap();
        let replayed = replay(dir.path()).unwrap();
        assert_eq!(replayed.records, 3);
    }

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(0xabc)), Some(0xabc));
        for name in ["1.log", "000000000000000G.log", "0000000000000001.tmp", "x"] {
            assert_eq!(parse_segment_name(name), None, "{name}");
        }
    }
}
