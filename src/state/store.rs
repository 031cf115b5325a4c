//! Where state lives and how it is written: the [`StateBackend`] trait, its
//! local filesystem implementation [`LocalBackend`], and the state lock.
//!
//! Layout of the local backend, under the `state/` dir of a definition dir:
//!
//! ```text
//! state/<target-slug>.json       one StateFile per target (TargetAddr::slug)
//! state/<target-slug>.json.bak   the version before the last write
//! state/<target-slug>.journal    records appended since the last write
//! state/objects/<2 hex>/<62 hex> content-addressed objects (sha256 of bytes)
//! state/.lock                    JSON LockInfo while a run holds the lock
//! ```
//!
//! Invariants:
//! - A state file on disk is always a complete document: every write goes to a
//!   temp file in the same directory, is fsynced, renamed over the old file,
//!   and the directory is fsynced. A crash leaves the old or the new version,
//!   never a mix.
//! - The stored state is the state file with its journal's entries applied
//!   ([`journal`]). `record_image` appends one fsynced line per image;
//!   `save` writes the whole file and then removes the journal
//!   (compaction). Every load replays the journal, so a crash loses no
//!   acknowledged record.
//! - `serial` grows by exactly one per change (a save that changes contents,
//!   or a journal entry) and never otherwise; compacting a journal keeps the
//!   serial. A save whose lineage or serial does not match the stored state
//!   is refused rather than overwriting someone else's newer state.
//! - Objects are immutable and named by the sha256 of their bytes; reading one
//!   re-checks the hash.
//! - `state/.lock` is created with `O_EXCL`, so at most one holder exists.
//! - Reading never creates anything; only `save`, `put_object` and `lock`
//!   create directories.
//!
//! Callers must not write files under `state/` themselves, must not change
//! `serial` (the backend owns it), and must hold the lock (see [`acquire`])
//! around any load → change → save sequence. The backend does not check that
//! the lock is held, because `plan` reads without locking.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::addr::{ImageAddr, TargetAddr};
use crate::state::journal::{self, JournalEntry};
use crate::state::model::{StateFile, STATE_FORMAT_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `action` is a verb phrase such as `read`, `write` or `create directory`.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is corrupt: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },

    #[error(
        "{} uses state format version {found}, but imgform {} only understands \
         version {STATE_FORMAT_VERSION}; upgrade imgform to work with this state",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    UnsupportedVersion { path: PathBuf, found: u64 },

    #[error(
        "state is locked by {} for `{}` since {} (imgform {}), lock ID {}; wait for \
         that run to finish (or pass --lock-timeout), or if it is no longer running, \
         remove the lock with `imgform force-unlock {}`",
        holder.who, holder.operation, holder.created, holder.version, holder.id, holder.id
    )]
    Locked { holder: Box<LockInfo> },

    #[error(
        "lock ID {given} does not match the current lock, which is held by {} for `{}` \
         since {} with lock ID {}",
        holder.who, holder.operation, holder.created, holder.id
    )]
    LockIdMismatch {
        given: String,
        holder: Box<LockInfo>,
    },

    #[error("state is not locked; there is nothing to unlock")]
    NotLocked,

    #[error("{} holds the state of target `{found}`, not `{expected}`", path.display())]
    WrongTarget {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "refusing to overwrite {}: it has lineage {stored}, but the state being saved \
         has lineage {given}, so it belongs to a different history",
        path.display()
    )]
    LineageMismatch {
        path: PathBuf,
        stored: String,
        given: String,
    },

    #[error(
        "refusing to overwrite {}: it is at serial {stored}, but the state being saved \
         was loaded at serial {given}; another run changed it since, so load it again",
        path.display()
    )]
    SerialConflict {
        path: PathBuf,
        stored: u64,
        given: u64,
    },

    #[error("`{target}` cannot name a state file: its file name would be empty or hidden")]
    InvalidTarget { target: String },

    #[error("`{id}` is not an object id; expected 64 lowercase hex digits (no `sha256:` prefix)")]
    InvalidObjectId { id: String },

    /// A remote backend's request failed. `action` is a verb phrase such as
    /// `read` or `write`; `location` is e.g. `s3://bucket/key`.
    #[error("cannot {action} {location}: {message}")]
    Remote {
        action: &'static str,
        location: String,
        message: String,
    },

    /// A remote backend is named in the configuration but this imgform was
    /// built without it (cargo feature), or its settings are unusable.
    #[error("{message}")]
    BackendConfig { message: String },
}

impl StateError {
    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            StateError::Locked { holder } => Some(format!(
                "another imgform run holds the state lock: {} ({}) since {}, lock id {}.\n  Wait for it (--lock-timeout 5m), or if that run is gone: imgform force-unlock {}",
                holder.who, holder.operation, holder.created, holder.id, holder.id
            )),
            _ => None,
        }
    }
}

/// Who holds the state lock; stored as JSON in `state/.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// A v4 UUID; `force-unlock` takes it.
    pub id: String,
    /// The command holding the lock: `plan`, `apply`, `state rm`, …
    pub operation: String,
    /// `user@host`.
    pub who: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// Version of the imgform that took the lock.
    pub version: String,
}

