//! A simulated disk for power-loss tests (cargo feature `sim`).
//!
//! [`SimDisk`] is an in-memory file system behind the store's I/O seam
//! (`dir.rs`): open it with [`FsStorageBuilder::sim_disk`](crate::FsStorageBuilder::sim_disk).
//! It keeps, for every file and every directory, what is *durable* apart from
//! what was done since the last sync:
//!
//! - a file's writes and length changes are durable once the file is synced
//!   (`fdatasync`, `fsync`) or the file system is (`syncfs`);
//! - a directory's entries (a create, `mkdir`, rename or unlink in it) are
//!   durable once the directory is synced, or the file system is; a file synced
//!   whose entry is not is lost with its entry.
//!
//! A power loss ([`SimDisk::power_loss`]) produces the disk a restart finds:
//! every synced change, and of the unsynced ones none, all, a torn prefix, or a
//! reordered subset ([`Loss`]). A crash point ([`SimDisk::crash_at`]) freezes
//! the disk just before the n-th durability-relevant call (a sync, create,
//! `mkdir`, rename, unlink or length change): that call and every later one
//! fail with `EIO`, and [`SimDisk::power_loss`] starts from the frozen state.
//! [`SimDisk::fail_sync_at`] makes one sync return `EIO` instead: the unsynced
//! *data* of the files it syncs is then never made durable by a later sync (as
//! on Linux, where the kernel marks the pages clean after reporting the error),
//! while unsynced directory entries stay unsynced (metadata stays dirty in the
//! file system's journal: a later sync may make them durable, a power loss
//! may lose them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The unit a torn write survives in (some of its sectors, not others).
const SECTOR: u64 = 512;

type Ino = u64;

/// What survives a power loss of the changes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// None of them: the disk holds exactly what was synced.
    Dropped,
    /// All of them, in order (as if the disk had written everything: what a
    /// process crash leaves, as seen after a power loss).
    Kept,
    /// Per file, a prefix of its unsynced writes, the next one torn (a prefix of
    /// its bytes, or some of its 512-byte sectors); per directory, a prefix of
    /// its unsynced entry changes. Drawn from `seed`.
    Torn {
        /// Seeds the choices.
        seed: u64,
    },
    /// Per file, any subset of its unsynced writes, each whole or some of its
    /// sectors (a later write survives while an earlier one is lost); per
    /// directory, any subset of its unsynced entry changes. Drawn from `seed`.
    Reordered {
        /// Seeds the choices.
        seed: u64,
    },
}

/// An in-memory disk that tells synced from unsynced data; see the module docs.
/// Clones share one disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("SimDisk")
            .field("points", &inner.points)
            .field("crashed", &inner.frozen.is_some())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    live: State,
    /// The state at the crash point, once the crash happened.
    frozen: Option<State>,
    crash_at: Option<u64>,
    /// Crash points passed (calls counted).
    points: u64,
    /// What each crash point was, in order.
    trace: Vec<String>,
    /// Syncs made (each kind counted).
    syncs: u64,
    fail_syncs: BTreeSet<u64>,
    /// The syncs that failed, described.
    failed: Vec<String>,
    /// Files `flock`ed.
    locks: BTreeSet<Ino>,
}

#[derive(Clone)]
struct State {
    inodes: BTreeMap<Ino, Inode>,
    next_ino: Ino,
}

impl Default for State {
    fn default() -> Self {
        let mut inodes = BTreeMap::new();
        inodes.insert(ROOT, Inode::Dir(DirNode::default()));
        Self {
            inodes,
            next_ino: ROOT + 1,
        }
    }
}

const ROOT: Ino = 1;

#[derive(Clone)]
enum Inode {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Clone, Default)]
struct FileNode {
    /// What a power loss keeps for sure.
    durable: Vec<u8>,
    /// What a read sees.
    current: Vec<u8>,
    /// The changes since the last sync, in order (applied to `durable` by one).
    pending: Vec<FileOp>,
    /// Entries naming it, in the current namespace.
    links: u32,
    /// The last name it had, for traces.
    name: String,
}

#[derive(Clone)]
enum FileOp {
    Write { at: u64, bytes: Vec<u8> },
    SetLen(u64),
}

/// One change of a directory's entries, atomic (a rename within the directory
/// is one: the new name and the old one's removal).
type DirOp = Vec<(String, Option<Ino>)>;

