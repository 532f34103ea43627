//! The write-ahead journal: where a write becomes durable before it is
//! acknowledged, with one `fdatasync` per batch of writes.
//!
//! ```text
//! <dir>/journal/<number, 16 hex digits>.log   the segments, numbered without gaps
//! <dir>/journal/START                         the number of the oldest one needed
//! ```
//!
//! # Segment format (all integers little-endian)
//!
//! ```text
//! header  "THETAJNL" | version: u32 = 2 | flags: u32 | number: u64 | salt: u64
//!         | previous number: u64 | previous salt: u64 | previous length: u64
//!         | crc32c(previous 56 bytes): u32
//! batch   len: u32 | offset: u64 | crc32c(salt ++ offset ++ len ++ records): u32 | records
//! record  1 (put) | actor id: 16 bytes | snapshot length: u32 | snapshot bytes
//!         2 (delete) | actor id: 16 bytes
//! ```
//!
//! `offset` is the batch's own position in the segment and `salt` a random
//! number drawn when the segment is created, so a valid batch header can only be
//! a real one at its real place: bytes inside a snapshot can never pass as one
//! (their writer cannot know the salt). Flag bit 0 (`SYNCED`) says every batch
//! was synced before the next was written (durable mode); bit 1 (`FIRST`) says
//! the segment has no predecessor (the first of a new store).
//!
//! The *previous* fields are the predecessor's number, salt and final length:
//! a segment is created only after its predecessor was synced whole, so they
//! seal it. Version 1 segments (layout 2) have the same batches under a shorter
//! header without these fields; they are still read.
//!
//! # What the journal can tell about itself
//!
//! Segments are numbered without gaps (a number is used only once its segment
//! exists) and removed oldest first, after `START` was moved past them; so the
//! journal must hold every segment from `START` to the newest. Replay reports,
//! naming the file, rather than skipping:
//!
//! - a missing segment (a gap, or the `START` segment gone), and a missing or
//!   damaged `START`;
//! - a sealed segment whose length is not the one its successor recorded (cut
//!   at a batch boundary, or grown), or that is not the segment its successor
//!   followed (another salt);
//! - a damaged batch in a sealed segment, a bad header of a segment that has
//!   batches, and, in a `SYNCED` newest segment, a bad batch followed by a
//!   valid one (found by scanning the rest of the segment for a header that
//!   names its own offset and passes the salted checksum).
//!
//! Only the newest segment may end in a torn batch (an unacknowledged write a
//! crash cut off; in buffered mode, everything after the first bad batch, which
//! a power loss may have reordered), and only the newest segment may have a
//! bad header with nothing after it (a creation a crash cut short; its number
//! is used again).
//!
//! What cannot be told without a separate manifest: whole batches cut from the
//! end of the newest segment, or the newest segment deleted outright, look
//! exactly like a journal that ended there.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use theta::ActorId;

use crate::dir::{Dir, Kind, StoreFile};
use crate::error::{Failure, FsError};
use crate::layout::{self, SEGMENT_HEADER_MAX, START_FILE};

const SEGMENT_MAGIC: [u8; 8] = *b"THETAJNL";
/// The segment version this build writes.
const SEGMENT_VERSION: u32 = 2;
const HEADER_LEN_V1: usize = 8 + 4 + 4 + 8 + 8 + 4;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 4;
const _: () = assert!(HEADER_LEN as u64 <= SEGMENT_HEADER_MAX);
/// Segment flag: every batch was synced before the next one was written.
const SYNCED: u32 = 1;
/// Segment flag: the segment has no predecessor.
const FIRST: u32 = 2;
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

/// Adds the record of a put (`Some(snapshot)`, at most `u32::MAX` bytes: the
/// write rule refused anything longer than an envelope) or a delete (`None`) to
/// the batch in `buf`.
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

/// What a segment's successor records about it: its number, salt and final
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) number: u64,
    pub(crate) salt: u64,
    pub(crate) len: u64,
}

