//! Where things live in the store directory, and the store's marker files.
//!
//! ```text
//! <dir>/LOCK                              flock'ed while a store has the dir open
//! <dir>/FORMAT                            the layout marker, written last at creation
//! <dir>/GENERATION                        bumped at every open: the epoch floor
//! <dir>/journal/START                     the oldest segment the journal needs
//! <dir>/journal/<number>.log              the write-ahead journal (see `journal`)
//! <dir>/snapshots/<aa>/<uuid>.snap        aa = XOR of the id's 16 bytes, in hex
//! <dir>/snapshots/<aa>/.<uuid>.<n>.tmp    a checkpoint's write in progress
//! <dir>/.<name>.tmp, journal/.START.tmp   a marker being replaced
//! ```
//!
//! 256 shard directories keep a million actors at ~4k entries per directory.

use theta::ActorId;

use crate::dir::{Dir, Kind};
use crate::error::{Failure, FsError};

pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const FORMAT_FILE: &str = "FORMAT";
pub(crate) const GENERATION_FILE: &str = "GENERATION";
pub(crate) const SNAPSHOTS: &str = "snapshots";
pub(crate) const JOURNAL: &str = "journal";
/// In `journal/`: the number of the oldest segment the journal needs.
pub(crate) const START_FILE: &str = "START";
/// The content of `FORMAT` for this layout. Bump it whenever the layout changes
/// (sharding, file names, the journal's format): a build that finds another
/// layout must refuse the store rather than look in the wrong place and report
/// "no snapshot", which would let `respawn_or` start actors fresh over existing
/// data.
///
/// - Layout 2 added the journal (`<dir>/journal/`).
/// - Layout 3 added `GENERATION`, `journal/START`, and segments that name their
///   predecessor (so a missing or shortened segment is damage, not a clean end).
pub(crate) const FORMAT: &str = "theta-persistence-fs layout 3\n";
const FORMAT_1: &str = "theta-persistence-fs layout 1\n";
const FORMAT_2: &str = "theta-persistence-fs layout 2\n";
/// No segment header of any version is longer than this.
pub(crate) const SEGMENT_HEADER_MAX: u64 = 64;
const SEGMENT_EXT: &str = ".log";
const SNAP_EXT: &str = ".snap";
const TMP_EXT: &str = ".tmp";

/// The layout a store directory says it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// No marker: a new store, or not a store at all.
    Absent,
    /// This build's layout.
    Current,
    /// Layout 1 or 2: upgraded at open (their journals, if any, are read with
    /// the rules of their time).
    Legacy,
}

/// Reads the layout marker of the store in `root`.
pub(crate) fn read_format(root: &Dir) -> Result<Format, FsError> {
    let Some(found) = root.read_small(FORMAT_FILE, 256)? else {
        return Ok(Format::Absent);
    };
    if found == FORMAT.as_bytes() {
        Ok(Format::Current)
    } else if found == FORMAT_1.as_bytes() || found == FORMAT_2.as_bytes() {
        Ok(Format::Legacy)
    } else {
        Err(FsError::UnsupportedFormat {
            path: root.join(FORMAT_FILE),
            found: String::from_utf8_lossy(&found).trim().to_owned(),
        })
    }
}

/// Writes this build's layout marker, durably.
pub(crate) fn write_format(root: &Dir) -> Result<(), Failure> {
    root.replace_file(FORMAT_FILE, FORMAT.as_bytes())
}