#[derive(Clone, Default)]
struct DirNode {
    durable: BTreeMap<String, Ino>,
    current: BTreeMap<String, Ino>,
    pending: Vec<DirOp>,
    links: u32,
    name: String,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    io::Error::from(e)
}

fn eio() -> io::Error {
    errno(rustix::io::Errno::IO)
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// In `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

fn apply_file(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { at, bytes } => write_at(content, *at, bytes),
        FileOp::SetLen(len) => content.resize(*len as usize, 0),
    }
}

fn write_at(content: &mut Vec<u8>, at: u64, bytes: &[u8]) {
    let end = at as usize + bytes.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[at as usize..end].copy_from_slice(bytes);
}

/// The sectors of a write of `len` bytes at `at`: `(start, end)` offsets within
/// the write.
fn sectors(at: u64, len: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = at;
    let end = at + len as u64;
    while pos < end {
        let next = ((pos / SECTOR) + 1) * SECTOR;
        let stop = next.min(end);
        out.push(((pos - at) as usize, (stop - at) as usize));
        pos = stop;
    }
    out
}

/// `op` torn: a prefix of its bytes (`prefix`) or some of its sectors.
fn apply_torn(content: &mut Vec<u8>, op: &FileOp, rng: &mut Rng, prefix: bool) {
    match op {
        FileOp::SetLen(_) => {
            if rng.coin() {
                apply_file(content, op);
            }
        }
        FileOp::Write { at, bytes } => {
            if prefix {
                let keep = rng.below(bytes.len() as u64 + 1) as usize;
                write_at(content, *at, &bytes[..keep]);
            } else {
                for (start, end) in sectors(*at, bytes.len()) {
                    if rng.coin() {
                        write_at(content, at + start as u64, &bytes[start..end]);
                    }
                }
            }
        }
    }
}

fn apply_dir(entries: &mut BTreeMap<String, Ino>, op: &DirOp) {
    for (name, ino) in op {
        match ino {
            Some(ino) => entries.insert(name.clone(), *ino),
            None => entries.remove(name),
        };
    }
}

impl State {
    fn file(&mut self, ino: Ino) -> io::Result<&mut FileNode> {
        match self.inodes.get_mut(&ino) {
            Some(Inode::File(file)) => Ok(file),
            Some(Inode::Dir(_)) => Err(errno(rustix::io::Errno::ISDIR)),
            None => Err(errno(rustix::io::Errno::BADF)),
        }
    }

    fn dir(&mut self, ino: Ino) -> io::Result<&mut DirNode> {
        match self.inodes.get_mut(&ino) {
            Some(Inode::Dir(dir)) => Ok(dir),
            Some(Inode::File(_)) => Err(errno(rustix::io::Errno::NOTDIR)),
            None => Err(errno(rustix::io::Errno::BADF)),
        }
    }