fn header(number: u64, flags: u32, salt: u64, prev: Option<Link>) -> [u8; HEADER_LEN] {
    let prev = prev.unwrap_or(Link {
        number: 0,
        salt: 0,
        len: 0,
    });
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    out[16..24].copy_from_slice(&number.to_le_bytes());
    out[24..32].copy_from_slice(&salt.to_le_bytes());
    out[32..40].copy_from_slice(&prev.number.to_le_bytes());
    out[40..48].copy_from_slice(&prev.salt.to_le_bytes());
    out[48..56].copy_from_slice(&prev.len.to_le_bytes());
    let crc = crc32c::crc32c(&out[..56]);
    out[56..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A valid segment header.
#[derive(Debug, Clone, Copy)]
struct Header {
    version: u32,
    flags: u32,
    salt: u64,
    /// `None` in version 1, and in a `FIRST` segment.
    prev: Option<Link>,
    len: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the header of segment `number` from the segment's first bytes.
fn parse_header(bytes: &[u8], number: u64) -> Option<Header> {
    if bytes.len() < HEADER_LEN_V1 || bytes[..8] != SEGMENT_MAGIC {
        return None;
    }
    let version = u32_at(bytes, 8);
    let flags = u32_at(bytes, 12);
    let salt = u64_at(bytes, 24);
    let len = match version {
        1 => HEADER_LEN_V1,
        2 => HEADER_LEN,
        _ => return None,
    };
    if bytes.len() < len
        || u64_at(bytes, 16) != number
        || u32_at(bytes, len - 4) != crc32c::crc32c(&bytes[..len - 4])
    {
        return None;
    }
    let prev = (version >= 2 && flags & FIRST == 0).then(|| Link {
        number: u64_at(bytes, 32),
        salt: u64_at(bytes, 40),
        len: u64_at(bytes, 48),
    });
    Some(Header {
        version,
        flags,
        salt,
        prev,
        len,
    })
}

/// The checksum of a batch at `offset` whose records are `records`.
fn batch_crc(salt: u64, offset: u64, records: &[u8]) -> u32 {
    let mut crc = crc32c::crc32c(&salt.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &offset.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &(records.len() as u32).to_le_bytes());
    crc32c::crc32c_append(crc, records)
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
    number: u64,
    salt: u64,
    path: PathBuf,
    file: StoreFile,
    /// Bytes known to be whole batches (or the header).
    len: u64,
}

impl Segment {
    /// Creates segment `number` in `journal` after `prev` (`None`: the first
    /// segment of a store) and makes it (its header and its directory entry)
    /// durable. `synced`: every batch will be synced before the next one is
    /// appended. `before` runs first (a failpoint). A failed creation leaves no
    /// segment behind, or (after a crash) one with a short header, which replay
    /// reads as a creation cut short; either way the number is used again.
    pub(crate) fn create(
        journal: &Dir,
        number: u64,
        prev: Option<Link>,
        synced: bool,
        before: impl FnOnce() -> io::Result<()>,
    ) -> Result<Segment, Failure> {
        let name = layout::segment_name(number);
        let path = journal.join(&name);
        let plain = |op, e| Failure::Plain(FsError::io(op, &path, e));
        before().map_err(|e| plain("creating journal segment", e))?;
        // No segment of this number holds anything: it is newer than every
        // segment the journal had, or one whose creation failed.
        let file = journal
            .create_truncate(&name)
            .map_err(|e| plain("creating journal segment", e))?;
        let salt = uuid::Uuid::new_v4().as_u64_pair().0;
        let mut flags = if synced { SYNCED } else { 0 };
        if prev.is_none() {
            flags |= FIRST;
        }
        if let Err(e) = file.write_all_at(&header(number, flags, salt, prev), 0) {
            drop(file);
            let _ = journal.remove(&name);
            return Err(plain("writing the header of journal segment", e));
        }
        file.sync_data()
            .map_err(|e| Failure::Sync(FsError::io("syncing journal segment", &path, e)))?;
        journal.sync().map_err(Failure::Sync)?;
        Ok(Segment {
            number,
            salt,
            path,
            file,
            len: HEADER_LEN as u64,
        })
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the segment.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment holds no batch.
    pub(crate) fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN as u64
    }

    /// What the next segment records about this one.
    pub(crate) fn link(&self) -> Link {
        Link {
            number: self.number,
            salt: self.salt,
            len: self.len,
        }
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

    /// `fdatasync`: every appended batch is durable once this returns `Ok`,
    /// provided the segment is still linked ([`Segment::is_linked`]).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Whether the segment file still has a name. A sync of a file that was
    /// unlinked (its directory removed) succeeds, and makes nothing durable.
    pub(crate) fn is_linked(&self) -> io::Result<bool> {
        Ok(self.file.nlink()? > 0)
    }
}

/// The segment files in `journal`, oldest first. Other names are ignored.
pub(crate) fn segments(journal: &Dir) -> Result<Vec<u64>, FsError> {
    let mut out: Vec<u64> = journal
        .entries()?
        .into_iter()
        .filter(|e| e.kind == Kind::File)
        .filter_map(|e| e.name().and_then(layout::parse_segment_name))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Reads `journal/START`; `None` if it is absent.
pub(crate) fn read_start(journal: &Dir) -> Result<Option<u64>, FsError> {
    let Some(bytes) = journal.read_small(START_FILE, 64)? else {
        return Ok(None);
    };
    let parsed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.strip_suffix('\n'))
        .filter(|hex| hex.len() == 16)
        .and_then(|hex| layout::parse_segment_name(&format!("{hex}.log")));
    match parsed {
        Some(start) => Ok(Some(start)),
        None => Err(FsError::IncompleteJournal {
            path: journal.join(START_FILE),
            cause: "is damaged (not a segment number), so where the journal begins is unknown"
                .into(),
        }),
    }
}

/// Writes `journal/START` durably: the journal needs segment `start` and the
/// ones after it; older ones may be removed.
pub(crate) fn write_start(journal: &Dir, start: u64) -> Result<(), Failure> {
    journal.replace_file(START_FILE, format!("{start:016x}\n").as_bytes())
}

/// The rules a journal is read by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rules {
    /// Layout 3: `START` says where the journal begins; no gaps.
    Current,
    /// Layout 2 (version-1 segments): no `START`, and numbers may skip (a
    /// failed creation used one up); every segment present is read.
    Legacy,
}

/// The last put (`Some`) or delete (`None`) of an id, and the segment it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replay {
    pub(crate) snapshot: Option<Vec<u8>>,
    pub(crate) segment: u64,
}

/// The newest whole segment, which the next segment will follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    pub(crate) number: u64,
    pub(crate) salt: u64,
    /// Its whole batches end here; a torn batch after it is to be cut off.
    pub(crate) valid_len: u64,
    /// Its length on disk.
    pub(crate) file_len: u64,
}

/// What the journal says.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    /// The last record of every id the journal mentions.
    pub(crate) entries: HashMap<ActorId, Replay>,
    /// Records applied.
    pub(crate) records: u64,
    /// The first segment the journal needs (`None`: no segment at all, in a
    /// legacy journal).
    pub(crate) start: Option<u64>,
    /// The newest whole segment.
    pub(crate) tail: Option<Tail>,
    /// A newest segment whose creation was cut short: its number is used again.
    pub(crate) aborted: Option<u64>,
    /// Segments older than `START`: left by a checkpoint that moved `START`
    /// before it removed them. Not read.
    pub(crate) leftovers: Vec<u64>,
}

