//! Where things live in the store directory, and the directory walks.
//!
//! ```text
//! <dir>/LOCK                              flock'ed while a store has the dir open
//! <dir>/FORMAT                            the layout marker
//! <dir>/journal/<generation>.log          the write-ahead journal (see `journal`)
//! <dir>/snapshots/<aa>/<uuid>.snap        aa = XOR of the id's 16 bytes, in hex
//! <dir>/snapshots/<aa>/.<uuid>.<n>.tmp    a write in progress (removed at open)
//! ```
//!
//! 256 shard directories keep a million actors at ~4k entries per directory.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use theta::ActorId;
use theta::persistence::envelope::{HEADER_LEN, Header, Stamp};

use crate::FsError;

pub(crate) const LOCK_FILE: &str = "LOCK";
pub(crate) const FORMAT_FILE: &str = "FORMAT";
/// The content of `FORMAT` for this layout. Bump it whenever the layout changes
/// (sharding, file names): a build that finds another layout must refuse the store
/// rather than look in the wrong place and report "no snapshot", which would let
/// `respawn_or` start actors fresh over existing data.
///
/// Layout 2 added the journal (`<dir>/journal/`): a build of layout 1 would not
/// replay it, so it must not open a layout-2 store.
pub(crate) const FORMAT: &str = "theta-persistence-fs layout 2\n";
/// Layout 1 is layout 2 with an empty journal; such a store is upgraded by
/// rewriting its marker.
const FORMAT_1: &str = "theta-persistence-fs layout 1\n";
pub(crate) const SNAPSHOTS: &str = "snapshots";
const SNAP_EXT: &str = ".snap";
const TMP_EXT: &str = ".tmp";

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// The shard of `id`: the XOR of its 16 bytes. Random (v4) ids spread evenly
/// either way; folding every byte also spreads ids that differ only in a few
/// bytes (sequential `ActorId::from_u128(base + i)`, v7 ids with one timestamp
/// prefix). Sharding by a prefix put such ids into one directory, whose lock
/// serialized every rename: durable saves of 64 such actors ran at half the rate.
pub(crate) fn shard_byte(id: ActorId) -> u8 {
    id.as_bytes().iter().fold(0, |acc, b| acc ^ b)
}

/// The shard directory name of `id`: [`shard_byte`] in hex.
pub(crate) fn shard_name(id: ActorId) -> String {
    format!("{:02x}", shard_byte(id))
}

pub(crate) fn shard_dir(snapshots: &Path, id: ActorId) -> PathBuf {
    snapshots.join(shard_name(id))
}

pub(crate) fn snapshot_path(snapshots: &Path, id: ActorId) -> PathBuf {
    shard_dir(snapshots, id).join(format!("{}{SNAP_EXT}", id.hyphenated()))
}

pub(crate) fn temp_path(shard: &Path, id: ActorId, nonce: u64) -> PathBuf {
    shard.join(format!(".{}.{nonce}{TMP_EXT}", id.hyphenated()))
}

/// Creates a directory 0700; `Ok(true)` if it was created, `Ok(false)` if it
/// already existed.
pub(crate) fn create_dir(path: &Path) -> Result<bool, FsError> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(FsError::io("creating directory", path, e)),
    }
}

/// Creates a directory and its missing ancestors, 0700, fsync'ing the parent of
/// every directory it created so the new entries are durable.
pub(crate) fn create_dir_all_durable(path: &Path) -> Result<(), FsError> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(parent)?;
    }
    if create_dir(path)? {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        sync_dir(parent)?;
    }
    Ok(())
}

pub(crate) fn open_dir(path: &Path) -> Result<File, FsError> {
    File::open(path).map_err(|e| FsError::io("opening directory", path, e))
}