/// Reads the store generation (`None` if the file is absent).
pub(crate) fn read_generation(root: &Dir) -> Result<Option<u64>, FsError> {
    let Some(bytes) = root.read_small(GENERATION_FILE, 64)? else {
        return Ok(None);
    };
    let damaged = |cause: &str| FsError::Damaged {
        path: root.join(GENERATION_FILE),
        cause: cause.to_owned(),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| damaged("not a number"))?;
    let digits = text
        .strip_suffix('\n')
        .ok_or_else(|| damaged("not a number"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(damaged("not a number"));
    }
    digits
        .parse()
        .map(Some)
        .map_err(|_| damaged("a number too large"))
}

/// Writes the store generation, durably.
pub(crate) fn write_generation(root: &Dir, generation: u64) -> Result<(), Failure> {
    root.replace_file(GENERATION_FILE, format!("{generation}\n").as_bytes())
}

/// What a directory without a layout marker holds.
#[derive(Debug)]
pub(crate) enum Unmarked {
    /// Nothing, or only what a creation of a store that was cut short leaves
    /// (these `journal/` files, which hold no writes, are to be removed).
    Empty { leftovers: Vec<String> },
    /// Something else: a description of it.
    Foreign(String),
}

/// Looks at a directory that has no `FORMAT` file.
pub(crate) fn classify_unmarked(root: &Dir) -> Result<Unmarked, FsError> {
    let mut foreign = Vec::new();
    let mut leftovers = Vec::new();
    let mut unmarked_data = false;
    for entry in root.entries()? {
        let ours = match (entry.name(), entry.kind) {
            (Some(LOCK_FILE | GENERATION_FILE), Kind::File) => true,
            // The root of a fresh ext4 file system (a store on its own disk).
            (Some("lost+found"), Kind::Dir) => root.open_sub("lost+found")?.entries()?.is_empty(),
            (Some(name), Kind::File) if is_marker_temp(name) => true,
            (Some(SNAPSHOTS), Kind::Dir) => {
                let empty = root.open_sub(SNAPSHOTS)?.entries()?.is_empty();
                unmarked_data |= !empty;
                empty
            }
            (Some(JOURNAL), Kind::Dir) => {
                let journal = root.open_sub(JOURNAL)?;
                let mut only_headers = true;
                let mut segments_with_writes = false;
                for entry in journal.entries()? {
                    let name = entry.name().map(str::to_owned);
                    let short_segment = |name: &str| {
                        parse_segment_name(name).is_some()
                            && journal
                                .open_read(name)
                                .and_then(|f| f.len())
                                .is_ok_and(|len| len <= SEGMENT_HEADER_MAX)
                    };
                    match name {
                        Some(name)
                            if entry.kind == Kind::File
                                && (name == START_FILE
                                    || is_marker_temp(&name)
                                    || short_segment(&name)) =>
                        {
                            leftovers.push(name);
                        }
                        Some(name) if parse_segment_name(&name).is_some() => {
                            segments_with_writes = true;
                            only_headers = false;
                        }
                        _ => only_headers = false,
                    }
                }
                unmarked_data |= segments_with_writes;
                only_headers
            }
            _ => false,
        };
        if !ours {
            foreign.push(entry);
        }
    }
    if foreign.is_empty() {
        return Ok(Unmarked::Empty { leftovers });
    }
    let mut names: Vec<String> = foreign
        .iter()
        .map(|e| {
            let name = e.name.to_string_lossy().into_owned();
            if e.kind == Kind::Dir {
                format!("`{name}/`")
            } else {
                format!("`{name}`")
            }
        })
        .collect();
    names.sort();
    let shown = names.len().min(6);
    let mut found = names[..shown].join(", ");
    if names.len() > shown {
        found.push_str(&format!(" and {} more", names.len() - shown));
    }
    let has = |name: &str| foreign.iter().any(|e| e.name() == Some(name));
    if has("conf") && has("db") {
        found.push_str(" (looks like a sled database: `conf` and `db` files)");
    } else if unmarked_data {
        found.push_str(
            " (snapshots or journal segments, but no layout marker: a store of an unmarked, older layout, or one whose FORMAT file was removed)",
        );
    } else if has("PG_VERSION") {
        found.push_str(" (looks like a PostgreSQL data directory)");
    }
    Ok(Unmarked::Foreign(found))
}

fn is_marker_temp(name: &str) -> bool {
    matches!(name, ".FORMAT.tmp" | ".GENERATION.tmp" | ".START.tmp")
}

/// The file name of journal segment `number`: 16 lowercase hex digits.
pub(crate) fn segment_name(number: u64) -> String {
    format!("{number:016x}{SEGMENT_EXT}")
}

/// The number of a journal segment file name; `None` for any other name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_EXT)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The shard of `id`: the XOR of its 16 bytes. Random (v4) ids spread evenly
/// either way; folding every byte also spreads ids that differ only in a few
/// bytes (sequential `ActorId::from_u128(base + i)`, v7 ids with one timestamp
/// prefix). Sharding by a prefix put such ids into one directory, whose lock
/// serialized every rename: durable saves of 64 such actors ran at half the rate.
pub(crate) fn shard_byte(id: ActorId) -> u8 {
    id.as_bytes().iter().fold(0, |acc, b| acc ^ b)
}

/// The shard directory name of `id` (in `snapshots/`): [`shard_byte`] in hex.
pub(crate) fn shard_name(id: ActorId) -> String {
    format!("{:02x}", shard_byte(id))
}

/// The shard byte a shard directory name stands for; `None` for other names.
pub(crate) fn parse_shard_name(name: &str) -> Option<u8> {
    if name.len() != 2 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u8::from_str_radix(name, 16).ok()
}

/// The snapshot file of `id`, relative to `snapshots/`: `<aa>/<uuid>.snap`.
pub(crate) fn snapshot_name(id: ActorId) -> String {
    format!("{}/{}{SNAP_EXT}", shard_name(id), id.hyphenated())
}

/// A checkpoint's temp file for `id`, relative to `snapshots/`.
pub(crate) fn temp_name(id: ActorId, nonce: u64) -> String {
    format!("{}/.{}.{nonce}{TMP_EXT}", shard_name(id), id.hyphenated())
}

/// The id whose snapshot file is `name` in shard `shard`; `None` for any other
/// name (temp files, foreign files, non-canonical spellings, an id in the wrong
/// shard: `try_read` would never find such a file).
pub(crate) fn parse_snapshot_name(shard: u8, name: &str) -> Option<ActorId> {
    let stem = name.strip_suffix(SNAP_EXT)?;
    let id = ActorId::try_parse(stem).ok()?;
    (shard_byte(id) == shard && id.hyphenated().to_string() == stem).then_some(id)
}

/// Whether `name` in a shard directory is a checkpoint's temp file.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TMP_EXT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_others_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(0xabc)), Some(0xabc));
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        for name in [
            "1.log",
            "000000000000000G.log",
            "000000000000000A.log",
            "0000000000000001.tmp",
            "0000000000000001.log.bak",
            "x",
        ] {
            assert_eq!(parse_segment_name(name), None, "{name}");
        }
    }

    #[test]
    fn snapshot_names_are_canonical_and_in_their_shard() {
        let id = ActorId::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let name = snapshot_name(id);
        let (shard, file) = name.split_once('/').unwrap();
        let shard = parse_shard_name(shard).unwrap();
        assert_eq!(parse_snapshot_name(shard, file), Some(id));
        assert_eq!(parse_snapshot_name(shard ^ 1, file), None);
        assert_eq!(parse_snapshot_name(shard, &file.to_uppercase()), None);
        assert!(is_temp_name(temp_name(id, 3).split_once('/').unwrap().1));
        assert_eq!(parse_shard_name("zz"), None);
        assert_eq!(parse_shard_name("AB"), None);
    }
}