impl Replayed {
    /// The number the next segment gets, and the segment it follows.
    pub(crate) fn next(&self) -> Option<u64> {
        match (self.aborted, self.tail) {
            (Some(number), _) => Some(number),
            (None, Some(tail)) => tail.number.checked_add(1),
            (None, None) => Some(1),
        }
    }
}

/// Reads every segment the journal needs, checking that none is missing.
pub(crate) fn replay(journal: &Dir, rules: Rules) -> Result<Replayed, FsError> {
    let listed = segments(journal)?;
    let mut replayed = Replayed::default();
    let start = match rules {
        Rules::Current => match read_start(journal)? {
            Some(start) => start,
            None => {
                return Err(FsError::IncompleteJournal {
                    path: journal.join(START_FILE),
                    cause: "is missing, so where the journal begins is unknown".into(),
                });
            }
        },
        Rules::Legacy => match listed.first() {
            Some(&oldest) => oldest,
            None => return Ok(replayed),
        },
    };
    replayed.start = Some(start);
    let first_needed = listed.partition_point(|&n| n < start);
    replayed.leftovers = listed[..first_needed].to_vec();
    let needed = &listed[first_needed..];
    let missing = |number: u64, cause: String| FsError::IncompleteJournal {
        path: journal.join(layout::segment_name(number)),
        cause,
    };
    match needed.first() {
        None => {
            return Err(missing(
                start,
                format!(
                    "is missing: journal/START says the journal begins with segment {start:x}, and no segment from it on is present"
                ),
            ));
        }
        Some(&oldest) if oldest != start => {
            return Err(missing(
                start,
                format!(
                    "is missing: journal/START says the journal begins with it, and the oldest segment present is {oldest:x}"
                ),
            ));
        }
        Some(_) => {}
    }

    // First every header and how the segments link up (what is missing is
    // named before what is damaged), then the batches.
    let mut headers: Vec<(SegmentReader, Header)> = Vec::new();
    for (i, &number) in needed.iter().enumerate() {
        let newest = i + 1 == needed.len();
        let name = layout::segment_name(number);
        let path = journal.join(&name);
        let reader = SegmentReader::open(journal, &name, path.clone(), number, newest)?;
        let header = reader.header()?;
        let previous = headers.last();
        // Version-1 segments predate gap-free numbering: a failed creation
        // used a number up.
        let legacy_gap =
            previous.is_some_and(|(_, h)| h.version == 1) && header.is_some_and(|h| h.version == 1);
        if let Some((p, _)) = previous
            && number != p.number + 1
            && !legacy_gap
        {
            return Err(missing(
                p.number + 1,
                format!(
                    "is missing: segments {:x} and {number:x} are present, and every segment between them is needed",
                    p.number
                ),
            ));
        }
        let Some(header) = header else {
            // A segment's header is synced before any batch goes into it: a bad
            // header with nothing after it is a creation that a crash or an
            // error cut short (it holds no batch), which only the newest can be
            // (its number is used again); with more after it, it is damage.
            // `START` never names a segment before it was created whole.
            let cut_short = newest
                && reader.len <= SEGMENT_HEADER_MAX
                && (rules == Rules::Legacy || number != start);
            if cut_short {
                replayed.aborted = Some(number);
                break;
            }
            return Err(reader.corrupt(0, "bad segment header"));
        };
        if let Some((p, p_header)) = previous
            && header.version >= 2
        {
            check_link(journal, p, p_header, number, &header)?;
        }
        headers.push((reader, header));
    }
    for (reader, header) in headers {
        let valid_len = reader.read_into(header, &mut replayed)?;
        replayed.tail = Some(Tail {
            number: reader.number,
            salt: header.salt,
            valid_len,
            file_len: reader.len,
        });
    }
    Ok(replayed)
}