/// Checks the layout marker of the store in `dir`, writing it (durably) into a
/// store that has no snapshots yet.
pub(crate) fn check_or_write_format(dir: &Path) -> Result<(), FsError> {
    let path = dir.join(FORMAT_FILE);
    match fs::read(&path) {
        Ok(found) if found == FORMAT.as_bytes() => Ok(()),
        Ok(found) if found == FORMAT_1.as_bytes() => write_format(dir, &path),
        Ok(found) => Err(FsError::UnsupportedFormat {
            path,
            found: String::from_utf8_lossy(&found).trim().to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut has_data = false;
            for sub in [SNAPSHOTS, crate::journal::JOURNAL] {
                let sub = dir.join(sub);
                has_data |= match fs::read_dir(&sub) {
                    Ok(mut entries) => entries.next().is_some(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(FsError::io("listing", sub, e)),
                };
            }
            if has_data {
                return Err(FsError::UnsupportedFormat {
                    path,
                    found: "no FORMAT file, but snapshots are present".to_owned(),
                });
            }
            write_format(dir, &path)
        }
        Err(e) => Err(FsError::io("reading", path, e)),
    }
}

/// Replaces the marker durably (temp file, sync, rename, directory sync).
fn write_format(dir: &Path, path: &Path) -> Result<(), FsError> {
    let temp = dir.join(".FORMAT.tmp");
    let _ = fs::remove_file(&temp);
    let mut file = create_file(&temp).map_err(|e| FsError::io("creating", &temp, e))?;
    io::Write::write_all(&mut file, FORMAT.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| FsError::io("writing", &temp, e))?;
    fs::rename(&temp, path).map_err(|e| FsError::io("renaming", &temp, e))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(path: &Path) -> Result<(), FsError> {
    open_dir(path)?
        .sync_all()
        .map_err(|e| FsError::io("syncing directory", path, e))
}

pub(crate) fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// The stamp of the snapshot stored at `path`, read from its header alone:
/// `Ok(None)` when there is no file or it is not a (whole) envelope, the same
/// cases in which `envelope::stamp_of` answers `None`.
pub(crate) fn stored_stamp(path: &Path) -> io::Result<Option<Stamp>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut header = [0u8; HEADER_LEN];
    let want = (HEADER_LEN as u64).min(len) as usize;
    file.read_exact(&mut header[..want])?;
    Ok(Header::peek_prefix(&header[..want], len)
        .ok()
        .map(|h| h.stamp()))
}

/// The shard directories present (names `00`..`ff`); anything else is ignored.
fn shards(snapshots: &Path) -> Result<Vec<(u8, PathBuf)>, FsError> {
    let entries = match fs::read_dir(snapshots) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::io("listing", snapshots, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| FsError::io("listing", snapshots, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() != 2
            || name
                .bytes()
                .any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            continue;
        }
        let Ok(byte) = u8::from_str_radix(name, 16) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push((byte, entry.path()));
        }
    }
    Ok(out)
}

/// The ids of all `<uuid>.snap` files in their right shard. Anything else (temp
/// files, foreign files, non-canonical names, misplaced files) is ignored.
pub(crate) fn list(snapshots: &Path) -> Result<Vec<ActorId>, FsError> {
    let mut ids = Vec::new();
    for (byte, shard) in shards(snapshots)? {
        let entries = match fs::read_dir(&shard) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(FsError::io("listing", &shard, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("listing", &shard, e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SNAP_EXT)) else {
                continue;
            };
            let Ok(id) = ActorId::try_parse(stem) else {
                continue;
            };
            // Only the canonical name of an id in its own shard is that id's
            // snapshot; `try_read` would never find any other spelling.
            if shard_byte(id) != byte || id.hyphenated().to_string() != stem {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// Removes the temp files a crash left behind; returns the shard bytes present.
/// Only this store writes in the directory and it holds the lock, so every temp
/// file found here is garbage.
pub(crate) fn clean_temp_files(snapshots: &Path) -> Result<Vec<u8>, FsError> {
    let mut present = Vec::new();
    for (byte, shard) in shards(snapshots)? {
        present.push(byte);
        let entries = fs::read_dir(&shard).map_err(|e| FsError::io("listing", &shard, e))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| FsError::io("listing", &shard, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(TMP_EXT) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => removed = true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(FsError::io("removing stale temp file", path, e)),
                }
            }
        }
        if removed {
            sync_dir(&shard)?;
        }
    }
    Ok(present)
}
