//! The input of the journal-replay target: a store directory of the fs backend
//! (layout 3) described as a few bytes, written from the on-disk format its
//! `ARCHITECTURE.md` and `src/journal.rs` document, and what an open of it must
//! then hold.
//!
//! # Input format
//!
//! ```text
//! byte 0   flags: bit 0  the segments say SYNCED (every batch synced: durable mode)
//!                 bit 1  open with Durability::ProcessKill (else PowerLoss)
//!                 bit 2  raw: the rest of the input is the body of segment 1,
//!                        after a valid header (no batch framing, no ops)
//!                 bit 3  raw header too: the rest is the whole segment file
//! then ops (unless raw), each one byte and its operands (integers LE):
//!   'P' id:u8 len:u16 bytes   a put record of actor `id` in the current batch
//!   'D' id:u8                 a delete record
//!   'B'                       ends the current batch (an empty one too)
//!   'S'                       ends the current segment: the next one follows it
//!                             (at most 4 segments)
//!   'F' id:u8 len:u16 bytes   a snapshot file `snapshots/<aa>/<uuid>.snap`
//!   'X' at:u16 value:u8       damage: overwrites byte `at` (modulo their length)
//!                             of the segments taken end to end
//!   'T' at:u16                damage: cuts the newest segment to `at` bytes
//!                             (modulo its length + 1)
//!   'C' seg:u8 at:u16         damage: cuts segment `seg` (modulo their number)
//!                             to `at` bytes (modulo its length + 1)
//!   'A' seg:u8 len:u8 bytes   damage: appends bytes to a sealed segment (`seg`
//!                             modulo their number; ignored with one segment:
//!                             appended to the newest they could by chance be
//!                             a valid batch)
//!   other bytes are skipped; a truncated operand ends the input.
//! ```
//!
//! Segments are numbered from 1 (`journal/START` = 1); each names its
//! predecessor's number, salt and length, as the store writes them.
//!
//! # What an open must give
//!
//! Without damage, exactly the files overlaid with every record. With damage,
//! the open fails with a typed journal error
//! (`CorruptJournal`/`IncompleteJournal`), or it holds the files overlaid with
//! the records of the batches wholly before the first damaged byte. Damage to a
//! sealed segment (one that has a successor) must fail the open, and so must a
//! damaged batch of a SYNCED newest segment followed by an intact one; damage to
//! the batches of the newest segment of a store not in SYNCED mode must not (it
//! is a torn tail).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use theta::ActorId;

const SEGMENT_MAGIC: [u8; 8] = *b"THETAJNL";
const SEGMENT_VERSION: u32 = 2;
/// The length of a version-2 segment header.
pub const SEGMENT_HEADER_LEN: usize = 60;
/// A newest segment this long or shorter with a bad header is a creation cut
/// short (the fs backend's `SEGMENT_HEADER_MAX`).
const SEGMENT_HEADER_MAX: usize = 64;
const FLAG_SYNCED: u32 = 1;
const FLAG_FIRST: u32 = 2;
const MAX_SEGMENTS: usize = 4;
/// The layout marker of the store layout this input writes.
pub const FORMAT: &str = "theta-persistence-fs layout 3\n";

/// Input flag: the segments say SYNCED.
pub const SYNCED: u8 = 1;
/// Input flag: open with `Durability::ProcessKill`.
pub const PROCESS_KILL: u8 = 2;
/// Input flag: the rest of the input is the body of segment 1.
pub const RAW: u8 = 4;
/// Input flag (with [`RAW`]): the rest is the whole segment file.
pub const RAW_HEADER: u8 = 8;

/// The actor id an input's id byte stands for.
pub fn actor(id: u8) -> ActorId {
    ActorId::from_u128(0xf022_0000_0000_0000_0000_0000_0000_0000 | u128::from(id))
}

/// One record of a batch: a put (`Some`) or a delete (`None`).
pub type Record = (ActorId, Option<Vec<u8>>);