/// Checks that segment `number` (of `header`) follows `previous`: the same
/// segment (number and salt), of the length it was sealed at.
fn check_link(
    journal: &Dir,
    previous: &SegmentReader,
    previous_header: &Header,
    number: u64,
    header: &Header,
) -> Result<(), FsError> {
    let cause = match header.prev {
        None => {
            return Err(FsError::IncompleteJournal {
                path: journal.join(layout::segment_name(number)),
                cause: format!(
                    "says it begins a new journal, but segment {:x} precedes it",
                    previous.number
                ),
            });
        }
        Some(link) if link.number != previous.number || link.salt != previous_header.salt => {
            format!("is not the segment that segment {number:x} follows (it was replaced)")
        }
        Some(link) if link.len != previous.len => {
            let how = if previous.len < link.len {
                "cut short"
            } else {
                "grown"
            };
            format!(
                "is {} bytes, but segment {number:x} says it was sealed at {} bytes ({how})",
                previous.len, link.len
            )
        }
        Some(_) => return Ok(()),
    };
    Err(FsError::IncompleteJournal {
        path: previous.path.clone(),
        cause,
    })
}

/// Cuts the torn tail off the newest segment and syncs it, so that its length
/// on disk is the one its successor records.
pub(crate) fn cut_torn_tail(journal: &Dir, tail: &Tail) -> Result<(), Failure> {
    if tail.file_len == tail.valid_len {
        return Ok(());
    }
    let name = layout::segment_name(tail.number);
    let path = journal.join(&name);
    let file = journal
        .open_rw(&name)
        .map_err(|e| Failure::Plain(FsError::io("opening journal segment", &path, e)))?;
    file.set_len(tail.valid_len).map_err(|e| {
        Failure::Plain(FsError::io(
            "cutting the torn tail off journal segment",
            &path,
            e,
        ))
    })?;
    file.sync_data()
        .map_err(|e| Failure::Sync(FsError::io("syncing journal segment", &path, e)))
}

struct SegmentReader {
    path: PathBuf,
    number: u64,
    file: StoreFile,
    len: u64,
    newest: bool,
}

impl SegmentReader {
    fn open(
        journal: &Dir,
        name: &str,
        path: PathBuf,
        number: u64,
        newest: bool,
    ) -> Result<Self, FsError> {
        let file = journal
            .open_read(name)
            .map_err(|e| FsError::io("opening journal segment", &path, e))?;
        let len = file
            .len()
            .map_err(|e| FsError::io("inspecting journal segment", &path, e))?;
        Ok(Self {
            path,
            number,
            file,
            len,
            newest,
        })
    }

    fn corrupt(&self, offset: u64, cause: &'static str) -> FsError {
        FsError::CorruptJournal {
            path: self.path.clone(),
            offset,
            cause,
        }
    }

    fn io(&self, e: io::Error) -> FsError {
        FsError::io("reading journal segment", &self.path, e)
    }

    /// The segment's header, if it is valid.
    fn header(&self) -> Result<Option<Header>, FsError> {
        let mut head = [0u8; HEADER_LEN];
        let want = (HEADER_LEN as u64).min(self.len) as usize;
        self.file
            .read_exact_at(&mut head[..want], 0)
            .map_err(|e| self.io(e))?;
        Ok(parse_header(&head[..want], self.number))
    }