impl LockInfo {
    /// A new lock description for `operation` by this user on this host, now.
    pub fn new(operation: &str) -> LockInfo {
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            operation: operation.to_owned(),
            who: format!("{}@{}", current_user(), current_host()),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

fn current_user() -> String {
    for var in ["USER", "LOGNAME", "USERNAME"] {
        if let Ok(name) = std::env::var(var) {
            if !name.trim().is_empty() {
                return name.trim().to_owned();
            }
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // The owner of /proc/self is our uid; this avoids an unsafe getuid().
        if let Ok(meta) = fs::metadata("/proc/self") {
            return format!("uid{}", meta.uid());
        }
    }
    "unknown".to_owned()
}

fn current_host() -> String {
    // /proc has the kernel's (namespace's) hostname; /etc/hostname the
    // configured one. Both avoid an unsafe gethostname().
    for file in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(text) = fs::read_to_string(file) {
            if let Some(name) = text.lines().next().map(str::trim).filter(|n| !n.is_empty()) {
                return name.to_owned();
            }
        }
    }
    match std::env::var("HOSTNAME") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => "unknown-host".to_owned(),
    }
}

/// Storage for per-target state, the object store and the state lock. The
/// local filesystem is one implementation; a remote one keeps the same layout
/// and semantics.
pub trait StateBackend: Send + Sync {
    /// Targets that have a state file, sorted (read from the `target` field of
    /// each state file, not from file names).
    fn targets(&self) -> Result<Vec<String>, StateError>;
    /// The state of `target`; a fresh `StateFile::new(target)` (serial 0, new
    /// lineage) when none is stored. Not written.
    fn load(&self, target: &str) -> Result<StateFile, StateError>;
    /// Every stored state, sorted by target (each file read once).
    fn load_all(&self) -> Result<Vec<StateFile>, StateError> {
        self.targets()?.iter().map(|t| self.load(t)).collect()
    }
    /// Writes `state` if its contents differ from what is stored: serial += 1
    /// (mutating `state`), previous file kept as `<slug>.json.bak`, atomic
    /// write. Unchanged contents → nothing written, serial unchanged. Returns
    /// whether it wrote. Refuses (without writing) when the stored file has a
    /// different target, lineage or serial than `state`: it changed since
    /// `state` was loaded.
    fn save(&self, state: &mut StateFile) -> Result<bool, StateError>;
    /// Records durably that the record of `addr` in `state` changed (or was
    /// removed), bumping `state.serial` by one, at a cost that does not grow
    /// with the size of the state. A later [`save`](Self::save) (or the
    /// next run's load) folds it into the state file. The default is a full
    /// `save`. Refuses, like `save`, a state that moved on since it was
    /// loaded. Returns whether it wrote.
    fn record_image(&self, state: &mut StateFile, addr: &ImageAddr) -> Result<bool, StateError> {
        let _ = addr;
        self.save(state)
    }
    /// Whether `state` has records outside its state file that a
    /// [`save`](Self::save) would fold in (a journal a crashed run left):
    /// `apply` saves only those before it starts. The default is always
    /// (a save that finds nothing to do writes nothing).
    fn has_leftovers(&self, state: &StateFile) -> Result<bool, StateError> {
        let _ = state;
        Ok(true)
    }
    /// How long a run may hold back the write of a recorded image to batch
    /// it with later ones; zero (the default) when every image is written
    /// as soon as it is recorded. Whatever is held back is lost by a crash
    /// (the artifacts stay, tagged, for `state recover`).
    fn write_delay(&self) -> Duration {
        Duration::ZERO
    }
    /// The files whose `stat` stands for everything [`load_all`](Self::load_all)
    /// and [`load`](Self::load) would return, sorted (the plan cache checks
    /// them instead of reading the state); `None` (the default) when a
    /// `stat` cannot vouch for the state, as for a remote one.
    fn watch_files(&self) -> Result<Option<Vec<PathBuf>>, StateError> {
        Ok(None)
    }
    /// Stores `bytes` in the content-addressed object store under the
    /// lowercase hex sha256 of the bytes (once; storing again is a no-op) and
    /// returns that hex.
    fn put_object(&self, bytes: &[u8]) -> Result<String, StateError>;
    /// [`put_object`](Self::put_object) for bytes kept only to explain a
    /// later change (manifests, texts for diffs): the store may make them
    /// durable only at the next [`save`](Self::save), so a power cut before
    /// it can lose them (readers treat a missing or damaged object as
    /// absent, and the next `put` replaces a damaged one). The default is
    /// `put_object`.
    fn put_diff_object(&self, bytes: &[u8]) -> Result<String, StateError> {
        self.put_object(bytes)
    }
    /// The bytes stored under `hex`, re-checked against it; `None` if absent.
    fn get_object(&self, hex: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Takes the lock; if it is held, retries until `timeout` has passed
    /// (`Duration::ZERO`: fail at once), then fails with
    /// [`StateError::Locked`] naming the holder.
    fn lock(&self, info: &LockInfo, timeout: Duration) -> Result<(), StateError>;
    /// Releases the lock if it is ours (its id matches); errors as
    /// `force_unlock`.
    fn unlock(&self, id: &str) -> Result<(), StateError>;
    /// Removes the lock whatever run holds it, if its id matches `id`
    /// ([`StateError::LockIdMismatch`] naming the actual holder otherwise,
    /// [`StateError::NotLocked`] if there is none). For `force-unlock`.
    fn force_unlock(&self, id: &str) -> Result<(), StateError>;
    /// The current lock holder, if any.
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError>;
    /// What releases the lock `id` (if it is still the one held) when the
    /// process is interrupted: it runs on another thread while this backend
    /// may be in use, so it owns what it needs. Errors are ignored there.
    /// `lock` registers it ([`crate::interrupt::on_interrupt`]) as the lock
    /// is taken, within [`crate::interrupt::taking`]; `unlock` withdraws it.
    fn unlock_on_interrupt(&self, id: &str) -> Box<dyn FnOnce() + Send>;
}

/// A boxed backend (as chosen from the configuration at run time) is a
/// backend; every method goes to the boxed one, overrides included.
impl<B: StateBackend + ?Sized> StateBackend for Box<B> {
    fn targets(&self) -> Result<Vec<String>, StateError> {
        (**self).targets()
    }
    fn load(&self, target: &str) -> Result<StateFile, StateError> {
        (**self).load(target)
    }
    fn load_all(&self) -> Result<Vec<StateFile>, StateError> {
        (**self).load_all()
    }
    fn save(&self, state: &mut StateFile) -> Result<bool, StateError> {
        (**self).save(state)
    }
    fn record_image(&self, state: &mut StateFile, addr: &ImageAddr) -> Result<bool, StateError> {
        (**self).record_image(state, addr)
    }
    fn has_leftovers(&self, state: &StateFile) -> Result<bool, StateError> {
        (**self).has_leftovers(state)
    }
    fn write_delay(&self) -> Duration {
        (**self).write_delay()
    }
    fn watch_files(&self) -> Result<Option<Vec<PathBuf>>, StateError> {
        (**self).watch_files()
    }
    fn put_object(&self, bytes: &[u8]) -> Result<String, StateError> {
        (**self).put_object(bytes)
    }
    fn put_diff_object(&self, bytes: &[u8]) -> Result<String, StateError> {
        (**self).put_diff_object(bytes)
    }
    fn get_object(&self, hex: &str) -> Result<Option<Vec<u8>>, StateError> {
        (**self).get_object(hex)
    }
    fn lock(&self, info: &LockInfo, timeout: Duration) -> Result<(), StateError> {
        (**self).lock(info, timeout)
    }
    fn unlock(&self, id: &str) -> Result<(), StateError> {
        (**self).unlock(id)
    }
    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        (**self).force_unlock(id)
    }
    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        (**self).lock_holder()
    }
    fn unlock_on_interrupt(&self, id: &str) -> Box<dyn FnOnce() + Send> {
        (**self).unlock_on_interrupt(id)
    }
}

/// State kept in a directory on the local filesystem (`state/` in the
/// definition dir).
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
    /// Journals this process appends to, by target; shared by clones.
    journals: Arc<Mutex<HashMap<String, OpenJournal>>>,
    /// `lock` made `state/` itself: `unlock` removes it again when nothing
    /// else was written (a plan refused after locking leaves no trace).
    made_root: Arc<std::sync::atomic::AtomicBool>,
    /// The release of the lock this process holds, run if it is
    /// interrupted (SIGINT, SIGTERM); registered as the lock is taken.
    on_interrupt: Arc<Mutex<Option<crate::interrupt::Registration>>>,
    /// Objects were written by `put_diff_object` and not yet synced: the
    /// next `save` syncs the store's filesystem first.
    unsynced_objects: Arc<std::sync::atomic::AtomicBool>,
}

/// A journal opened by this process after a save, and the state it leads to.
#[derive(Debug)]
struct OpenJournal {
    file: File,
    lineage: String,
    /// The serial of the state file plus the entries appended so far.
    serial: u64,
}