/// A store directory and what its open must hold.
#[derive(Debug, Default)]
pub struct Plan {
    /// The input's flags byte.
    pub flags: u8,
    /// The segments' bytes as written (before damage), oldest first.
    pub segments: Vec<Vec<u8>>,
    /// Per segment, its batches: where each ends, and its records.
    pub batches: Vec<Vec<(usize, Vec<Record>)>>,
    /// The segments' bytes after damage.
    pub damaged: Vec<Vec<u8>>,
    /// The snapshot files.
    pub files: BTreeMap<ActorId, Vec<u8>>,
    /// Every id the input names.
    pub ids: Vec<ActorId>,
}

/// What an open of a [`Plan`]'s directory must give.
#[derive(Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this state.
    State(BTreeMap<ActorId, Vec<u8>>),
    /// This state, or a typed journal error.
    StateOrError(BTreeMap<ActorId, Vec<u8>>),
    /// A typed journal error.
    Error,
    /// Raw input: an error or a consistent store, whatever it holds.
    Consistent,
}

/// Damage to the segments, as written.
enum Damage {
    /// A byte overwritten with this value.
    Overwrite(u8),
    /// A segment (this one; `None`: the newest) cut short.
    Cut(Option<u8>),
    /// Bytes appended to a sealed segment.
    Append(Vec<u8>),
}

/// Reads input bytes one operand at a time.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let (b, rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some(u16::from_le_bytes(*b))
    }

    /// `len` bytes, or as many as are left.
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken.to_vec()
    }
}