    /// The directory holding the last component of `name` (relative to `dir`),
    /// and that component.
    fn parent_of<'n>(&mut self, dir: Ino, name: &'n str) -> io::Result<(Ino, &'n str)> {
        let mut parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
        let last = parts.pop().ok_or_else(|| errno(rustix::io::Errno::INVAL))?;
        let mut at = dir;
        for part in parts {
            at = self.step(at, part)?;
            self.dir(at)?;
        }
        Ok((at, last))
    }

    fn step(&mut self, dir: Ino, part: &str) -> io::Result<Ino> {
        if part == "." {
            return Ok(dir);
        }
        self.dir(dir)?
            .current
            .get(part)
            .copied()
            .ok_or_else(|| errno(rustix::io::Errno::NOENT))
    }

    /// What `name` (relative to `dir`) is; `NOENT` if absent.
    fn lookup(&mut self, dir: Ino, name: &str) -> io::Result<Ino> {
        let (parent, last) = self.parent_of(dir, name)?;
        self.step(parent, last)
    }

    fn link(&mut self, dir: Ino, op: DirOp) -> io::Result<()> {
        for (name, ino) in &op {
            let old = self.dir(dir)?.current.get(name).copied();
            if let Some(old) = old {
                self.adjust_links(old, -1);
            }
            if let Some(ino) = ino {
                self.adjust_links(*ino, 1);
                let named = name.clone();
                match self.inodes.get_mut(ino) {
                    Some(Inode::File(f)) => f.name = named,
                    Some(Inode::Dir(d)) => d.name = named,
                    None => {}
                }
            }
            apply_dir(&mut self.dir(dir)?.current, &vec![(name.clone(), *ino)]);
        }
        self.dir(dir)?.pending.push(op);
        Ok(())
    }

    fn adjust_links(&mut self, ino: Ino, by: i32) {
        match self.inodes.get_mut(&ino) {
            Some(Inode::File(f)) => f.links = f.links.saturating_add_signed(by),
            Some(Inode::Dir(d)) => d.links = d.links.saturating_add_signed(by),
            None => {}
        }
    }

    fn new_inode(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, inode);
        ino
    }

    fn sync_inode(&mut self, ino: Ino, lost: bool) {
        match self.inodes.get_mut(&ino) {
            Some(Inode::File(f)) => {
                if !lost {
                    for op in &f.pending {
                        apply_file(&mut f.durable, op);
                    }
                }
                f.pending.clear();
            }
            Some(Inode::Dir(d)) if !lost => {
                for op in &d.pending {
                    apply_dir(&mut d.durable, op);
                }
                d.pending.clear();
            }
            // Entries are file-system metadata: a failed sync leaves them
            // dirty (a later sync may still make them durable).
            Some(Inode::Dir(_)) | None => {}
        }
    }

    fn name_of(&self, ino: Ino) -> String {
        match self.inodes.get(&ino) {
            Some(Inode::File(f)) => f.name.clone(),
            Some(Inode::Dir(d)) if ino == ROOT => format!("/{}", d.name),
            Some(Inode::Dir(d)) => format!("{}/", d.name),
            None => "?".into(),
        }
    }

    /// The disk a restart after a power loss finds.
    fn after_power_loss(&self, loss: Loss) -> State {
        let seed = match loss {
            Loss::Torn { seed } | Loss::Reordered { seed } => seed,
            Loss::Dropped | Loss::Kept => 0,
        };
        let mut rng = Rng(seed ^ 0x5eed);
        let mut contents: BTreeMap<Ino, Vec<u8>> = BTreeMap::new();
        let mut entries: BTreeMap<Ino, BTreeMap<String, Ino>> = BTreeMap::new();
        for (&ino, inode) in &self.inodes {
            match inode {
                Inode::File(f) => {
                    let mut content = f.durable.clone();
                    match loss {
                        Loss::Dropped => {}
                        Loss::Kept => f.pending.iter().for_each(|op| apply_file(&mut content, op)),
                        Loss::Torn { .. } => {
                            let whole = rng.below(f.pending.len() as u64 + 1) as usize;
                            for op in &f.pending[..whole] {
                                apply_file(&mut content, op);
                            }
                            if let Some(op) = f.pending.get(whole) {
                                let prefix = rng.coin();
                                apply_torn(&mut content, op, &mut rng, prefix);
                            }
                        }
                        Loss::Reordered { .. } => {
                            for op in &f.pending {
                                match rng.below(3) {
                                    0 => {}
                                    1 => apply_file(&mut content, op),
                                    _ => apply_torn(&mut content, op, &mut rng, false),
                                }
                            }
                        }
                    }
                    contents.insert(ino, content);
                }
                Inode::Dir(d) => {
                    let mut names = d.durable.clone();
                    let surviving: Vec<&DirOp> = match loss {
                        Loss::Dropped => Vec::new(),
                        Loss::Kept => d.pending.iter().collect(),
                        Loss::Torn { .. } => {
                            let keep = rng.below(d.pending.len() as u64 + 1) as usize;
                            d.pending[..keep].iter().collect()
                        }
                        Loss::Reordered { .. } => d.pending.iter().filter(|_| rng.coin()).collect(),
                    };
                    for op in surviving {
                        apply_dir(&mut names, op);
                    }
                    entries.insert(ino, names);
                }
            }
        }
        // What is reachable from the root, with its links counted.
        let mut out = State {
            inodes: BTreeMap::new(),
            next_ino: self.next_ino,
        };
        let mut links: BTreeMap<Ino, u32> = BTreeMap::new();
        let mut todo = vec![ROOT];
        let mut seen = BTreeSet::new();
        while let Some(dir) = todo.pop() {
            if !seen.insert(dir) {
                continue;
            }
            let names = entries.get(&dir).cloned().unwrap_or_default();
            for &child in names.values() {
                *links.entry(child).or_default() += 1;
                if entries.contains_key(&child) {
                    todo.push(child);
                }
            }
            let name = match self.inodes.get(&dir) {
                Some(Inode::Dir(d)) => d.name.clone(),
                _ => String::new(),
            };
            out.inodes.insert(
                dir,
                Inode::Dir(DirNode {
                    durable: names.clone(),
                    current: names,
                    pending: Vec::new(),
                    links: 0,
                    name,
                }),
            );
        }
        for (&ino, &count) in &links {
            if let Some(content) = contents.remove(&ino) {
                let name = match self.inodes.get(&ino) {
                    Some(Inode::File(f)) => f.name.clone(),
                    _ => String::new(),
                };
                out.inodes.insert(
                    ino,
                    Inode::File(FileNode {
                        durable: content.clone(),
                        current: content,
                        pending: Vec::new(),
                        links: count,
                        name,
                    }),
                );
            } else if let Some(Inode::Dir(d)) = out.inodes.get_mut(&ino) {
                d.links = count;
            }
        }
        out
    }

    /// The state as a restarted process (no power loss) sees it: what a read
    /// sees now, every change durable.
    fn restarted(&self) -> State {
        let mut out = self.clone();
        for inode in out.inodes.values_mut() {
            match inode {
                Inode::File(f) => {
                    f.durable = f.current.clone();
                    f.pending.clear();
                }
                Inode::Dir(d) => {
                    d.durable = d.current.clone();
                    d.pending.clear();
                }
            }
        }
        out
    }
}