const LOCK_FILE: &str = ".lock";
const OBJECTS_DIR: &str = "objects";
/// First and longest pause between attempts to take a held lock.
const LOCK_RETRY_FIRST: Duration = Duration::from_millis(50);
const LOCK_RETRY_MAX: Duration = Duration::from_secs(1);
/// A lock file is created empty and filled right after; a reader that catches
/// it in between retries this many times before calling it corrupt.
const LOCK_UNREADABLE_RETRIES: u32 = 5;
const LOCK_UNREADABLE_PAUSE: Duration = Duration::from_millis(20);

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            journals: Arc::default(),
            made_root: Arc::default(),
            on_interrupt: Arc::default(),
            unsynced_objects: Arc::default(),
        }
    }

    /// The `state/` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores `bytes` under their sha256 (temp file, rename): fsynced with
    /// its folder when `durable`, else left to [`settle_objects`]. One
    /// fsync costs about as much as everything else an image's record
    /// does, and an image stores several objects.
    fn store_object(&self, bytes: &[u8], durable: bool) -> Result<String, StateError> {
        let hex = hex::encode(Sha256::digest(bytes));
        let path = self.object_path(&hex);
        match fs::read(&path) {
            // Already stored (and intact): objects are immutable, so done.
            Ok(existing) if hex::encode(Sha256::digest(&existing)) == hex => return Ok(hex),
            // Damaged: fall through and replace it with the good bytes.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("read", &path, e)),
        }
        let dir = path.parent().expect("object paths have a parent");
        fs::create_dir_all(dir).map_err(|e| io_error("create directory", dir, e))?;
        if !durable {
            self.unsynced_objects
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        write_replacing(&path, bytes, durable)?;
        Ok(hex)
    }

    /// Makes the objects written since the last call durable: one
    /// `syncfs` of the store's filesystem instead of two fsyncs per object.
    fn settle_objects(&self) -> Result<(), StateError> {
        if !self
            .unsynced_objects
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let dir = self.root.join(OBJECTS_DIR);
        File::open(&dir)
            .and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from))
            .map_err(|e| io_error("sync", &dir, e))
    }

    fn state_path(&self, target: &str) -> Result<PathBuf, StateError> {
        let slug = TargetAddr(target.to_owned()).slug();
        if slug.is_empty() || slug.starts_with('.') {
            return Err(StateError::InvalidTarget {
                target: target.to_owned(),
            });
        }
        Ok(self.root.join(format!("{slug}.json")))
    }

    /// Opens a new, empty journal for `state` (just saved) and keeps it.
    fn start_journal(&self, state: &StateFile) -> Result<(), StateError> {
        let path = journal_path(&self.state_path(&state.target)?);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error("create", &path, e))?;
        // The journal's name must survive a crash as much as its lines.
        sync_dir(&self.root)?;
        self.journals.lock().expect("journals").insert(
            state.target.clone(),
            OpenJournal {
                file,
                lineage: state.lineage.clone(),
                serial: state.serial,
            },
        );
        Ok(())
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    fn object_path(&self, hex: &str) -> PathBuf {
        self.root.join(OBJECTS_DIR).join(&hex[..2]).join(&hex[2..])
    }

    /// Removes the temp files of writes whose writer is gone (a state or
    /// object write cut short by a kill), in `state/` and the object store.
    fn sweep_temp_files(&self) {
        crate::paths::sweep_stale_temp_files(&self.root);
        let objects = self.root.join(OBJECTS_DIR);
        for entry in fs::read_dir(&objects).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                crate::paths::sweep_stale_temp_files(&entry.path());
            }
        }
    }

    /// Creates `.lock` exclusively; `Ok(false)` if it already exists.
    fn try_create_lock(&self, info: &LockInfo) -> Result<bool, StateError> {
        let path = self.lock_path();
        let open = || OpenOptions::new().write(true).create_new(true).open(&path);
        let opened = match open() {
            // The holder that made `state/` removed it, empty, on unlock
            // while we waited: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.root)
                    .map_err(|e| io_error("create directory", &self.root, e))?;
                self.made_root
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                open()
            }
            other => other,
        };
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_error("create", &path, e)),
        };
        if let Err(e) = file.write_all(&to_json_bytes(info)) {
            // The file is ours and useless half-written; don't leave a lock behind.
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(io_error("write", &path, e));
        }
        Ok(true)
    }

    /// Removes the lock if `id` names it; shared by `unlock` and `force_unlock`.
    fn remove_lock(&self, id: &str) -> Result<(), StateError> {
        let holder = self.lock_holder()?.ok_or(StateError::NotLocked)?;
        if holder.id != id {
            return Err(StateError::LockIdMismatch {
                given: id.to_owned(),
                holder: Box::new(holder),
            });
        }
        let path = self.lock_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StateError::NotLocked),
            Err(e) => Err(io_error("remove", &path, e)),
        }
    }
}