    /// Applies the segment's batches; returns where its whole batches end.
    fn read_into(&self, header: Header, replayed: &mut Replayed) -> Result<u64, FsError> {
        let mut reader = io::BufReader::with_capacity(READ_CHUNK, &self.file);
        reader
            .seek(SeekFrom::Start(header.len as u64))
            .map_err(|e| self.io(e))?;
        let mut offset = header.len as u64;
        let mut records = Vec::new();
        loop {
            let mut batch_header = [0u8; BATCH_HEADER_LEN];
            let got = read_full(&mut reader, &mut batch_header).map_err(|e| self.io(e))?;
            if got == 0 {
                return Ok(offset);
            }
            let len = u32_at(&batch_header, 0) as u64;
            let claimed = u64_at(&batch_header, 4);
            let crc = u32_at(&batch_header, 12);
            let remaining = self.len.saturating_sub(offset + BATCH_HEADER_LEN as u64);
            let valid = got == BATCH_HEADER_LEN && claimed == offset && len <= remaining && {
                // `len` is bounded by the file's length, so this allocation is.
                records.clear();
                records.resize(len as usize, 0);
                let got = read_full(&mut reader, &mut records).map_err(|e| self.io(e))?;
                got == records.len() && batch_crc(header.salt, offset, &records) == crc
            };
            if !valid {
                self.bad_batch(offset, header)?;
                return Ok(offset);
            }
            let parsed = parse_records(&records).map_err(|cause| self.corrupt(offset, cause))?;
            for (id, snapshot) in parsed {
                let replay = Replay {
                    snapshot: snapshot.map(<[u8]>::to_vec),
                    segment: self.number,
                };
                replayed.entries.insert(id, replay);
                replayed.records += 1;
            }
            offset += BATCH_HEADER_LEN as u64 + len;
        }
    }