impl SimDisk {
    /// An empty disk: only the root directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn from_state(state: State) -> Self {
        let disk = Self::new();
        disk.lock().live = state;
        disk
    }

    /// Loses power just before the `point`-th crash point from now on (0: the
    /// next one; see [`SimDisk::points`]): that call and every later one fail
    /// with `EIO`.
    pub fn crash_at(&self, point: u64) {
        let mut inner = self.lock();
        inner.crash_at = Some(inner.points + point);
    }

    /// Makes the `n`-th sync from now on (0: the next; a file's `fdatasync` or
    /// `fsync`, a directory's `fsync`, or a `syncfs`) return `EIO`. The
    /// unsynced data of the files it syncs is never made durable by a later
    /// sync; unsynced directory entries stay unsynced.
    pub fn fail_sync_at(&self, n: u64) {
        let mut inner = self.lock();
        let at = inner.syncs + n;
        inner.fail_syncs.insert(at);
    }

    /// Crash points passed so far: every sync, create, `mkdir`, rename, unlink
    /// and length change.
    pub fn points(&self) -> u64 {
        self.lock().points
    }

    /// Syncs made so far (of every kind).
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The syncs [`SimDisk::fail_sync_at`] made fail so far, described
    /// (`"fdatasync journal/0000000000000003.log"`), in order.
    pub fn failed_syncs(&self) -> Vec<String> {
        self.lock().failed.clone()
    }

    /// What each crash point passed so far was (`"rename snapshots/..."`), in
    /// order.
    pub fn trace(&self) -> Vec<String> {
        self.lock().trace.clone()
    }

    /// Whether the disk crashed (at the point [`SimDisk::crash_at`] set).
    pub fn crashed(&self) -> bool {
        self.lock().frozen.is_some()
    }

    /// The disk a restart finds after a power loss: at the crash point if the
    /// disk crashed, else now. This disk stays as it is.
    pub fn power_loss(&self, loss: Loss) -> SimDisk {
        let inner = self.lock();
        let state = inner.frozen.as_ref().unwrap_or(&inner.live);
        Self::from_state(state.after_power_loss(loss))
    }

    /// The disk a restarted process finds without a power loss: everything
    /// written (synced or not) is there. This disk stays as it is.
    pub fn restarted(&self) -> SimDisk {
        let inner = self.lock();
        let state = inner.frozen.as_ref().unwrap_or(&inner.live);
        Self::from_state(state.restarted())
    }

    /// The contents of the file at `path` as a read sees it now; `None` if
    /// there is none (for a test's look inside).
    pub fn read(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        let mut inner = self.lock();
        let ino = walk(&mut inner.live, path.as_ref()).ok()?;
        match inner.live.inodes.get(&ino) {
            Some(Inode::File(f)) => Some(f.current.clone()),
            _ => None,
        }
    }

    /// Overwrites the file at `path` with `bytes`, durably (damage made by a
    /// test, outside the store).
    pub fn write(&self, path: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.lock();
        let ino = walk(&mut inner.live, path.as_ref())?;
        let f = inner.live.file(ino)?;
        f.current = bytes.to_vec();
        f.durable = bytes.to_vec();
        f.pending.clear();
        Ok(())
    }

    /// Counts a crash point; crashes there if it is the one, and fails every
    /// call once crashed.
    fn enter(&self, what: impl FnOnce(&State) -> String) -> io::Result<MutexGuard<'_, Inner>> {
        let mut inner = self.lock();
        if inner.frozen.is_some() {
            return Err(eio());
        }
        let point = inner.points;
        if inner.crash_at == Some(point) {
            let frozen = inner.live.clone();
            inner.frozen = Some(frozen);
            return Err(eio());
        }
        let described = what(&inner.live);
        inner.trace.push(described);
        inner.points += 1;
        Ok(inner)
    }

    /// A call that is no crash point: fails once crashed.
    fn quiet(&self) -> io::Result<MutexGuard<'_, Inner>> {
        let inner = self.lock();
        if inner.frozen.is_some() {
            return Err(eio());
        }
        Ok(inner)
    }

    /// A sync of `ino` (`None`: the whole disk).
    fn sync(&self, ino: Option<Ino>, kind: &'static str) -> io::Result<()> {
        let mut inner = self.enter(|s| match ino {
            Some(ino) => format!("{kind} {}", s.name_of(ino)),
            None => kind.to_string(),
        })?;
        let n = inner.syncs;
        inner.syncs += 1;
        let lost = inner.fail_syncs.remove(&n);
        if lost {
            let described = inner.trace.last().cloned().unwrap_or_default();
            inner.failed.push(described);
        }
        match ino {
            Some(ino) => inner.live.sync_inode(ino, lost),
            None => {
                let all: Vec<Ino> = inner.live.inodes.keys().copied().collect();
                for ino in all {
                    inner.live.sync_inode(ino, lost);
                }
            }
        }
        if lost { Err(eio()) } else { Ok(()) }
    }

    // The seam's calls (`dir.rs`).

    pub(crate) fn open_dir(&self, path: &Path) -> io::Result<SimDir> {
        let mut inner = self.quiet()?;
        let ino = walk(&mut inner.live, path)?;
        inner.live.dir(ino)?;
        Ok(SimDir {
            disk: self.clone(),
            ino,
        })
    }

    /// Creates the directory at `path` unless it is one; whether it did.
    pub(crate) fn mkdir(&self, path: &Path) -> io::Result<bool> {
        let parent = path
            .parent()
            .ok_or_else(|| errno(rustix::io::Errno::EXIST))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| errno(rustix::io::Errno::INVAL))?;
        let parent = self.open_dir(parent)?;
        match parent.kind_of(name)? {
            Some(SimKind::Dir) => Ok(false),
            _ => parent.mkdir(name).map(|()| true),
        }
    }
}