impl StateBackend for LocalBackend {
    /// The state files and journals (`<slug>.json`, `<slug>.journal`): a
    /// save replaces a state file (new inode), a record appends to a
    /// journal (new size). The folder itself is left out: taking the lock
    /// changes it.
    fn watch_files(&self) -> Result<Option<Vec<PathBuf>>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(io_error("list", &self.root, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &self.root, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && (name.ends_with(".json") || name.ends_with(".journal")) {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(Some(files))
    }

    fn targets(&self) -> Result<Vec<String>, StateError> {
        Ok(self.load_all()?.into_iter().map(|s| s.target).collect())
    }

    fn load_all(&self) -> Result<Vec<StateFile>, StateError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", &self.root, e)),
        };
        let mut targets: Vec<StateFile> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &self.root, e))?;
            let name = entry.file_name();
            // Hidden names are temp files and the lock; `.json.bak` does not
            // end in `.json`.
            let Some(stem) = name
                .to_str()
                .filter(|n| !n.starts_with('.'))
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            // Gone since listing (e.g. `state rm` of the last image elsewhere).
            let Some((_, state)) = read_state(&path)? else {
                continue;
            };
            let expected_stem = TargetAddr(state.target.clone()).slug();
            if expected_stem != stem {
                return Err(StateError::Corrupt {
                    path,
                    message: format!(
                        "it holds target `{}`, whose state file is {expected_stem}.json; \
                         rename the file or correct its `target` field",
                        state.target
                    ),
                });
            }
            targets.push(state);
        }
        targets.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(targets)
    }

    fn load(&self, target: &str) -> Result<StateFile, StateError> {
        let path = self.state_path(target)?;
        match read_state(&path)? {
            None => Ok(StateFile::new(target)),
            Some((_, state)) if state.target != target => Err(StateError::WrongTarget {
                path,
                expected: target.to_owned(),
                found: state.target,
            }),
            Some((_, state)) => Ok(state),
        }
    }

    fn save(&self, state: &mut StateFile) -> Result<bool, StateError> {
        let path = self.state_path(&state.target)?;
        self.settle_objects()?;
        // A journal kept open for appends is closed by a save: the file
        // written below includes its entries.
        self.journals
            .lock()
            .expect("journals")
            .remove(&state.target);
        let journal = journal_path(&path);
        let has_journal = journal.exists();
        let stored = read_state(&path)?;
        if let Some((_, stored)) = &stored {
            if stored.target != state.target {
                return Err(StateError::WrongTarget {
                    path,
                    expected: state.target.clone(),
                    found: stored.target.clone(),
                });
            }
            if stored.lineage != state.lineage {
                return Err(StateError::LineageMismatch {
                    path,
                    stored: stored.lineage.clone(),
                    given: state.lineage.clone(),
                });
            }
            if stored.serial != state.serial {
                return Err(StateError::SerialConflict {
                    path,
                    stored: stored.serial,
                    given: state.serial,
                });
            }
            if same_contents(stored, state) && !has_journal {
                return Ok(false);
            }
        }

        let mut next = state.clone();
        // Compacting a journal whose entries are all in `state` already
        // changes nothing but where they are kept: same serial.
        let changed = !stored
            .as_ref()
            .is_some_and(|(_, stored)| same_contents(stored, state));
        next.serial = state.serial + u64::from(changed);
        let bytes = to_json_bytes(&next);
        fs::create_dir_all(&self.root).map_err(|e| io_error("create directory", &self.root, e))?;
        match &stored {
            // A journal with nothing new in it (a run that recorded one image
            // and stopped): the file stays as it is, and so does its `.bak`.
            Some((old_bytes, _)) if *old_bytes == bytes => {}
            // The previous version goes to a temp file first and becomes
            // `.bak` only once the new state is durable: a crash in between
            // leaves the new state beside the older `.bak`, never a `.bak`
            // equal to the state (which would lose the previous version).
            Some((old_bytes, _)) => {
                let backup = backup_path(&path);
                remove_stale_temps(&backup);
                let temp = write_temp(&backup, old_bytes, true)?;
                if let Err(e) = write_atomic(&path, &bytes) {
                    let _ = fs::remove_file(&temp);
                    return Err(e);
                }
                if crate::fault::armed_anywhere("kill-before-backup") {
                    crate::fault::die();
                }
                fs::rename(&temp, &backup).map_err(|e| io_error("replace", &backup, e))?;
                sync_dir(&self.root)?;
            }
            None => write_atomic(&path, &bytes)?,
        }
        if has_journal {
            // Only after the file holding its entries is durable; a crash in
            // between leaves entries that replay skips (serial not above).
            match fs::remove_file(&journal) {
                Ok(()) => sync_dir(&self.root)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &journal, e)),
            }
        }
        // Only now: a failed write leaves the caller's state matching the file.
        state.serial = next.serial;
        Ok(true)
    }

    fn has_leftovers(&self, state: &StateFile) -> Result<bool, StateError> {
        Ok(journal_path(&self.state_path(&state.target)?).exists())
    }

    fn record_image(&self, state: &mut StateFile, addr: &ImageAddr) -> Result<bool, StateError> {
        let mut journals = self.journals.lock().expect("journals");
        let open = journals
            .get_mut(&state.target)
            .filter(|j| j.lineage == state.lineage && j.serial == state.serial);
        let Some(open) = open else {
            // The first record of this target in this run: a full save
            // (which also compacts what a crashed run left), then a fresh
            // journal for the records that follow.
            drop(journals);
            let wrote = self.save(state)?;
            self.start_journal(state)?;
            return Ok(wrote);
        };
        let path = journal_path(&self.state_path(&state.target)?);
        let serial = state.serial + 1;
        let line = JournalEntry::of(state, addr, serial).to_line();
        open.file
            .write_all(&line)
            .and_then(|()| open.file.sync_data())
            .map_err(|e| io_error("write", &path, e))?;
        open.serial = serial;
        state.serial = serial;
        Ok(true)
    }

    fn put_object(&self, bytes: &[u8]) -> Result<String, StateError> {
        self.store_object(bytes, true)
    }

    fn put_diff_object(&self, bytes: &[u8]) -> Result<String, StateError> {
        self.store_object(bytes, false)
    }

    fn get_object(&self, hex: &str) -> Result<Option<Vec<u8>>, StateError> {
        // Also keeps `hex` from naming a path outside the object store.
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(StateError::InvalidObjectId { id: hex.to_owned() });
        }
        let path = self.object_path(hex);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != hex {
            return Err(StateError::Corrupt {
                path,
                message: format!(
                    "its contents hash to {actual}, not to the name it is stored under; \
                     delete it and it will be stored again by the next apply"
                ),
            });
        }
        Ok(Some(bytes))
    }

    fn lock(&self, info: &LockInfo, timeout: Duration) -> Result<(), StateError> {
        if !self.root.exists() {
            fs::create_dir_all(&self.root)
                .map_err(|e| io_error("create directory", &self.root, e))?;
            self.made_root
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let deadline = Instant::now() + timeout;
        let mut pause = LOCK_RETRY_FIRST;
        let mut unreadable = 0;
        loop {
            let attempt = crate::interrupt::taking();
            if self.try_create_lock(info)? {
                if crate::fault::armed_anywhere("pause-while-taking-lock") {
                    crate::fault::pause_briefly();
                }
                let release = crate::interrupt::on_interrupt(self.unlock_on_interrupt(&info.id));
                *self.on_interrupt.lock().expect("lock registration") = Some(release);
                drop(attempt);
                // Interrupted meanwhile: released already; never go on.
                crate::interrupt::park_if_stopping();
                // Writers sweep what killed writers left; a plan writes
                // nothing here (and sweeping the 256 folders of the object
                // store was a fifth of a plan answered from its cache).
                if info.operation != "plan" {
                    self.sweep_temp_files();
                }
                return Ok(());
            }
            drop(attempt);
            let holder = match self.lock_holder() {
                Ok(Some(holder)) => holder,
                // Released between our attempt and the read: try again now.
                Ok(None) => continue,
                // Probably caught between create and write by its holder.
                Err(StateError::Corrupt { .. }) if unreadable < LOCK_UNREADABLE_RETRIES => {
                    unreadable += 1;
                    thread::sleep(LOCK_UNREADABLE_PAUSE);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(StateError::Locked {
                    holder: Box::new(holder),
                });
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(LOCK_RETRY_MAX);
        }
    }

    fn unlock(&self, id: &str) -> Result<(), StateError> {
        self.on_interrupt.lock().expect("lock registration").take();
        self.remove_lock(id)?;
        if self
            .made_root
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            // Only an empty dir goes: anything written since stays.
            let _ = fs::remove_dir(&self.root);
        }
        Ok(())
    }

    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        // Deliberately the same check as `unlock` (as in Terraform): the user
        // must name the lock they mean to break, so a newer lock taken since
        // they looked is never removed by mistake. A lock that cannot be
        // read (empty, or cut short by a crash between create and write)
        // is named by a digest of its bytes instead.
        let path = self.lock_path();
        match self.lock_holder() {
            Err(StateError::Corrupt { .. }) => {
                let bytes = fs::read(&path).map_err(|e| io_error("read", &path, e))?;
                let unreadable = unreadable_lock_id(&bytes);
                if unreadable != id {
                    return Err(StateError::Corrupt {
                        message: format!(
                            "it cannot be read, so its lock ID is {unreadable}, not {id}; \
                             if no imgform is running on this state, remove it with \
                             `imgform force-unlock {unreadable}`"
                        ),
                        path,
                    });
                }
                match fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StateError::NotLocked),
                    Err(e) => Err(io_error("remove", &path, e)),
                }
            }
            _ => self.remove_lock(id),
        }
    }

    fn unlock_on_interrupt(&self, id: &str) -> Box<dyn FnOnce() + Send> {
        let backend = LocalBackend {
            root: self.root.clone(),
            journals: Arc::default(),
            made_root: self.made_root.clone(),
            on_interrupt: Arc::default(),
            unsynced_objects: Arc::default(),
        };
        let id = id.to_owned();
        Box::new(move || {
            let _ = backend.unlock(&id);
        })
    }

    fn lock_holder(&self) -> Result<Option<LockInfo>, StateError> {
        let path = self.lock_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        match serde_json::from_slice(&bytes) {
            Ok(info) => Ok(Some(info)),
            Err(e) => Err(StateError::Corrupt {
                message: format!(
                    "{e}; if no imgform is running on this state, remove it with \
                     `imgform force-unlock {}`",
                    unreadable_lock_id(&bytes)
                ),
                path,
            }),
        }
    }
}

/// Holds the state lock and releases it when dropped (errors on drop are
/// ignored; call [`LockGuard::release`] to see them).
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    backend: &'a dyn StateBackend,
    info: LockInfo,
    held: bool,
}

