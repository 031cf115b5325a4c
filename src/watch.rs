//! What a plan read from the file system, for the plan cache
//! (`pipeline::memo`): a later plan may reuse this one's result only if
//! every path recorded here still has the `stat` it had, and nothing was
//! read that a `stat` cannot vouch for.
//!
//! Recording is off until [`start`] (a `plan` turns it on): the hashing and
//! evaluation code calls [`path`], [`read`] and [`untracked`]
//! unconditionally, and they cost a relaxed load when nobody listens.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What `stat` says of a path, as far as a change goes: device, inode,
/// size, mode, mtime and ctime in nanoseconds. Any write changes the ctime
/// (which user space cannot set back); a replaced file has a new inode.
/// Kept as a 6-element array in JSON (the plan cache holds thousands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StatFields", into = "StatFields")]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

type StatFields = (u64, u64, u64, u32, i64, i64);

impl From<StatFields> for FileStat {
    fn from((dev, ino, size, mode, mtime_ns, ctime_ns): StatFields) -> FileStat {
        FileStat {
            dev,
            ino,
            size,
            mode,
            mtime_ns,
            ctime_ns,
        }
    }
}

impl From<FileStat> for StatFields {
    fn from(s: FileStat) -> StatFields {
        (s.dev, s.ino, s.size, s.mode, s.mtime_ns, s.ctime_ns)
    }
}

impl FileStat {
    pub fn of(meta: &std::fs::Metadata) -> FileStat {
        FileStat {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mode: meta.mode(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }

    /// The `stat` of `path` (following links); `None` if there is nothing.
    pub fn at(path: &Path) -> Option<FileStat> {
        std::fs::metadata(path).ok().map(|m| FileStat::of(&m))
    }

    /// The later of mtime and ctime, in nanoseconds.
    pub fn newest_ns(&self) -> i64 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

/// What one run read.
#[derive(Debug, Default)]
pub struct Watched {
    /// Files and folders (a folder: its list of entries) whose `stat`
    /// stands for what was read from them, with that `stat` when it was
    /// taken as they were read (else it is taken at the end). A path that
    /// did not exist is recorded too: creating it must be noticed. In the
    /// order recorded, a path possibly more than once (see [`Watched::paths`]).
    recorded: Vec<(PathBuf, Option<FileStat>)>,
    /// The first thing read that a `stat` cannot vouch for (a folder
    /// matched against a pattern, a look-up over the network): then no
    /// later plan may reuse this one.
    pub untracked: Option<String>,
    /// Folders whose list of names was read, with [`listing`] of it then.
    pub listings: Vec<(PathBuf, Option<String>)>,
}

impl Watched {
    /// Every path recorded, once, sorted, with the `stat` taken as it was
    /// read if it was.
    pub fn paths(self) -> Vec<(PathBuf, Option<FileStat>)> {
        let mut all = self.recorded;
        // Among equal paths, one with its `stat` first, so it is kept.
        all.sort_unstable_by(|a, b| {
            a.0.as_os_str()
                .cmp(b.0.as_os_str())
                .then(b.1.is_some().cmp(&a.1.is_some()))
        });
        all.dedup_by(|later, kept| later.0 == kept.0);
        all
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static WATCHED: Mutex<Option<Watched>> = Mutex::new(None);

/// Starts recording for this process (forgetting anything recorded).
pub fn start() {
    *WATCHED.lock().expect("watch") = Some(Watched::default());
    ON.store(true, Ordering::Release);
}

/// Stops recording and returns what was recorded since [`start`].
pub fn finish() -> Option<Watched> {
    ON.store(false, Ordering::Release);
    WATCHED.lock().expect("watch").take()
}

/// `path` was read, or looked for.
pub fn path(path: &Path) {
    if ON.load(Ordering::Relaxed) {
        if let Some(w) = WATCHED.lock().expect("watch").as_mut() {
            w.recorded.push((path.to_path_buf(), None));
        }
    }
}

/// Every path of `paths` was read (one lock for all of them).
pub fn paths<'a>(paths: impl IntoIterator<Item = &'a Path>) {
    if ON.load(Ordering::Relaxed) {
        if let Some(w) = WATCHED.lock().expect("watch").as_mut() {
            w.recorded
                .extend(paths.into_iter().map(|p| (p.to_path_buf(), None)));
        }
    }
}

/// The file at `path`, whose `stat` was `meta` when it was read, was read.
pub fn read(path: &Path, meta: &std::fs::Metadata) {
    if ON.load(Ordering::Relaxed) {
        if let Some(w) = WATCHED.lock().expect("watch").as_mut() {
            w.recorded
                .push((path.to_path_buf(), Some(FileStat::of(meta))));
        }
    }
}

/// Environment variables a shell changes between two identical runs (the
/// directory it was in, the last command): left out of the plan cache's
/// key, so reading one is untracked ([`env`]).
pub const UNKEYED_ENV: &[&str] = &["PWD", "OLDPWD", "_"];

/// The environment variable `name` was read.
pub fn env(name: &str) {
    if UNKEYED_ENV.contains(&name) {
        untracked(|| format!("the environment variable {name}"));
    }
}

/// Names imgform itself makes and removes in a template folder (the local
/// state's folder, made by taking the lock and removed again when nothing
/// was written; the logs and caches): left out of its [`listing`], which
/// would otherwise change with every run of a project never applied.
pub const OWN_NAMES: &[&str] = &["state", ".imgform"];

/// What the folder `dir` lists, but for [`OWN_NAMES`]: a digest of its
/// sorted names; `None` if it cannot be listed.
pub fn listing(dir: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| !OWN_NAMES.iter().any(|own| n == own))
        .collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        h.update(std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()));
        h.update([0]);
    }
    Some(hex::encode(h.finalize()))
}

/// The names in the folder `dir` were read (taken now, before the files
/// they name are read: one added meanwhile is a change).
pub fn list(dir: &Path) {
    if ON.load(Ordering::Relaxed) {
        let names = listing(dir);
        if let Some(w) = WATCHED.lock().expect("watch").as_mut() {
            w.listings.push((dir.to_path_buf(), names));
        }
    }
}

/// Something was read that a `stat` cannot vouch for; `why` says what.
pub fn untracked(why: impl FnOnce() -> String) {
    if ON.load(Ordering::Relaxed) {
        if let Some(w) = WATCHED.lock().expect("watch").as_mut() {
            w.untracked.get_or_insert_with(why);
        }
    }
}