fn components(path: &Path) -> io::Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(part) => out.push(
                part.to_str()
                    .ok_or_else(|| errno(rustix::io::Errno::INVAL))?,
            ),
            Component::ParentDir => return Err(errno(rustix::io::Errno::INVAL)),
        }
    }
    Ok(out)
}

fn walk(state: &mut State, path: &Path) -> io::Result<Ino> {
    let mut at = ROOT;
    for part in components(path)? {
        state.dir(at)?;
        at = state.step(at, part)?;
    }
    Ok(at)
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SimKind {
    File,
    Dir,
}

/// A directory handle on a [`SimDisk`].
#[derive(Debug, Clone)]
pub(crate) struct SimDir {
    disk: SimDisk,
    ino: Ino,
}

/// How [`SimDir::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// It must exist.
    Existing,
    /// Created if absent; fails if it exists.
    CreateNew,
    /// Created if absent; emptied if it exists.
    CreateTruncate,
    /// Created if absent; kept as it is if it exists.
    CreateOrOpen,
}

impl SimDir {
    pub(crate) fn open_sub(&self, name: &str) -> io::Result<SimDir> {
        let mut inner = self.disk.quiet()?;
        let ino = inner.live.lookup(self.ino, name)?;
        inner.live.dir(ino)?;
        Ok(SimDir {
            disk: self.disk.clone(),
            ino,
        })
    }