impl LockGuard<'_> {
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Releases the lock now, reporting failure (e.g. someone force-unlocked it).
    pub fn release(mut self) -> Result<(), StateError> {
        self.held = false;
        self.backend.unlock(&self.info.id)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.held {
            let _ = self.backend.unlock(&self.info.id);
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("info", &self.info)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

/// Takes the lock described by `info` (waiting up to `timeout`) and returns a
/// guard that releases it on drop.
pub fn acquire(
    backend: &dyn StateBackend,
    info: LockInfo,
    timeout: Duration,
) -> Result<LockGuard<'_>, StateError> {
    backend.lock(&info, timeout)?;
    Ok(LockGuard {
        backend,
        info,
        held: true,
    })
}

/// Everything but `serial`. Destructured so a new field cannot be forgotten.
pub(crate) fn same_contents(a: &StateFile, b: &StateFile) -> bool {
    let StateFile {
        format_version,
        lineage,
        serial: _,
        target,
        images,
    } = a;
    *format_version == b.format_version
        && *lineage == b.lineage
        && *target == b.target
        && *images == b.images
}

/// The name `force-unlock` takes for a lock file that cannot be read: a
/// digest of its bytes, so a lock rewritten since the user looked is not
/// removed by mistake.
pub(crate) fn unreadable_lock_id(bytes: &[u8]) -> String {
    format!("unreadable-{}", &hex::encode(Sha256::digest(bytes))[..12])
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> StateError {
    StateError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .expect("state paths have a file name")
        .to_owned();
    name.push(".bak");
    path.with_file_name(name)
}

/// Pretty JSON with a trailing newline. Field order is the struct's and maps
/// are `BTreeMap`s, so the bytes are stable for equal values.
pub(crate) fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Cannot fail: every map in the state model is keyed by strings and
    // `serde_json::Value` holds no non-finite floats.
    let mut bytes = serde_json::to_vec_pretty(value).expect("state serializes to JSON");
    bytes.push(b'\n');
    bytes
}

/// Reads and decodes a state file with its journal's entries applied,
/// keeping the file's raw bytes for the backup. `None` if it does not exist.
fn read_state(path: &Path) -> Result<Option<(Vec<u8>, StateFile)>, StateError> {
    let Some((bytes, mut state)) = read_state_file(path)? else {
        let journal = journal_path(path);
        if journal.exists() {
            return Err(StateError::Corrupt {
                message: format!(
                    "its journal {} is there but the state file is not; restore the state \
                     file (or its .bak), or delete the journal to start from an empty state",
                    journal.display()
                ),
                path: path.to_owned(),
            });
        }
        return Ok(None);
    };
    let journal = journal_path(path);
    match fs::read(&journal) {
        Ok(lines) => {
            journal::replay(&mut state, &lines).map_err(|message| StateError::Corrupt {
                message: format!(
                    "{message}; {} is the last compacted state, the journal holds records \
                     written after it",
                    path.display()
                ),
                path: journal.clone(),
            })?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("read", &journal, e)),
    }
    Ok(Some((bytes, state)))
}

/// `<slug>.journal` beside `<slug>.json`.
fn journal_path(state_path: &Path) -> PathBuf {
    state_path.with_extension("journal")
}

/// Reads and decodes the state file alone.
fn read_state_file(path: &Path) -> Result<Option<(Vec<u8>, StateFile)>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("read", path, e)),
    };
    match decode_state(&bytes) {
        Ok(state) => Ok(Some((bytes, state))),
        Err(Decode::Unsupported(found)) => Err(StateError::UnsupportedVersion {
            path: path.to_owned(),
            found,
        }),
        Err(Decode::Corrupt(mut message)) => {
            let backup = backup_path(path);
            if backup.is_file() {
                message.push_str(&format!(
                    "; the previous version is kept in {}",
                    backup.display()
                ));
            }
            Err(StateError::Corrupt {
                path: path.to_owned(),
                message,
            })
        }
    }
}

pub(crate) enum Decode {
    Unsupported(u64),
    Corrupt(String),
}

