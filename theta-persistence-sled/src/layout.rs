//! The store directory: what theta and sled keep in it, which directories are
//! this backend's, and their permissions.
//!
//! ```text
//! <dir>/FORMAT      "theta-persistence-sled layout 1\n": the layout marker
//! <dir>/ACKED       what theta acknowledged (see `acked`)
//! <dir>/conf        sled's configuration
//! <dir>/db          sled's log (all trees)
//! <dir>/blobs/<n>   sled's large values, one file each
//! <dir>/snap.<lsn>  sled's page-table snapshots
//! <dir>/snap.<lsn>.generating   one being written (renamed to `snap.<lsn>` once synced)
//! ```
//!
//! The directory is 0700 and every file in it 0600, whatever the umask: theta
//! narrows sled's files (which sled creates 0644) at every open, and blob files
//! as it syncs them; the directory's mode alone already keeps others out of
//! files sled creates in between.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::SledError;
use crate::acked::ACKED_FILE;

/// The layout marker's file name, shared with the fs backend, so that each
/// backend reads the other's marker and refuses the directory by name.
pub(crate) const FORMAT_FILE: &str = "FORMAT";
/// The marker of this layout.
pub(crate) const FORMAT: &str = "theta-persistence-sled layout 1\n";
const FORMAT_TEMP: &str = ".FORMAT.tmp";

pub(crate) const DIR_MODE: u32 = 0o700;
pub(crate) const FILE_MODE: u32 = 0o600;

/// What a directory about to be opened holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A store of this layout (its marker is there).
    Store,
    /// Nothing (created just now, or empty): a new store.
    Empty,
    /// sled's files and no marker: a database of an older theta build, or a
    /// sled database of some other program (told apart by its trees).
    Unmarked,
}

/// Whether `name` is a file sled 0.34 keeps in its directory.
fn is_sleds(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs") || name.starts_with("snap.")
}

/// Creates the directory (0700) if it does not exist, and says what it holds.
/// A directory holding anything but sled's and theta's files, and no marker, is
/// refused naming what is there; so is another layout's marker.
pub(crate) fn prepare(path: &Path) -> Result<Found, SledError> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SledError::NotAStore {
                path: path.to_path_buf(),
                found: "a file that is not a directory".to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dir(path)?;
            return Ok(Found::Empty);
        }
        Err(e) => return Err(SledError::io("inspecting", path, e)),
    }
    let marker = path.join(FORMAT_FILE);
    match fs::read(&marker) {
        Ok(found) if found == FORMAT.as_bytes() => return Ok(Found::Store),
        Ok(found) => {
            return Err(SledError::UnsupportedLayout {
                path: marker,
                found: String::from_utf8_lossy(&found).trim().to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SledError::io("reading", &marker, e)),
    }
    let mut sleds = false;
    let mut foreign = Vec::new();
    let entries = fs::read_dir(path).map_err(|e| SledError::io("listing", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SledError::io("listing", path, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_sleds(&name) {
            sleds = true;
        } else if name != ACKED_FILE && name != FORMAT_TEMP {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        let count = foreign.len();
        foreign.truncate(8);
        let mut found = foreign
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if count > foreign.len() {
            found.push_str(&format!(" and {} more", count - foreign.len()));
        }
        return Err(SledError::NotAStore {
            path: path.to_path_buf(),
            found: format!("a non-empty directory without a {FORMAT_FILE} marker, holding {found}"),
        });
    }
    Ok(if sleds { Found::Unmarked } else { Found::Empty })
}

/// Creates `path` 0700 (its missing parents with the default mode) and makes the
/// new entry durable.
fn create_dir(path: &Path) -> Result<(), SledError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| SledError::io("creating", parent, e))?;
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        // Created by someone else meanwhile: inspected like any directory on
        // the next open; this one goes on with what is there now.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
        Err(e) => return Err(SledError::io("creating", path, e)),
    }
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
        .map_err(|e| SledError::io("setting the permissions of", path, e))?;
    sync_dir(parent).map_err(|e| SledError::io("syncing", parent, e))
}

/// Writes the marker durably (temp file, sync, rename, directory sync).
pub(crate) fn write_format(dir: &Path) -> Result<(), SledError> {
    let temp = dir.join(FORMAT_TEMP);
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&temp)
        .map_err(|e| SledError::io("creating", &temp, e))?;
    file.write_all(FORMAT.as_bytes())
        .and_then(|()| file.set_permissions(Permissions::from_mode(FILE_MODE)))
        .and_then(|()| file.sync_all())
        .map_err(|e| SledError::io("writing", &temp, e))?;
    let marker = dir.join(FORMAT_FILE);
    fs::rename(&temp, &marker).map_err(|e| SledError::io("renaming", &temp, e))?;
    sync_dir(dir).map_err(|e| SledError::io("syncing", dir, e))
}