    pub(crate) fn open(&self, name: &str, mode: OpenMode) -> io::Result<SimFile> {
        let existing = {
            let mut inner = self.disk.quiet()?;
            let (parent, last) = inner.live.parent_of(self.ino, name)?;
            match inner.live.step(parent, last) {
                Ok(ino) => Some(ino),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            }
        };
        let ino = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => return Err(errno(rustix::io::Errno::EXIST)),
            (Some(ino), OpenMode::Existing | OpenMode::CreateOrOpen) => {
                let mut inner = self.disk.quiet()?;
                inner.live.file(ino)?;
                ino
            }
            (Some(ino), OpenMode::CreateTruncate) => {
                let mut inner = self
                    .disk
                    .enter(|s| format!("truncate (open) {}", s.name_of(ino)))?;
                let f = inner.live.file(ino)?;
                f.current.clear();
                f.pending.push(FileOp::SetLen(0));
                ino
            }
            (None, OpenMode::Existing) => return Err(errno(rustix::io::Errno::NOENT)),
            (None, _) => {
                let mut inner = self.disk.enter(|s| {
                    format!(
                        "create {}{name}",
                        s.name_of(self.ino).trim_start_matches('/')
                    )
                })?;
                let (parent, last) = inner.live.parent_of(self.ino, name)?;
                let ino = inner.live.new_inode(Inode::File(FileNode::default()));
                inner
                    .live
                    .link(parent, vec![(last.to_owned(), Some(ino))])?;
                if let Inode::File(f) = inner.live.inodes.get_mut(&ino).expect("just made") {
                    f.name = name.to_owned();
                }
                ino
            }
        };
        Ok(SimFile {
            disk: self.disk.clone(),
            ino,
            pos: AtomicU64::new(0),
        })
    }

    pub(crate) fn mkdir(&self, name: &str) -> io::Result<()> {
        {
            let mut inner = self.disk.quiet()?;
            if inner.live.lookup(self.ino, name).is_ok() {
                return Err(errno(rustix::io::Errno::EXIST));
            }
        }
        let mut inner = self.disk.enter(|_| format!("mkdir {name}"))?;
        let (parent, last) = inner.live.parent_of(self.ino, name)?;
        let ino = inner.live.new_inode(Inode::Dir(DirNode::default()));
        inner.live.link(parent, vec![(last.to_owned(), Some(ino))])
    }

    pub(crate) fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut inner = self.disk.enter(|_| format!("rename {from} -> {to}"))?;
        let (from_dir, from_last) = inner.live.parent_of(self.ino, from)?;
        let ino = inner.live.step(from_dir, from_last)?;
        let (to_dir, to_last) = inner.live.parent_of(self.ino, to)?;
        if from_dir == to_dir {
            inner.live.link(
                from_dir,
                vec![
                    (to_last.to_owned(), Some(ino)),
                    (from_last.to_owned(), None),
                ],
            )
        } else {
            inner
                .live
                .link(to_dir, vec![(to_last.to_owned(), Some(ino))])?;
            inner
                .live
                .link(from_dir, vec![(from_last.to_owned(), None)])
        }
    }

    pub(crate) fn unlink(&self, name: &str) -> io::Result<()> {
        {
            let mut inner = self.disk.quiet()?;
            let ino = inner.live.lookup(self.ino, name)?;
            inner.live.file(ino)?;
        }
        let mut inner = self.disk.enter(|_| format!("unlink {name}"))?;
        let (parent, last) = inner.live.parent_of(self.ino, name)?;
        inner.live.link(parent, vec![(last.to_owned(), None)])
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.disk.sync(Some(self.ino), "fsync")
    }

    pub(crate) fn syncfs(&self) -> io::Result<()> {
        self.disk.sync(None, "syncfs")
    }

    pub(crate) fn entries(&self) -> io::Result<Vec<(String, SimKind)>> {
        let mut inner = self.disk.quiet()?;
        let names: Vec<(String, Ino)> = inner
            .live
            .dir(self.ino)?
            .current
            .iter()
            .map(|(n, i)| (n.clone(), *i))
            .collect();
        Ok(names
            .into_iter()
            .map(|(name, ino)| match inner.live.inodes.get(&ino) {
                Some(Inode::Dir(_)) => (name, SimKind::Dir),
                _ => (name, SimKind::File),
            })
            .collect())
    }

    pub(crate) fn kind_of(&self, name: &str) -> io::Result<Option<SimKind>> {
        let mut inner = self.disk.quiet()?;
        match inner.live.lookup(self.ino, name) {
            Ok(ino) => Ok(Some(match inner.live.inodes.get(&ino) {
                Some(Inode::Dir(_)) => SimKind::Dir,
                _ => SimKind::File,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the directory still has a name, and `path` leads to it.
    pub(crate) fn in_place(&self, path: &Path) -> io::Result<bool> {
        let mut inner = self.disk.quiet()?;
        let linked = self.ino == ROOT || inner.live.dir(self.ino)?.links > 0;
        Ok(linked && walk(&mut inner.live, path).ok() == Some(self.ino))
    }

    /// `flock` of the file `name` (created if absent): `None` if another
    /// handle holds it.
    pub(crate) fn lock(&self, name: &str) -> io::Result<Option<SimLock>> {
        let file = self.open(name, OpenMode::CreateOrOpen)?;
        let mut inner = self.disk.quiet()?;
        if !inner.locks.insert(file.ino) {
            return Ok(None);
        }
        Ok(Some(SimLock {
            disk: self.disk.clone(),
            ino: file.ino,
        }))
    }
}

/// A held `flock` on a [`SimDisk`]; released when dropped.
#[derive(Debug)]
pub(crate) struct SimLock {
    disk: SimDisk,
    ino: Ino,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.disk.lock().locks.remove(&self.ino);
    }
}

/// An open file on a [`SimDisk`] (it keeps working when unlinked, like a file
/// descriptor).
#[derive(Debug)]
pub(crate) struct SimFile {
    disk: SimDisk,
    ino: Ino,
    /// For sequential reads and writes.
    pos: AtomicU64,
}

impl SimFile {
    pub(crate) fn len(&self) -> io::Result<u64> {
        let mut inner = self.disk.quiet()?;
        Ok(inner.live.file(self.ino)?.current.len() as u64)
    }

    pub(crate) fn nlink(&self) -> io::Result<u64> {
        let mut inner = self.disk.quiet()?;
        Ok(u64::from(inner.live.file(self.ino)?.links))
    }

    pub(crate) fn write_all_at(&self, bytes: &[u8], at: u64) -> io::Result<()> {
        let mut inner = self.disk.quiet()?;
        let f = inner.live.file(self.ino)?;
        write_at(&mut f.current, at, bytes);
        f.pending.push(FileOp::Write {
            at,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    /// Writes at the file position, and moves it.
    pub(crate) fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let at = self.pos.load(Ordering::Relaxed);
        self.write_all_at(bytes, at)?;
        self.pos.store(at + bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn read_at(&self, buf: &mut [u8], at: u64) -> io::Result<usize> {
        let mut inner = self.disk.quiet()?;
        let content = &inner.live.file(self.ino)?.current;
        let start = (at as usize).min(content.len());
        let n = buf.len().min(content.len() - start);
        buf[..n].copy_from_slice(&content[start..start + n]);
        Ok(n)
    }

    /// Reads at the file position, and moves it.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.pos.load(Ordering::Relaxed);
        let n = self.read_at(buf, at)?;
        self.pos.store(at + n as u64, Ordering::Relaxed);
        Ok(n)
    }

    pub(crate) fn seek(&self, to: io::SeekFrom) -> io::Result<u64> {
        let at = match to {
            io::SeekFrom::Start(at) => Some(at),
            io::SeekFrom::Current(by) => self.pos.load(Ordering::Relaxed).checked_add_signed(by),
            io::SeekFrom::End(by) => self.len()?.checked_add_signed(by),
        }
        .ok_or_else(|| errno(rustix::io::Errno::INVAL))?;
        self.pos.store(at, Ordering::Relaxed);
        Ok(at)
    }

    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        let mut inner = self
            .disk
            .enter(|s| format!("truncate {} to {len}", s.name_of(self.ino)))?;
        let f = inner.live.file(self.ino)?;
        f.current.resize(len as usize, 0);
        f.pending.push(FileOp::SetLen(len));
        Ok(())
    }

    /// `fdatasync` (`all`: `fsync`; the same here: the file's data and length).
    pub(crate) fn sync(&self, all: bool) -> io::Result<()> {
        let kind = if all { "fsync" } else { "fdatasync" };
        self.disk.sync(Some(self.ino), kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_with_dir() -> (SimDisk, SimDir) {
        let disk = SimDisk::new();
        disk.mkdir(Path::new("/d")).unwrap();
        disk.open_dir(Path::new("/")).unwrap().sync().unwrap();
        let dir = disk.open_dir(Path::new("/d")).unwrap();
        (disk, dir)
    }

    #[test]
    fn unsynced_data_and_entries_are_lost_synced_ones_kept() {
        let (disk, dir) = disk_with_dir();
        let f = dir.open("a", OpenMode::CreateNew).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync(false).unwrap();
        // The entry is not synced: the file is lost with it.
        assert_eq!(disk.power_loss(Loss::Dropped).read("/d/a"), None);
        dir.sync().unwrap();
        f.write_all_at(b" world", 5).unwrap();
        let after = disk.power_loss(Loss::Dropped);
        assert_eq!(after.read("/d/a").unwrap(), b"hello");
        assert_eq!(
            disk.power_loss(Loss::Kept).read("/d/a").unwrap(),
            b"hello world"
        );
        assert_eq!(disk.read("/d/a").unwrap(), b"hello world");
    }

    #[test]
    fn a_rename_is_durable_only_with_its_directory() {
        let (disk, dir) = disk_with_dir();
        let f = dir.open("t", OpenMode::CreateNew).unwrap();
        f.write_all_at(b"new", 0).unwrap();
        f.sync(false).unwrap();
        dir.sync().unwrap();
        dir.rename("t", "x").unwrap();
        let lost = disk.power_loss(Loss::Dropped);
        assert_eq!(
            (lost.read("/d/t").as_deref(), lost.read("/d/x")),
            (Some(&b"new"[..]), None)
        );
        dir.sync().unwrap();
        let kept = disk.power_loss(Loss::Dropped);
        assert_eq!(
            (kept.read("/d/t"), kept.read("/d/x").unwrap()),
            (None, b"new".to_vec())
        );
    }

    #[test]
    fn torn_and_reordered_losses_keep_synced_data_and_vary_the_rest() {
        let (disk, dir) = disk_with_dir();
        let f = dir.open("a", OpenMode::CreateNew).unwrap();
        dir.sync().unwrap();
        f.write_all_at(&[1; 100], 0).unwrap();
        f.sync(false).unwrap();
        f.write_all_at(&[2; 1500], 100).unwrap();
        f.write_all_at(&[3; 10], 1600).unwrap();
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            for loss in [Loss::Torn { seed }, Loss::Reordered { seed }] {
                let bytes = disk.power_loss(loss).read("/d/a").unwrap();
                assert_eq!(bytes[..100], [1; 100], "{loss:?}");
                let second_whole = bytes.len() >= 1600 && bytes[100..1600] == [2; 1500];
                let third = bytes.len() == 1610 && bytes[1600..] == [3; 10];
                seen.insert((loss == Loss::Torn { seed }, second_whole, third));
            }
        }
        // Torn: the third only after the whole second; reordered: also without.
        assert!(!seen.contains(&(true, false, true)));
        assert!(seen.contains(&(false, false, true)));
        assert!(seen.contains(&(true, true, false)));
    }

    #[test]
    fn a_failed_sync_never_makes_its_changes_durable() {
        let (disk, dir) = disk_with_dir();
        let f = dir.open("a", OpenMode::CreateNew).unwrap();
        dir.sync().unwrap();
        f.write_all_at(b"lost", 0).unwrap();
        disk.fail_sync_at(0);
        assert_eq!(f.sync(false).unwrap_err().raw_os_error(), Some(5));
        // A retried sync succeeds, and makes nothing durable.
        f.sync(false).unwrap();
        assert_eq!(disk.power_loss(Loss::Kept).read("/d/a").unwrap(), b"");
        assert_eq!(disk.read("/d/a").unwrap(), b"lost");
    }

    #[test]
    fn a_crash_point_freezes_the_disk_and_fails_every_later_call() {
        let (disk, dir) = disk_with_dir();
        let start = disk.points();
        disk.crash_at(1);
        let f = dir.open("a", OpenMode::CreateNew).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        assert_eq!(dir.sync().unwrap_err().raw_os_error(), Some(5));
        assert!(disk.crashed());
        assert!(f.write_all_at(b"y", 0).is_err());
        assert_eq!(disk.points(), start + 1);
        assert_eq!(disk.power_loss(Loss::Kept).read("/d/a").unwrap(), b"x");
        assert_eq!(disk.power_loss(Loss::Dropped).read("/d/a"), None);
    }
}