    /// A batch at `offset` does not check out: the torn tail of the newest
    /// segment (`Ok`), or damage.
    fn bad_batch(&self, offset: u64, header: Header) -> Result<(), FsError> {
        if !self.newest {
            return Err(self.corrupt(offset, "damaged batch in a sealed segment"));
        }
        if header.flags & SYNCED != 0 && self.valid_batch_after(offset, header.salt)? {
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
                if u64_at(&window, i + 4) == at
                    && self.batch_checks_out(at, &window[i..i + BATCH_HEADER_LEN], salt)?
                {
                    return Ok(true);
                }
            }
            if got == 0 {
                return Ok(false);
            }
        }
    }

    fn batch_checks_out(&self, at: u64, header: &[u8], salt: u64) -> Result<bool, FsError> {
        let len = u32_at(header, 0) as u64;
        let crc = u32_at(header, 12);
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
    use std::fs;

    use super::*;

    fn id(n: u128) -> ActorId {
        ActorId::from_u128(n)
    }

    /// A batch for [`Journal::segment`]: (id number, put or delete) records.
    type Batch<'a> = &'a [(u128, Option<&'a [u8]>)];

    const ONE_TWO: Batch<'static> = &[(1, Some(b"one")), (2, Some(b"two"))];

    /// A journal directory in a temp dir.
    struct Journal {
        _temp: tempfile::TempDir,
        dir: Dir,
    }

    impl Journal {
        fn new() -> Self {
            let temp = tempfile::tempdir().unwrap();
            let dir = Dir::open(&crate::dir::Disk::Os, temp.path()).unwrap();
            Self { _temp: temp, dir }
        }

        fn path(&self, number: u64) -> PathBuf {
            self.dir.join(layout::segment_name(number))
        }

        /// Creates segment `number` after `prev` with one appended batch per
        /// entry of `batches`; returns its link and the offsets of the batches.
        fn segment(
            &self,
            number: u64,
            prev: Option<Link>,
            synced: bool,
            batches: &[Batch<'_>],
        ) -> (Link, Vec<u64>) {
            let mut segment = Segment::create(&self.dir, number, prev, synced, || Ok(())).unwrap();
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
            (segment.link(), offsets)
        }

        /// Segments `first..` (one per entry of `segments`), chained, with
        /// `START` at `first`; returns the batch offsets of each.
        fn chain(&self, first: u64, synced: bool, segments: &[&[Batch<'_>]]) -> Vec<Vec<u64>> {
            write_start(&self.dir, first).unwrap();
            let mut prev = None;
            let mut out = Vec::new();
            for (i, batches) in segments.iter().enumerate() {
                let (link, offsets) = self.segment(first + i as u64, prev, synced, batches);
                prev = Some(link);
                out.push(offsets);
            }
            out
        }

        fn replay(&self) -> Result<Replayed, FsError> {
            replay(&self.dir, Rules::Current)
        }
    }

    fn flip(path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize] ^= 0x01;
        fs::write(path, bytes).unwrap();
    }

    fn incomplete(result: Result<Replayed, FsError>) -> (PathBuf, String) {
        match result {
            Err(FsError::IncompleteJournal { path, cause }) => (path, cause),
            other => panic!("expected IncompleteJournal, got {other:?}"),
        }
    }

    #[test]
    fn last_record_per_id_wins_across_segments() {
        let j = Journal::new();
        j.chain(
            1,
            true,
            &[
                &[ONE_TWO],
                &[&[(1, None), (2, Some(b"two again"))], &[(3, Some(b""))]],
            ],
        );
        let replayed = j.replay().unwrap();
        assert_eq!(replayed.records, 5);
        assert_eq!(replayed.entries[&id(1)].snapshot, None);
        assert_eq!(replayed.entries[&id(1)].segment, 2);
        assert_eq!(
            replayed.entries[&id(2)].snapshot.as_deref(),
            Some(&b"two again"[..])
        );
        assert_eq!(replayed.entries[&id(3)].snapshot.as_deref(), Some(&b""[..]));
        assert_eq!(
            (replayed.start, replayed.tail.unwrap().number),
            (Some(1), 2)
        );
        assert_eq!(replayed.next(), Some(3));
    }

    #[test]
    fn every_cut_of_the_newest_segment_keeps_the_whole_batches_before_it() {
        let j = Journal::new();
        let offsets = j.chain(7, true, &[&[ONE_TWO, &[(3, Some(b"three"))]]]);
        let path = j.path(7);
        let whole = fs::read(&path).unwrap();
        for cut in HEADER_LEN..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let replayed = j.replay().unwrap();
            let expected = if cut as u64 >= offsets[0][1] { 2 } else { 0 };
            assert_eq!(replayed.entries.len(), expected, "cut at {cut}");
            let tail = replayed.tail.unwrap();
            assert_eq!(tail.file_len, cut as u64);
            assert!(tail.valid_len <= cut as u64);
        }
    }

    #[test]
    fn a_torn_last_batch_of_the_newest_segment_is_dropped() {
        // Damage anywhere in the last batch: the part a crash may have torn.
        let j = Journal::new();
        let offsets = j.chain(1, true, &[&[ONE_TWO, ONE_TWO]]);
        let path = j.path(1);
        let len = fs::metadata(&path).unwrap().len();
        for at in offsets[0][1]..len {
            flip(&path, at);
            let replayed = j.replay().unwrap();
            assert_eq!(replayed.records, 2, "flip at {at}");
            assert_eq!(replayed.tail.unwrap().valid_len, offsets[0][1]);
            flip(&path, at);
        }
    }

    #[test]
    fn the_torn_tail_is_cut_off_so_the_next_segment_can_record_the_length() {
        let j = Journal::new();
        let offsets = j.chain(1, true, &[&[ONE_TWO, ONE_TWO]]);
        let path = j.path(1);
        let whole = fs::read(&path).unwrap();
        fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        let tail = j.replay().unwrap().tail.unwrap();
        cut_torn_tail(&j.dir, &tail).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[0][1]);
        let link = Link {
            number: 1,
            salt: tail.salt,
            len: tail.valid_len,
        };
        j.segment(2, Some(link), true, &[&[(9, None)]]);
        let replayed = j.replay().unwrap();
        assert_eq!(replayed.records, 3);
    }

    #[test]
    fn damage_followed_by_a_valid_batch_is_an_error_in_a_synced_segment() {
        let j = Journal::new();
        let batches: &[Batch<'_>] = &[ONE_TWO, ONE_TWO, &[(3, None)]];
        let offsets = &j.chain(1, true, &[batches])[0];
        let path = j.path(1);
        for at in [offsets[0], offsets[0] + 5, offsets[0] + 20, offsets[1] + 17] {
            flip(&path, at);
            let err = j.replay().unwrap_err();
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
        assert_eq!(j.replay().unwrap().records, 5);
    }

    #[test]
    fn in_a_buffered_segment_the_first_bad_batch_ends_it() {
        // Unsynced batches can reach the disk out of order: what follows a gap
        // may be there or not, and is dropped with it.
        let j = Journal::new();
        let offsets = &j.chain(1, false, &[&[ONE_TWO, ONE_TWO, ONE_TWO]])[0];
        flip(&j.path(1), offsets[1] + 20);
        assert_eq!(j.replay().unwrap().records, 2);
    }

    #[test]
    fn snapshot_bytes_shaped_like_a_batch_are_never_read_as_one() {
        // A snapshot holding a whole valid-looking batch (header with a right
        // offset and a checksum without the salt) after a torn batch header.
        let j = Journal::new();
        let mut fake = vec![0u8; BATCH_HEADER_LEN];
        encode(&mut fake, id(9), Some(b"forged"));
        let offsets = &j.chain(1, true, &[&[ONE_TWO]])[0];
        let path = j.path(1);
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
        let replayed = j.replay().unwrap();
        assert_eq!(replayed.records, 2);
        assert!(!replayed.entries.contains_key(&id(9)));
    }

    #[test]
    fn damage_in_an_older_segment_is_an_error_naming_file_and_offset() {
        let j = Journal::new();
        let offsets = j.chain(1, false, &[&[ONE_TWO], &[]]);
        let path = j.path(1);
        for (at, expected) in [(3, 0), (14, 0), (offsets[0][0] + 2, offsets[0][0])] {
            flip(&path, at);
            let err = j.replay().unwrap_err();
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
    fn a_bad_header_is_a_creation_cut_short_only_in_the_newest_segment_without_records() {
        let j = Journal::new();
        j.chain(3, true, &[&[ONE_TWO]]);
        // The newest, a header cut short (a creation a crash interrupted):
        // nothing in it, its number is used again.
        fs::write(j.path(4), &header(4, SYNCED, 1, None)[..10]).unwrap();
        let replayed = j.replay().unwrap();
        assert_eq!(replayed.entries.len(), 2);
        assert_eq!((replayed.aborted, replayed.next()), (Some(4), Some(4)));
        assert_eq!(replayed.tail.unwrap().number, 3);
        // Not the newest: damage (numbers are reused, so it cannot be).
        let link = Link {
            number: 3,
            salt: 0,
            len: 0,
        };
        j.segment(5, Some(link), true, &[]);
        assert!(matches!(
            j.replay(),
            Err(FsError::CorruptJournal { offset: 0, .. })
        ));
        fs::remove_file(j.path(5)).unwrap();
        // With records after the bad header: damage.
        fs::remove_file(j.path(4)).unwrap();
        let (link, _) = {
            let tail = j.replay().unwrap().tail.unwrap();
            let link = Link {
                number: 3,
                salt: tail.salt,
                len: tail.valid_len,
            };
            j.segment(4, Some(link), true, &[ONE_TWO])
        };
        let _ = link;
        flip(&j.path(4), 20);
        assert!(matches!(
            j.replay(),
            Err(FsError::CorruptJournal { offset: 0, .. })
        ));
    }

    #[test]
    fn a_bad_header_of_the_start_segment_is_damage_even_without_records() {
        let j = Journal::new();
        write_start(&j.dir, 6).unwrap();
        fs::write(j.path(6), &header(6, SYNCED, 1, None)[..10]).unwrap();
        assert!(matches!(
            j.replay(),
            Err(FsError::CorruptJournal { offset: 0, .. })
        ));
    }

    #[test]
    fn a_missing_middle_segment_is_reported_by_name() {
        let j = Journal::new();
        j.chain(1, true, &[&[ONE_TWO], &[ONE_TWO], &[ONE_TWO]]);
        fs::remove_file(j.path(2)).unwrap();
        let (path, cause) = incomplete(j.replay());
        assert_eq!(path, j.path(2));
        assert!(cause.contains("is missing"), "{cause}");
    }

    #[test]
    fn a_missing_oldest_segment_is_reported_by_name() {
        let j = Journal::new();
        j.chain(4, true, &[&[ONE_TWO], &[ONE_TWO]]);
        fs::remove_file(j.path(4)).unwrap();
        let (path, cause) = incomplete(j.replay());
        assert_eq!(path, j.path(4));
        assert!(cause.contains("START"), "{cause}");
        // Every segment gone: the same.
        fs::remove_file(j.path(5)).unwrap();
        assert_eq!(incomplete(j.replay()).0, j.path(4));
    }

    #[test]
    fn a_sealed_segment_cut_at_a_batch_boundary_or_grown_or_replaced_is_reported() {
        let j = Journal::new();
        let offsets = j.chain(1, true, &[&[ONE_TWO, ONE_TWO], &[ONE_TWO]]);
        let path = j.path(1);
        let whole = fs::read(&path).unwrap();
        // Cut at the boundary of its last batch: every batch left is valid.
        fs::write(&path, &whole[..offsets[0][1] as usize]).unwrap();
        let (reported, cause) = incomplete(j.replay());
        assert_eq!(reported, path);
        assert!(cause.contains("cut short"), "{cause}");
        // Grown: a valid-looking batch appended after the seal.
        let mut grown = whole.clone();
        grown.extend_from_slice(&[0; 40]);
        fs::write(&path, &grown).unwrap();
        assert!(incomplete(j.replay()).1.contains("grown"));
        // Replaced by another segment 1 (another salt) of the same length.
        fs::write(&path, &whole).unwrap();
        assert_eq!(j.replay().unwrap().records, 6);
        fs::remove_file(&path).unwrap();
        let j2 = Journal::new();
        j2.chain(1, true, &[&[ONE_TWO, ONE_TWO]]);
        fs::copy(j2.path(1), &path).unwrap();
        assert!(incomplete(j.replay()).1.contains("replaced"));
    }

    #[test]
    fn start_missing_or_damaged_is_reported_and_older_segments_are_leftovers() {
        let j = Journal::new();
        let three: Batch<'_> = &[(3, Some(b"three"))];
        j.chain(1, true, &[&[ONE_TWO], &[three]]);
        write_start(&j.dir, 2).unwrap();
        let replayed = j.replay().unwrap();
        assert_eq!(replayed.leftovers, vec![1]);
        assert_eq!(replayed.records, 1, "a segment before START is not read");
        fs::write(j.dir.join(START_FILE), b"two\n").unwrap();
        assert_eq!(incomplete(j.replay()).0, j.dir.join(START_FILE));
        fs::remove_file(j.dir.join(START_FILE)).unwrap();
        assert!(incomplete(j.replay()).1.contains("is missing"));
    }

    #[test]
    fn a_stray_segment_of_the_largest_number_is_an_error_not_a_panic() {
        let j = Journal::new();
        j.chain(1, true, &[&[ONE_TWO]]);
        fs::write(j.path(u64::MAX), b"").unwrap();
        let (path, _) = incomplete(j.replay());
        assert_eq!(path, j.path(2));
        // Alone, and START naming it: a whole segment that nothing can follow.
        let k = Journal::new();
        k.chain(u64::MAX, true, &[&[ONE_TWO]]);
        assert_eq!(k.replay().unwrap().next(), None);
    }

    #[test]
    fn legacy_journals_may_skip_numbers_between_version_1_segments() {
        fn v1(j: &Journal, number: u64, records: Batch<'_>) -> u64 {
            let salt = 77 + number;
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&SEGMENT_MAGIC);
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.extend_from_slice(&SYNCED.to_le_bytes());
            bytes.extend_from_slice(&number.to_le_bytes());
            bytes.extend_from_slice(&salt.to_le_bytes());
            let crc = crc32c::crc32c(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            let mut batch = Vec::new();
            start_batch(&mut batch);
            for (n, snapshot) in records {
                encode(&mut batch, id(*n), *snapshot);
            }
            let offset = bytes.len() as u64;
            let len = (batch.len() - BATCH_HEADER_LEN) as u32;
            let crc = batch_crc(salt, offset, &batch[BATCH_HEADER_LEN..]);
            batch[..4].copy_from_slice(&len.to_le_bytes());
            batch[4..12].copy_from_slice(&offset.to_le_bytes());
            batch[12..16].copy_from_slice(&crc.to_le_bytes());
            bytes.extend_from_slice(&batch);
            fs::write(j.path(number), &bytes).unwrap();
            salt
        }
        let j = Journal::new();
        v1(&j, 3, ONE_TWO);
        let salt = v1(&j, 5, &[(1, None)]);
        let replayed = replay(&j.dir, Rules::Legacy).unwrap();
        assert_eq!((replayed.records, replayed.start), (3, Some(3)));
        assert_eq!(replayed.entries[&id(1)].snapshot, None);
        // Upgraded: START, and a version-2 segment after the newest.
        let tail = replayed.tail.unwrap();
        assert_eq!(tail.salt, salt);
        write_start(&j.dir, 3).unwrap();
        let link = Link {
            number: 5,
            salt,
            len: tail.valid_len,
        };
        j.segment(6, Some(link), true, &[&[(4, Some(b"four"))]]);
        let replayed = j.replay().unwrap();
        assert_eq!(replayed.records, 4);
        // The guarantee starts with version 2: a gap before it is damage.
        fs::remove_file(j.path(5)).unwrap();
        assert_eq!(incomplete(j.replay()).0, j.path(4));
    }

    #[test]
    fn a_malformed_record_in_a_checksummed_batch_is_damage() {
        let j = Journal::new();
        write_start(&j.dir, 1).unwrap();
        let mut segment = Segment::create(&j.dir, 1, None, true, || Ok(())).unwrap();
        let mut buf = Vec::new();
        start_batch(&mut buf);
        encode(&mut buf, id(1), Some(b"x"));
        buf.push(7); // an unknown kind, checksummed with the rest
        buf.extend_from_slice(id(2).as_bytes());
        segment.append(&mut buf, || Ok(())).unwrap();
        assert!(matches!(
            j.replay(),
            Err(FsError::CorruptJournal {
                cause: "unknown record kind inside a checksummed batch",
                ..
            })
        ));
    }

    #[test]
    fn a_huge_claimed_length_is_not_allocated() {
        let j = Journal::new();
        j.chain(1, true, &[&[]]);
        let path = j.path(1);
        let mut bytes = fs::read(&path).unwrap();
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&[0; 4 + 64]);
        fs::write(&path, bytes).unwrap();
        assert_eq!(j.replay().unwrap().records, 0);
    }

    #[test]
    fn a_failed_append_is_cut_back() {
        let j = Journal::new();
        write_start(&j.dir, 1).unwrap();
        let mut segment = Segment::create(&j.dir, 1, None, true, || Ok(())).unwrap();
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
        let replayed = j.replay().unwrap();
        assert_eq!(replayed.records, 2);
        assert_eq!(replayed.entries[&id(3)].snapshot, None);
    }

    #[test]
    fn an_unlinked_segment_says_so() {
        let j = Journal::new();
        let segment = Segment::create(&j.dir, 1, None, true, || Ok(())).unwrap();
        assert!(segment.is_linked().unwrap());
        fs::remove_file(segment.path()).unwrap();
        assert!(!segment.is_linked().unwrap());
    }
}