/// `fsync`s a directory, making its entries durable.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Makes the directory 0700 and theta's and sled's files in it 0600 (sled's
/// blob directory 0700). Other entries are left as they are.
pub(crate) fn narrow_permissions(dir: &Path) -> Result<(), SledError> {
    let set = |path: &Path, mode: u32| {
        fs::set_permissions(path, Permissions::from_mode(mode))
            .map_err(|e| SledError::io("setting the permissions of", path, e))
    };
    set(dir, DIR_MODE)?;
    for entry in fs::read_dir(dir).map_err(|e| SledError::io("listing", dir, e))? {
        let entry = entry.map_err(|e| SledError::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name == "blobs" {
            set(&path, DIR_MODE)?;
            for blob in fs::read_dir(&path).map_err(|e| SledError::io("listing", &path, e))? {
                let blob = blob.map_err(|e| SledError::io("listing", &path, e))?;
                set(&blob.path(), FILE_MODE)?;
            }
        } else if is_sleds(&name) || name == FORMAT_FILE || name == ACKED_FILE {
            set(&path, FILE_MODE)?;
        }
    }
    Ok(())
}

/// What [`clear_unfinished_snapshots`] could do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// The directory was checked (and cleared if needed) under sled's lock.
    Checked,
    /// Another handle or process holds sled's lock: nothing was touched.
    Locked,
}

/// The suffix of a page-table snapshot sled 0.34 is still writing.
const GENERATING: &str = ".generating";

/// Removes the page-table snapshots whose writing a crash cut short.
///
/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it, and only
/// then renames it to `snap.<lsn>`; but when it opens a database it reads the
/// highest-named `snap.` file, a `.generating` one included, so a kill during
/// that write leaves a truncated file that fails every later open with
/// `Corruption`. A truncated `.generating` file (its length and checksum
/// trailer do not match, which the sync before the rename rules out for a
/// finished one) was never sled's snapshot: removing it leaves the directory
/// as a kill just before the write began would have, from which sled recovers
/// by its older snapshot and its log. A finished one is left for sled.
///
/// Runs under sled's own lock (an exclusive `flock` on `db`), so a snapshot
/// another open handle is writing right now is never touched.
pub(crate) fn clear_unfinished_snapshots(dir: &Path) -> Result<Sweep, SledError> {
    let db = dir.join("db");
    let lock = match OpenOptions::new().read(true).write(true).open(&db) {
        Ok(file) => file,
        // No log yet: a new database, nothing sled could have cut short.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Sweep::Checked),
        Err(e) => return Err(SledError::io("opening", &db, e)),
    };
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Sweep::Locked),
        Err(e) => return Err(SledError::io("locking", &db, e.into())),
    }
    let mut removed = false;
    for entry in fs::read_dir(dir).map_err(|e| SledError::io("listing", dir, e))? {
        let entry = entry.map_err(|e| SledError::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("snap.") && name.ends_with(GENERATING)) {
            continue;
        }
        let path = entry.path();
        let bytes = fs::read(&path).map_err(|e| SledError::io("reading", &path, e))?;
        if is_finished_snapshot(&bytes) {
            continue;
        }
        tracing::warn!(
            "removing {}: a sled page-table snapshot whose writing was cut short ({} bytes)",
            path.display(),
            bytes.len()
        );
        fs::remove_file(&path).map_err(|e| SledError::io("removing", &path, e))?;
        removed = true;
    }
    if removed {
        sync_dir(dir).map_err(|e| SledError::io("syncing", dir, e))?;
    }
    // Dropping the file releases the lock; sled takes it again as it opens.
    drop(lock);
    Ok(Sweep::Checked)
}

/// Whether `bytes` end in the trailer sled 0.34 appends to a snapshot as its
/// last write: the uncompressed length (8 bytes) and the CRC-32 of everything
/// before the trailer (4 bytes, little-endian).
fn is_finished_snapshot(bytes: &[u8]) -> bool {
    let Some(body_len) = bytes.len().checked_sub(12).filter(|&n| n > 0) else {
        return false;
    };
    let (body, trailer) = bytes.split_at(body_len);
    let stored = u32::from_le_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]);
    crc32fast::hash(body) == stored
}

#[cfg(test)]
mod tests {
    use super::is_finished_snapshot;

    /// A snapshot as sled 0.34 seals it: the body, its length, its CRC-32.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        bytes
    }

    #[test]
    fn a_sealed_snapshot_is_finished_and_no_prefix_of_it_is() {
        let body: Vec<u8> = (0..=255u8).cycle().take(700).collect();
        let whole = sealed(&body);
        assert!(is_finished_snapshot(&whole));
        for cut in 0..whole.len() {
            assert!(
                !is_finished_snapshot(&whole[..cut]),
                "a prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn a_flipped_bit_or_an_empty_body_is_not_finished() {
        let mut bytes = sealed(b"page table");
        bytes[3] ^= 0x10;
        assert!(!is_finished_snapshot(&bytes));
        assert!(!is_finished_snapshot(&sealed(b"")));
    }
}