/// Checks `format_version` before the full parse: a newer format may not fit
/// today's model, and "upgrade imgform" is the useful answer then.
pub(crate) fn decode_state(bytes: &[u8]) -> Result<StateFile, Decode> {
    /// Only `format_version`: the rest is skipped without being built (a
    /// `serde_json::Value` of a 10,000-image state is tens of MB).
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        format_version: Option<serde_json::Value>,
    }
    let probe = match serde_json::from_slice::<Probe>(bytes) {
        Ok(probe) => probe,
        // Valid JSON, but not an object: no `format_version` in it.
        Err(e)
            if e.classify() == serde_json::error::Category::Data
                && bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') =>
        {
            Probe {
                format_version: None,
            }
        }
        Err(e) => return Err(Decode::Corrupt(e.to_string())),
    };
    let version = match probe.format_version {
        None => {
            return Err(Decode::Corrupt(
                "it has no `format_version`, so it is not an imgform state file".to_owned(),
            ))
        }
        Some(v) => v.as_u64().ok_or_else(|| {
            Decode::Corrupt(format!("`format_version` must be a whole number, not {v}"))
        })?,
    };
    if version > u64::from(STATE_FORMAT_VERSION) {
        return Err(Decode::Unsupported(version));
    }
    if version < 1 {
        return Err(Decode::Corrupt(format!(
            "format version {version} has never existed"
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| Decode::Corrupt(e.to_string()))
}

/// Replaces `path` with `bytes` so that readers see the old or the new
/// contents, also after a crash: temp file in the same dir, fsync, rename,
/// fsync the dir. The directory must exist.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    write_replacing(path, bytes, true)
}

/// [`write_atomic`], with the two fsyncs only when `durable`: without them
/// a process crash still leaves the old or the new contents, a power cut
/// may leave neither (or a damaged file).
fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StateError> {
    let dir = path.parent().expect("state paths have a parent");
    let temp = write_temp(path, bytes, durable)?;
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(io_error("replace", path, e));
    }
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Removes the temp files of `path` a crashed save left (the caller holds
/// the lock, so no other save of this file is under way).
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        if entry_name.starts_with(&prefix)
            && (entry_name.ends_with(".tmp") || entry_name.ends_with(".part"))
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes `bytes` to a new temp file beside `path` (fsynced when `sync`);
/// the caller renames it into place. Removed again when the write fails.
fn write_temp(path: &Path, bytes: &[u8], sync: bool) -> Result<PathBuf, StateError> {
    // Hidden and not ending in `.json`, so `targets` never reads it; named
    // with our pid, so a later run can tell when its writer is gone.
    let temp = crate::paths::temp_path_for(path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| io_error("create", &temp, e))?;
        file.write_all(bytes)
            .map_err(|e| io_error("write", &temp, e))?;
        if sync {
            file.sync_all().map_err(|e| io_error("sync", &temp, e))?;
        }
        Ok(())
    })();
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<(), StateError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Some filesystems (certain FUSE and network mounts) cannot fsync a
        // directory; the rename itself has still happened.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTSUP)) => Ok(()),
        Err(e) => Err(io_error("sync directory", dir, e)),
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<(), StateError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{mpsc, Barrier};

    use super::*;
    use crate::state::model::{Artifact, ImageRecord};

    const FIXTURE_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/state/fixtures/v1/local.json");

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("state"));
        (dir, backend)
    }

    fn record(hex_char: char) -> ImageRecord {
        let hex: String = std::iter::repeat_n(hex_char, 64).collect();
        ImageRecord {
            content_address: crate::addr::ContentAddress::from_recorded(format!("sha256:{hex}")),
            builder: "null".to_owned(),
            artifact: Artifact {
                id: format!("null:{}", &hex[..12]),
                attributes: BTreeMap::new(),
            },
            parents: BTreeMap::new(),
            base: None,
            data: BTreeMap::new(),
            text_inputs: BTreeMap::new(),
            built_at: "2025-01-02T03:04:05Z".to_owned(),
            sbom: None,
            previous_sbom: None,
            tainted: false,
            previous: Vec::new(),
        }
    }

    /// Files under `dir`, relative, sorted.
    fn files(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(base, &path, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    #[test]
    fn compacting_a_journal_with_nothing_new_keeps_the_file_and_its_backup() {
        let (dir, backend) = backend();
        let mut state = StateFile::new("local");
        let a: ImageAddr = "null.a".parse().unwrap();
        let b: ImageAddr = "null.b".parse().unwrap();
        state.images.insert(a.clone(), record('a'));
        backend.save(&mut state).unwrap();
        state.images.insert(b.clone(), record('b'));
        // A run's first record: a whole-file write (the first becomes
        // `.bak`) and an empty journal; then the run stops.
        backend.record_image(&mut state, &b).unwrap();
        let (file, bak) = (
            fs::read(dir.path().join("state/local.json")).unwrap(),
            fs::read(dir.path().join("state/local.json.bak")).unwrap(),
        );
        assert_ne!(file, bak);
        assert!(backend.save(&mut state).unwrap());
        assert_eq!(fs::read(dir.path().join("state/local.json")).unwrap(), file);
        assert_eq!(
            fs::read(dir.path().join("state/local.json.bak")).unwrap(),
            bak,
            "the previous version is kept"
        );
        assert_eq!(
            files(dir.path()),
            ["state/local.json", "state/local.json.bak"]
        );
    }

    #[test]
    fn records_go_to_the_journal_and_a_save_compacts_them() {
        let (dir, backend) = backend();
        let mut state = StateFile::new("local");
        let a: ImageAddr = "null.a".parse().unwrap();
        let b: ImageAddr = "null.b".parse().unwrap();
        state.images.insert(a.clone(), record('a'));
        // The first record writes the file whole and opens the journal.
        assert!(backend.record_image(&mut state, &a).unwrap());
        assert_eq!(state.serial, 1);
        assert_eq!(
            files(dir.path()),
            ["state/local.journal", "state/local.json"]
        );
        state.images.insert(b.clone(), record('b'));
        backend.record_image(&mut state, &b).unwrap();
        state.images.remove(&a);
        backend.record_image(&mut state, &a).unwrap();
        assert_eq!(state.serial, 3);
        // Another process (a fresh backend) reads file + journal.
        let other = LocalBackend::new(backend.root());
        assert_eq!(other.load("local").unwrap(), state);
        assert_eq!(other.load_all().unwrap(), [state.clone()]);
        let file: StateFile =
            serde_json::from_slice(&fs::read(dir.path().join("state/local.json")).unwrap())
                .unwrap();
        assert_eq!(
            file.serial, 1,
            "the file itself is not rewritten per record"
        );
        // A save compacts: same serial, no journal, file = state.
        assert!(backend.save(&mut state).unwrap());
        assert_eq!(state.serial, 3);
        assert_eq!(
            files(dir.path()),
            ["state/local.json", "state/local.json.bak"]
        );
        assert_eq!(other.load("local").unwrap(), state);
        // Saving again changes nothing.
        assert!(!backend.save(&mut state).unwrap());
    }

    #[test]
    fn a_record_on_a_state_that_moved_on_is_refused() {
        let (_dir, backend) = backend();
        let a: ImageAddr = "null.a".parse().unwrap();
        let mut state = StateFile::new("local");
        state.images.insert(a.clone(), record('a'));
        backend.record_image(&mut state, &a).unwrap();
        let mut stale = state.clone();
        backend.record_image(&mut state, &a).unwrap();
        // `stale` was loaded before the last record: refused by the full
        // save its first record makes in another backend.
        let other = LocalBackend::new(backend.root());
        let err = other.record_image(&mut stale, &a).unwrap_err();
        assert!(matches!(err, StateError::SerialConflict { .. }), "{err}");
    }

    #[test]
    fn load_of_missing_state_is_fresh_and_writes_nothing() {
        let (dir, backend) = backend();
        let state = backend.load("aws/us-east-1").unwrap();
        assert_eq!(state.serial, 0);
        assert_eq!(state.format_version, STATE_FORMAT_VERSION);
        assert_eq!(state.target, "aws/us-east-1");
        assert!(state.images.is_empty());
        assert!(uuid::Uuid::parse_str(&state.lineage).is_ok());
        assert!(!backend.root().exists());
        assert_eq!(backend.targets().unwrap(), Vec::<String>::new());
        assert!(backend.lock_holder().unwrap().is_none());
        assert_eq!(backend.get_object(&"0".repeat(64)).unwrap(), None);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn save_bumps_serial_once_per_change_and_keeps_one_backup() {
        let (_dir, backend) = backend();
        let mut state = backend.load("local").unwrap();
        assert!(backend.save(&mut state).unwrap());
        assert_eq!(state.serial, 1);
        let path = backend.root().join("local.json");
        let first = fs::read(&path).unwrap();
        assert!(!backend.root().join("local.json.bak").exists());

        state
            .images
            .insert("golden.null.base".parse().unwrap(), record('a'));
        assert!(backend.save(&mut state).unwrap());
        assert_eq!(state.serial, 2);
        assert_eq!(
            fs::read(backend.root().join("local.json.bak")).unwrap(),
            first
        );
        let second = fs::read(&path).unwrap();

        state
            .images
            .insert("golden.null.app".parse().unwrap(), record('b'));
        assert!(backend.save(&mut state).unwrap());
        assert_eq!(state.serial, 3);
        assert_eq!(
            fs::read(backend.root().join("local.json.bak")).unwrap(),
            second
        );

        assert_eq!(backend.load("local").unwrap(), state);
        // No temp files left behind.
        assert_eq!(files(backend.root()), ["local.json", "local.json.bak"]);
    }

    #[test]
    fn unchanged_save_writes_nothing() {
        let (_dir, backend) = backend();
        let mut state = backend.load("local").unwrap();
        state
            .images
            .insert("null.base".parse().unwrap(), record('c'));
        assert!(backend.save(&mut state).unwrap());
        let bytes = fs::read(backend.root().join("local.json")).unwrap();

        assert!(!backend.save(&mut state).unwrap());
        let mut reloaded = backend.load("local").unwrap();
        assert!(!backend.save(&mut reloaded).unwrap());
        assert_eq!((state.serial, reloaded.serial), (1, 1));
        assert_eq!(fs::read(backend.root().join("local.json")).unwrap(), bytes);
        assert!(!backend.root().join("local.json.bak").exists());
    }

    #[test]
    fn written_json_is_pretty_stable_and_newline_terminated() {
        let (_dir, backend) = backend();
        let mut state = backend.load("local").unwrap();
        let mut rec = record('d');
        rec.artifact.attributes.insert("zeta".into(), 1.into());
        rec.artifact.attributes.insert("alpha".into(), "x".into());
        state
            .images
            .insert("z.null.last".parse().unwrap(), rec.clone());
        state.images.insert("a.null.first".parse().unwrap(), rec);
        backend.save(&mut state).unwrap();
        let text = fs::read_to_string(backend.root().join("local.json")).unwrap();
        assert!(text.starts_with("{\n  \"format_version\": 1,\n  \"lineage\": "));
        assert!(text.ends_with("}\n") && !text.ends_with("\n\n"));
        assert!(text.find("a.null.first").unwrap() < text.find("z.null.last").unwrap());
        assert!(text.find("\"alpha\"").unwrap() < text.find("\"zeta\"").unwrap());
        // Empty optional fields are left out.
        assert!(!text.contains("tainted") && !text.contains("parents"));
    }

    #[test]
    fn save_refuses_a_state_that_moved_on() {
        let (_dir, backend) = backend();
        let mut seed = backend.load("local").unwrap();
        backend.save(&mut seed).unwrap();

        let mut first = backend.load("local").unwrap();
        let mut second = backend.load("local").unwrap();
        first.images.insert("null.a".parse().unwrap(), record('1'));
        second.images.insert("null.b".parse().unwrap(), record('2'));
        assert!(backend.save(&mut first).unwrap());
        let err = backend.save(&mut second).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::SerialConflict {
                    stored: 2,
                    given: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(second.serial, 1);

        let mut stranger = StateFile::new("local");
        stranger.serial = 2;
        let err = backend.save(&mut stranger).unwrap_err();
        assert!(matches!(err, StateError::LineageMismatch { .. }), "{err:?}");
        assert_eq!(backend.load("local").unwrap(), first);
    }

    #[test]
    fn targets_are_read_from_state_files_and_sorted() {
        let (_dir, backend) = backend();
        for target in ["local", "openstack/prod/RegionOne", "aws/us-east-1"] {
            let mut state = backend.load(target).unwrap();
            backend.save(&mut state).unwrap();
            backend.save(&mut state).unwrap();
        }
        backend.put_object(b"manifest").unwrap();
        backend
            .lock(&LockInfo::new("plan"), Duration::ZERO)
            .unwrap();
        assert!(backend.root().join("aws-us-east-1.json").is_file());
        assert_eq!(
            backend.targets().unwrap(),
            ["aws/us-east-1", "local", "openstack/prod/RegionOne"]
        );
    }

    #[test]
    fn state_under_another_targets_file_name_is_refused() {
        let (_dir, backend) = backend();
        let mut state = backend.load("aws/us-east-1").unwrap();
        backend.save(&mut state).unwrap();
        // `aws-us-east-1` has the same slug but is a different target.
        let err = backend.load("aws-us-east-1").unwrap_err();
        assert!(matches!(err, StateError::WrongTarget { .. }), "{err:?}");
        let mut other = StateFile::new("aws-us-east-1");
        let err = backend.save(&mut other).unwrap_err();
        assert!(matches!(err, StateError::WrongTarget { .. }), "{err:?}");

        fs::rename(
            backend.root().join("aws-us-east-1.json"),
            backend.root().join("renamed.json"),
        )
        .unwrap();
        let err = backend.targets().unwrap_err();
        assert!(err.to_string().contains("aws-us-east-1.json"), "{err}");

        for bad in ["", ".hidden"] {
            let err = backend.load(bad).unwrap_err();
            assert!(matches!(err, StateError::InvalidTarget { .. }), "{err:?}");
        }
    }

    #[test]
    fn newer_format_version_asks_for_an_upgrade() {
        let (_dir, backend) = backend();
        fs::create_dir_all(backend.root()).unwrap();
        let path = backend.root().join("local.json");
        fs::write(
            &path,
            r#"{"format_version": 2, "lineage": "x", "shape": "unknown to v1"}"#,
        )
        .unwrap();
        let err = backend.load("local").unwrap_err();
        assert!(
            matches!(err, StateError::UnsupportedVersion { found: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade imgform"), "{err}");
        let mut state = StateFile::new("local");
        assert!(backend.save(&mut state).is_err());
        assert!(backend.targets().is_err());
    }

    #[test]
    fn unparsable_state_is_corrupt_with_line_and_column() {
        let (_dir, backend) = backend();
        let mut state = backend.load("local").unwrap();
        backend.save(&mut state).unwrap();
        state.images.insert("null.a".parse().unwrap(), record('e'));
        backend.save(&mut state).unwrap();
        let path = backend.root().join("local.json");
        fs::write(&path, "{\n  \"format_version\": 1,\n  \"lineage\": \n").unwrap();
        let err = backend.load("local").unwrap_err();
        let StateError::Corrupt { path: at, message } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(at, &path);
        assert!(message.contains("line 4 column 0"), "{message}");
        assert!(message.contains("local.json.bak"), "{message}");

        fs::write(
            &path,
            "{\"format_version\": 1, \"lineage\": \"l\", \"serial\": -1, \"target\": \"local\"}",
        )
        .unwrap();
        let err = backend.load("local").unwrap_err();
        assert!(err.to_string().contains("line 1 column"), "{err}");

        fs::write(&path, "[]").unwrap();
        let err = backend.load("local").unwrap_err();
        assert!(err.to_string().contains("format_version"), "{err}");
    }

    #[test]
    fn diff_objects_are_stored_alike_and_settled_by_the_next_save() {
        use std::sync::atomic::Ordering;
        let (_dir, backend) = backend();
        let bytes = b"echo diff me\n";
        let hex = backend.put_diff_object(bytes).unwrap();
        assert_eq!(hex, backend.put_object(bytes).unwrap());
        assert_eq!(
            backend.get_object(&hex).unwrap().as_deref(),
            Some(&bytes[..])
        );
        // Nothing half-written is left beside it.
        assert_eq!(
            files(backend.root()),
            [format!("objects/{}/{}", &hex[..2], &hex[2..])]
        );
        // A damaged one is replaced, as by put_object.
        let path = backend.object_path(&hex);
        fs::write(&path, b"garbage").unwrap();
        assert_eq!(backend.put_diff_object(bytes).unwrap(), hex);
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert!(backend.unsynced_objects.load(Ordering::SeqCst));
        let mut state = StateFile::new("local");
        backend.save(&mut state).unwrap();
        assert!(!backend.unsynced_objects.load(Ordering::SeqCst));
    }

    #[test]
    fn objects_roundtrip_and_are_stored_once() {
        let (_dir, backend) = backend();
        let bytes = b"{\"builder\":\"null\"}\n";
        let hex = backend.put_object(bytes).unwrap();
        assert_eq!(hex, hex::encode(Sha256::digest(bytes)));
        let path = backend
            .root()
            .join("objects")
            .join(&hex[..2])
            .join(&hex[2..]);
        assert_eq!(fs::read(&path).unwrap(), bytes);

        let modified = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(backend.put_object(bytes).unwrap(), hex);
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), modified);
        assert_eq!(
            files(backend.root()),
            [format!("objects/{}/{}", &hex[..2], &hex[2..])]
        );

        assert_eq!(
            backend.get_object(&hex).unwrap().as_deref(),
            Some(&bytes[..])
        );
        let empty = backend.put_object(b"").unwrap();
        assert_eq!(backend.get_object(&empty).unwrap(), Some(Vec::new()));
        assert_eq!(backend.get_object(&"f".repeat(64)).unwrap(), None);

        for bad in [
            "../../etc/passwd",
            &format!("sha256:{hex}"),
            &hex.to_uppercase(),
            "ab",
        ] {
            let err = backend.get_object(bad).unwrap_err();
            assert!(matches!(err, StateError::InvalidObjectId { .. }), "{err:?}");
        }
    }

    #[test]
    fn corrupt_object_is_detected_and_replaced_by_put() {
        let (_dir, backend) = backend();
        let hex = backend.put_object(b"echo hello\n").unwrap();
        let path = backend
            .root()
            .join("objects")
            .join(&hex[..2])
            .join(&hex[2..]);
        fs::write(&path, b"echo HACKED\n").unwrap();
        let err = backend.get_object(&hex).unwrap_err();
        assert!(
            matches!(&err, StateError::Corrupt { path: p, .. } if *p == path),
            "{err:?}"
        );

        assert_eq!(backend.put_object(b"echo hello\n").unwrap(), hex);
        assert_eq!(backend.get_object(&hex).unwrap().unwrap(), b"echo hello\n");
    }

    #[test]
    fn an_empty_or_corrupt_lock_is_named_by_its_bytes_and_force_unlocked() {
        let (_dir, backend) = backend();
        fs::create_dir_all(backend.root()).unwrap();
        for bytes in [&b""[..], b"{\"id\": \"cut sh", b"\xff\xfe"] {
            fs::write(backend.root().join(LOCK_FILE), bytes).unwrap();
            let id = unreadable_lock_id(bytes);
            // The error says which ID removes it.
            let err = backend.lock_holder().unwrap_err();
            assert!(
                err.to_string().contains(&format!("force-unlock {id}")),
                "{err}"
            );
            // Another name does not remove it (it may have changed since).
            let wrong = backend.force_unlock("unreadable-000000000000").unwrap_err();
            assert!(wrong.to_string().contains(&id), "{wrong}");
            assert!(backend.root().join(LOCK_FILE).exists());
            backend.force_unlock(&id).unwrap();
            assert!(!backend.root().join(LOCK_FILE).exists());
            // And the state can be locked again.
            let info = LockInfo::new("apply");
            backend.lock(&info, Duration::ZERO).unwrap();
            backend.unlock(&info.id).unwrap();
            fs::create_dir_all(backend.root()).unwrap();
        }
    }

    #[test]
    fn lock_is_exclusive_and_names_its_holder() {
        let (_dir, backend) = backend();
        let first = LockInfo::new("apply");
        backend.lock(&first, Duration::ZERO).unwrap();
        assert_eq!(backend.lock_holder().unwrap().as_ref(), Some(&first));

        let started = Instant::now();
        let err = backend
            .lock(&LockInfo::new("plan"), Duration::ZERO)
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500));
        let StateError::Locked { holder } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(**holder, first);
        let message = err.to_string();
        for part in [&first.who, &first.operation, &first.id] {
            assert!(message.contains(part.as_str()), "{message}");
        }
        assert!(message.contains("force-unlock"), "{message}");

        backend.unlock(&first.id).unwrap();
        assert_eq!(backend.lock_holder().unwrap(), None);
        assert!(matches!(
            backend.unlock(&first.id),
            Err(StateError::NotLocked)
        ));
    }

    #[test]
    fn racing_lockers_get_exactly_one_lock() {
        let (_dir, backend) = backend();
        let barrier = Barrier::new(8);
        let winners = thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        match backend.lock(&LockInfo::new("apply"), Duration::ZERO) {
                            Ok(()) => 1,
                            Err(StateError::Locked { .. }) => 0,
                            Err(e) => panic!("{e:?}"),
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum::<u32>()
        });
        assert_eq!(winners, 1);
    }

    #[test]
    fn lock_waits_for_a_holder_that_releases_in_time() {
        let (_dir, backend) = backend();
        let (locked_tx, locked_rx) = mpsc::channel();
        thread::scope(|scope| {
            scope.spawn(|| {
                let guard = acquire(&backend, LockInfo::new("apply"), Duration::ZERO).unwrap();
                locked_tx.send(guard.info().clone()).unwrap();
                thread::sleep(Duration::from_millis(300));
                drop(guard);
            });
            let holder = locked_rx.recv().unwrap();
            let waiter = LockInfo::new("plan");
            let started = Instant::now();
            backend.lock(&waiter, Duration::from_secs(10)).unwrap();
            assert!(started.elapsed() >= Duration::from_millis(100));
            assert_ne!(backend.lock_holder().unwrap().unwrap().id, holder.id);
            backend.unlock(&waiter.id).unwrap();
        });
    }

    #[test]
    fn lock_timeout_expires_with_the_holder_named() {
        let (_dir, backend) = backend();
        let _guard = acquire(&backend, LockInfo::new("apply"), Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = backend
            .lock(&LockInfo::new("plan"), Duration::from_millis(250))
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(matches!(err, StateError::Locked { holder } if holder.operation == "apply"));
    }

    #[test]
    fn guard_releases_on_drop_and_on_release() {
        let (_dir, backend) = backend();
        {
            let _guard = acquire(&backend, LockInfo::new("apply"), Duration::ZERO).unwrap();
            assert!(backend.lock_holder().unwrap().is_some());
        }
        assert!(backend.lock_holder().unwrap().is_none());
        let guard = acquire(&backend, LockInfo::new("apply"), Duration::ZERO).unwrap();
        guard.release().unwrap();
        assert!(!backend.root().join(".lock").exists());
    }

    #[test]
    fn force_unlock_needs_the_holders_id() {
        let (_dir, backend) = backend();
        let holder = LockInfo::new("apply");
        backend.lock(&holder, Duration::ZERO).unwrap();
        let err = backend.force_unlock("not-the-id").unwrap_err();
        match &err {
            StateError::LockIdMismatch {
                given,
                holder: actual,
            } => {
                assert_eq!(given, "not-the-id");
                assert_eq!(**actual, holder);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&holder.id), "{err}");
        assert_eq!(backend.lock_holder().unwrap().as_ref(), Some(&holder));

        backend.force_unlock(&holder.id).unwrap();
        assert!(matches!(
            backend.force_unlock(&holder.id),
            Err(StateError::NotLocked)
        ));
    }

    #[test]
    fn unreadable_lock_file_is_reported_not_ignored() {
        let (_dir, backend) = backend();
        fs::create_dir_all(backend.root()).unwrap();
        fs::write(backend.root().join(".lock"), "").unwrap();
        let err = backend
            .lock(&LockInfo::new("apply"), Duration::ZERO)
            .unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains("force-unlock unreadable-"),
            "{err}"
        );
    }

    #[test]
    fn lock_info_describes_this_run() {
        let info = LockInfo::new("state rm");
        assert!(uuid::Uuid::parse_str(&info.id).is_ok());
        assert_eq!(info.operation, "state rm");
        let (user, host) = info.who.split_once('@').unwrap();
        assert!(!user.is_empty() && !host.is_empty(), "{}", info.who);
        assert!(chrono::DateTime::parse_from_rfc3339(&info.created).is_ok());
        assert!(info.created.ends_with('Z'));
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_ne!(LockInfo::new("plan").id, LockInfo::new("plan").id);
    }

    #[test]
    fn v1_fixture_loads_and_roundtrips() {
        let text = fs::read_to_string(FIXTURE_V1).unwrap();
        let state: StateFile = serde_json::from_str(&text).unwrap();
        assert_eq!(state.format_version, 1);
        assert_eq!(state.images.len(), 2);
        let reserialized = serde_json::to_value(&state).unwrap();
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reserialized, original);
        // The fixture is also byte-for-byte what `save` writes.
        assert_eq!(String::from_utf8(to_json_bytes(&state)).unwrap(), text);

        let (_dir, backend) = backend();
        fs::create_dir_all(backend.root()).unwrap();
        fs::write(backend.root().join("local.json"), &text).unwrap();
        let mut loaded = backend.load("local").unwrap();
        assert_eq!(loaded, state);
        assert!(!backend.save(&mut loaded).unwrap());
        assert_eq!(backend.targets().unwrap(), ["local"]);
    }
}