/// The salt of segment `number`.
fn salt(number: u64) -> u64 {
    0x5eed_5a17_0000_0000 ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A version-2 segment header.
pub fn segment_header(
    number: u64,
    synced: bool,
    prev: Option<(u64, u64, u64)>,
) -> [u8; SEGMENT_HEADER_LEN] {
    let mut flags = if synced { FLAG_SYNCED } else { 0 };
    if prev.is_none() {
        flags |= FLAG_FIRST;
    }
    let (prev_number, prev_salt, prev_len) = prev.unwrap_or((0, 0, 0));
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    out[..8].copy_from_slice(&SEGMENT_MAGIC);
    out[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    out[16..24].copy_from_slice(&number.to_le_bytes());
    out[24..32].copy_from_slice(&salt(number).to_le_bytes());
    out[32..40].copy_from_slice(&prev_number.to_le_bytes());
    out[40..48].copy_from_slice(&prev_salt.to_le_bytes());
    out[48..56].copy_from_slice(&prev_len.to_le_bytes());
    let crc = crc32c::crc32c(&out[..56]);
    out[56..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Appends a batch of `records` to `segment` (segment `number`).
fn append_batch(segment: &mut Vec<u8>, number: u64, records: &[Record]) {
    let mut body = Vec::new();
    for (id, snapshot) in records {
        match snapshot {
            Some(bytes) => {
                body.push(1);
                body.extend_from_slice(id.as_bytes());
                body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                body.extend_from_slice(bytes);
            }
            None => {
                body.push(2);
                body.extend_from_slice(id.as_bytes());
            }
        }
    }
    let offset = segment.len() as u64;
    let len = body.len() as u32;
    let mut crc = crc32c::crc32c(&salt(number).to_le_bytes());
    crc = crc32c::crc32c_append(crc, &offset.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &body);
    segment.extend_from_slice(&len.to_le_bytes());
    segment.extend_from_slice(&offset.to_le_bytes());
    segment.extend_from_slice(&crc.to_le_bytes());
    segment.extend_from_slice(&body);
}

impl Plan {
    /// Parses an input (see the module docs).
    pub fn parse(data: &[u8]) -> Plan {
        let mut input = Cursor(data);
        let flags = input.u8().unwrap_or(0);
        let synced = flags & SYNCED != 0;
        let mut plan = Plan {
            flags,
            ..Plan::default()
        };
        if flags & RAW != 0 {
            let mut segment = Vec::new();
            if flags & RAW_HEADER == 0 {
                segment.extend_from_slice(&segment_header(1, synced, None));
            }
            segment.extend_from_slice(input.0);
            plan.segments.push(segment.clone());
            plan.batches.push(Vec::new());
            plan.damaged.push(segment);
            return plan;
        }
        let mut segment = segment_header(1, synced, None).to_vec();
        let mut batches = Vec::new();
        let mut batch: Vec<Record> = Vec::new();
        let mut damage = Vec::new();
        let number = |plan: &Plan| plan.segments.len() as u64 + 1;
        while let Some(op) = input.u8() {
            match op {
                b'P' => {
                    let (Some(id), Some(len)) = (input.u8(), input.u16()) else {
                        break;
                    };
                    plan.ids.push(actor(id));
                    batch.push((actor(id), Some(input.bytes(len.into()))));
                }
                b'D' => {
                    let Some(id) = input.u8() else { break };
                    plan.ids.push(actor(id));
                    batch.push((actor(id), None));
                }
                b'B' => {
                    append_batch(&mut segment, number(&plan), &batch);
                    batches.push((segment.len(), std::mem::take(&mut batch)));
                }
                b'S' if plan.segments.len() + 1 < MAX_SEGMENTS => {
                    if !batch.is_empty() {
                        append_batch(&mut segment, number(&plan), &batch);
                        batches.push((segment.len(), std::mem::take(&mut batch)));
                    }
                    let n = number(&plan);
                    let next =
                        segment_header(n + 1, synced, Some((n, salt(n), segment.len() as u64)))
                            .to_vec();
                    plan.segments.push(std::mem::replace(&mut segment, next));
                    plan.batches.push(std::mem::take(&mut batches));
                }
                b'F' => {
                    let (Some(id), Some(len)) = (input.u8(), input.u16()) else {
                        break;
                    };
                    plan.ids.push(actor(id));
                    plan.files.insert(actor(id), input.bytes(len.into()));
                }
                b'X' => {
                    let (Some(at), Some(value)) = (input.u16(), input.u8()) else {
                        break;
                    };
                    damage.push((Damage::Overwrite(value), usize::from(at)));
                }
                b'T' => {
                    let Some(at) = input.u16() else { break };
                    damage.push((Damage::Cut(None), usize::from(at)));
                }
                b'C' => {
                    let (Some(seg), Some(at)) = (input.u8(), input.u16()) else {
                        break;
                    };
                    damage.push((Damage::Cut(Some(seg)), usize::from(at)));
                }
                b'A' => {
                    let (Some(seg), Some(len)) = (input.u8(), input.u8()) else {
                        break;
                    };
                    damage.push((Damage::Append(input.bytes(len.into())), usize::from(seg)));
                }
                _ => {}
            }
        }
        if !batch.is_empty() {
            append_batch(&mut segment, number(&plan), &batch);
            batches.push((segment.len(), batch));
        }
        plan.segments.push(segment);
        plan.batches.push(batches);
        plan.damaged = plan.segments.clone();
        for (damage, at) in damage {
            match damage {
                Damage::Overwrite(value) => {
                    let total: usize = plan.damaged.iter().map(Vec::len).sum();
                    if total == 0 {
                        continue;
                    }
                    let mut at = at % total;
                    for segment in &mut plan.damaged {
                        if at < segment.len() {
                            segment[at] = value;
                            break;
                        }
                        at -= segment.len();
                    }
                }
                Damage::Cut(segment) => {
                    let n = plan.damaged.len();
                    let segment = segment.map_or(n - 1, |s| usize::from(s) % n);
                    let segment = &mut plan.damaged[segment];
                    segment.truncate(at % (segment.len() + 1));
                }
                Damage::Append(bytes) => {
                    let sealed = plan.damaged.len() - 1;
                    if sealed > 0 {
                        plan.damaged[at % sealed].extend_from_slice(&bytes);
                    }
                }
            }
        }
        plan.ids.sort_unstable();
        plan.ids.dedup();
        plan
    }

    /// Whether the store is opened with `Durability::ProcessKill`.
    pub fn process_kill(&self) -> bool {
        self.flags & PROCESS_KILL != 0
    }

    /// The files overlaid with the records of segments `..newest`, and of the
    /// first `whole` batches of segment `newest`.
    fn state(&self, newest: usize, whole: usize) -> BTreeMap<ActorId, Vec<u8>> {
        let mut state = self.files.clone();
        for (i, batches) in self.batches[..=newest].iter().enumerate() {
            let take = if i == newest { whole } else { batches.len() };
            for (_, records) in &batches[..take] {
                for (id, snapshot) in records {
                    match snapshot {
                        Some(bytes) => state.insert(*id, bytes.clone()),
                        None => state.remove(id),
                    };
                }
            }
        }
        state
    }

    /// What an open of the directory must give.
    pub fn expect(&self) -> Expect {
        if self.flags & RAW != 0 {
            return Expect::Consistent;
        }
        self.expect_with_newest(self.segments.len() - 1)
    }

    /// What an open must give when the segment after `sealed` is a creation
    /// cut short: `sealed` was synced whole before it was created, so any
    /// damage to it is damage, except whole batches cut from its end, which
    /// nothing can tell (the successor that recorded its length is gone).
    fn expect_before_aborted(&self, sealed: usize) -> Expect {
        let (written, damaged) = (&self.segments[sealed], &self.damaged[sealed]);
        let untouched = (0..sealed).all(|i| self.segments[i] == self.damaged[i]);
        let cut = damaged.len();
        let at_boundary =
            cut == SEGMENT_HEADER_LEN || self.batches[sealed].iter().any(|(end, _)| *end == cut);
        if !untouched || !at_boundary || written.get(..cut) != Some(&damaged[..]) {
            return Expect::Error;
        }
        let whole = self.batches[sealed]
            .iter()
            .take_while(|(end, _)| *end <= cut)
            .count();
        Expect::State(self.state(sealed, whole))
    }

    /// What an open must give when segment `newest` is the newest one.
    fn expect_with_newest(&self, newest: usize) -> Expect {
        /// The first byte where `damaged` differs from `written`.
        fn first_difference(written: &[u8], damaged: &[u8]) -> Option<usize> {
            written
                .iter()
                .zip(damaged)
                .position(|(a, b)| a != b)
                .or((written.len() != damaged.len()).then(|| written.len().min(damaged.len())))
        }
        let (written, damaged) = (&self.segments[newest], &self.damaged[newest]);
        let at = first_difference(written, damaged);
        if let Some(at) = at
            && at < SEGMENT_HEADER_LEN
        {
            // A bad header with at most a header's room after it reads as a
            // creation cut short (not in the segment `START` names); with
            // more after it, it is damage.
            return if newest > 0 && damaged.len() <= SEGMENT_HEADER_MAX {
                self.expect_before_aborted(newest - 1)
            } else {
                Expect::Error
            };
        }
        for i in 0..newest {
            if first_difference(&self.segments[i], &self.damaged[i]).is_some() {
                return Expect::Error;
            }
        }
        let Some(at) = at else {
            let whole = self.batches[newest].len();
            return Expect::State(self.state(newest, whole));
        };
        let batches = &self.batches[newest];
        let whole = batches.iter().take_while(|(end, _)| *end <= at).count();
        let state = self.state(newest, whole);
        if self.flags & SYNCED == 0 {
            return Expect::State(state);
        }
        // In a synced segment a damaged batch followed by a valid one is
        // damage, not a torn write. (Without an intact batch after it, one
        // could still be found inside a put's bytes.)
        let intact_after = (whole + 1..batches.len()).any(|i| {
            let (start, end) = (batches[i - 1].0, batches[i].0);
            damaged.get(start..end) == Some(&written[start..end])
        });
        if intact_after {
            Expect::Error
        } else {
            Expect::StateOrError(state)
        }
    }

    /// Writes the store directory into `dir` (which must not exist yet).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir(dir)?;
        std::fs::write(dir.join("FORMAT"), FORMAT)?;
        std::fs::write(dir.join("GENERATION"), "1\n")?;
        let journal = dir.join("journal");
        std::fs::create_dir(&journal)?;
        std::fs::write(journal.join("START"), format!("{:016x}\n", 1))?;
        for (i, segment) in self.damaged.iter().enumerate() {
            std::fs::write(journal.join(format!("{:016x}.log", i + 1)), segment)?;
        }
        let snapshots = dir.join("snapshots");
        std::fs::create_dir(&snapshots)?;
        for (id, bytes) in &self.files {
            let shard = id.as_bytes().iter().fold(0u8, |acc, b| acc ^ b);
            let shard = snapshots.join(format!("{shard:02x}"));
            std::fs::create_dir_all(&shard)?;
            std::fs::write(shard.join(format!("{}.snap", id.hyphenated())), bytes)?;
        }
        Ok(())
    }
}

/// Writes inputs in the format above (for the seeds).
#[derive(Debug, Default)]
pub struct Input(Vec<u8>);

impl Input {
    /// An input with `flags`.
    pub fn new(flags: u8) -> Self {
        Self(vec![flags])
    }

    fn with_bytes(mut self, op: u8, id: u8, bytes: &[u8]) -> Self {
        let len = u16::try_from(bytes.len()).expect("at most 64 KiB");
        self.0.extend_from_slice(&[op, id]);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// A put record.
    pub fn put(self, id: u8, bytes: &[u8]) -> Self {
        self.with_bytes(b'P', id, bytes)
    }

    /// A delete record.
    pub fn delete(mut self, id: u8) -> Self {
        self.0.extend_from_slice(&[b'D', id]);
        self
    }

    /// The end of a batch.
    pub fn batch(mut self) -> Self {
        self.0.push(b'B');
        self
    }

    /// The end of a segment.
    pub fn segment(mut self) -> Self {
        self.0.push(b'S');
        self
    }

    /// A snapshot file.
    pub fn file(self, id: u8, bytes: &[u8]) -> Self {
        self.with_bytes(b'F', id, bytes)
    }

    /// Damage: byte `at` overwritten with `value`.
    pub fn overwrite(mut self, at: u16, value: u8) -> Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&at.to_le_bytes());
        self.0.push(value);
        self
    }

    /// Damage: the newest segment cut to `at` bytes.
    pub fn truncate(mut self, at: u16) -> Self {
        self.0.push(b'T');
        self.0.extend_from_slice(&at.to_le_bytes());
        self
    }

    /// Damage: segment `segment` cut to `at` bytes.
    pub fn cut(mut self, segment: u8, at: u16) -> Self {
        self.0.push(b'C');
        self.0.push(segment);
        self.0.extend_from_slice(&at.to_le_bytes());
        self
    }

    /// Damage: `bytes` appended to sealed segment `segment`.
    pub fn append(mut self, segment: u8, bytes: &[u8]) -> Self {
        self.0
            .extend_from_slice(&[b'A', segment, u8::try_from(bytes.len()).expect("short")]);
        self.0.extend_from_slice(bytes);
        self
    }

    /// Raw bytes after the ops (with [`RAW`]: the segment body).
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// The input's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(entries: &[(u8, &[u8])]) -> BTreeMap<ActorId, Vec<u8>> {
        entries
            .iter()
            .map(|(id, bytes)| (actor(*id), bytes.to_vec()))
            .collect()
    }

    /// Two batches in segment 1 of one put each: 60 + (16 + 21 + 3) * 2 bytes.
    fn two_batches(flags: u8) -> Input {
        Input::new(flags)
            .put(1, b"one")
            .batch()
            .put(2, b"two")
            .batch()
    }

    #[test]
    fn files_are_overlaid_with_every_record_across_segments() {
        let plan = Plan::parse(
            &Input::new(SYNCED)
                .file(4, b"file four")
                .file(5, b"file five")
                .put(1, b"first")
                .batch()
                .put(4, b"newer")
                .segment()
                .delete(5)
                .put(1, b"second")
                .segment()
                .put(6, b"")
                .into_bytes(),
        );
        assert_eq!(plan.segments.len(), 3);
        assert_eq!(
            plan.batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 1, 1]
        );
        assert_eq!(
            plan.expect(),
            Expect::State(state(&[(1, b"second"), (4, b"newer"), (6, b"")]))
        );
        assert_eq!(plan.ids, [1, 4, 5, 6].map(actor));
        // The second segment names the first, of its length.
        let second = &plan.segments[1];
        assert_eq!(second[32..40], 1u64.to_le_bytes());
        assert_eq!(
            second[48..56],
            (plan.segments[0].len() as u64).to_le_bytes()
        );
    }

    #[test]
    fn damage_to_a_sealed_segment_must_fail_the_open() {
        let plan = Plan::parse(&two_batches(0).segment().overwrite(70, 0xff).into_bytes());
        assert_eq!(plan.expect(), Expect::Error);
        // Cutting the newest segment leaves the sealed one whole.
        let plan = Plan::parse(
            &two_batches(0)
                .segment()
                .put(3, b"x")
                .truncate(61)
                .into_bytes(),
        );
        assert_eq!(
            plan.expect(),
            Expect::State(state(&[(1, b"one"), (2, b"two")]))
        );
        // A sealed segment cut at a batch boundary, or grown.
        let sealed = || two_batches(0).segment().put(3, b"x");
        assert_eq!(
            Plan::parse(&sealed().cut(0, 100).into_bytes()).expect(),
            Expect::Error
        );
        assert_eq!(
            Plan::parse(&sealed().append(0, b"more").into_bytes()).expect(),
            Expect::Error
        );
        // Appending to the newest is not done (the bytes might form a batch).
        let plan = Plan::parse(&two_batches(0).append(0, b"more").into_bytes());
        assert_eq!(plan.damaged, plan.segments);
    }

    #[test]
    fn damage_to_the_newest_segment_keeps_the_batches_before_it() {
        // Segment 1 is 140 bytes; its second batch begins at 100.
        for (at, kept) in [
            (99u16, &[][..]),
            (100, &[(1u8, &b"one"[..])][..]),
            (139, &[(1u8, &b"one"[..])][..]),
        ] {
            let plan = Plan::parse(&two_batches(0).truncate(at).into_bytes());
            assert_eq!(plan.expect(), Expect::State(state(kept)), "cut at {at}");
            let plan = Plan::parse(&two_batches(0).overwrite(at, 0xee).into_bytes());
            assert_eq!(plan.expect(), Expect::State(state(kept)), "byte {at}");
            // A synced segment must report damage followed by a valid batch.
            let plan = Plan::parse(&two_batches(SYNCED).overwrite(at, 0xee).into_bytes());
            let expect = if at < 100 {
                Expect::Error
            } else {
                Expect::StateOrError(state(kept))
            };
            assert_eq!(plan.expect(), expect, "byte {at}");
        }
        assert_eq!(
            Plan::parse(&two_batches(0).truncate(140).into_bytes()).expect(),
            Expect::State(state(&[(1, b"one"), (2, b"two")])),
        );
        // A bad header: damage, in the segment `START` names or with batches
        // after it; otherwise a creation cut short, after a segment synced
        // whole (but what was cut from its end at a batch boundary cannot be
        // told).
        let plan = Plan::parse(&two_batches(0).overwrite(3, 0).into_bytes());
        assert_eq!(plan.expect(), Expect::Error);
        let next = || two_batches(0).segment().put(3, b"three");
        assert_eq!(
            Plan::parse(&next().overwrite(150, 0xff).into_bytes()).expect(),
            Expect::Error
        );
        let plan = Plan::parse(&next().truncate(3).cut(0, 100).into_bytes());
        assert_eq!(plan.expect(), Expect::State(state(&[(1, b"one")])));
        for damage in [
            next().truncate(3).cut(0, 99),
            next().truncate(0).overwrite(120, 0xee),
        ] {
            assert_eq!(Plan::parse(&damage.into_bytes()).expect(), Expect::Error);
        }
        // Overwriting a byte with its own value is no damage.
        let plan = Plan::parse(&two_batches(0).overwrite(0, b'T').into_bytes());
        assert_eq!(
            plan.expect(),
            Expect::State(state(&[(1, b"one"), (2, b"two")]))
        );
    }

    #[test]
    fn raw_input_is_one_segment_after_a_valid_header() {
        let plan = Plan::parse(&Input::new(RAW).raw(b"garbage").into_bytes());
        assert_eq!(plan.expect(), Expect::Consistent);
        assert_eq!(plan.damaged[0].len(), SEGMENT_HEADER_LEN + 7);
        let plan = Plan::parse(&Input::new(RAW | RAW_HEADER).raw(b"garbage").into_bytes());
        assert_eq!(plan.damaged[0], b"garbage");
    }
}
