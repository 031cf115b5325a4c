//! The persistent file-hash cache, `.imgform/cache/file-hashes` in the
//! definition dir: what a file hashed to, keyed by what `stat` says about
//! it, so an unchanged re-plan stats its input files instead of reading
//! them. It is a cache only: never part of the state, never of a content
//! address (a hit gives exactly the hash a fresh read gives), ignored and
//! rebuilt when unreadable, bypassed with `--no-cache`.
//!
//! Key: device and inode, checked against size, mode, mtime and ctime in
//! nanoseconds (not the path: hashing two integers is cheaper than hashing
//! a long path 50,000 times, and every path to one file has one content).
//! Any write to a file changes its ctime (which cannot be set back from user
//! space), so an edit that keeps size and mtime (`touch -d`) is still a
//! miss; `touch` alone is a miss that hashes to the same bytes. An inode
//! reused by a new file has a new ctime.
//!
//! Racy entries (git's rule): file timestamps advance in ticks of the
//! filesystem's clock, so a file written again within the tick in which it
//! was hashed keeps its mtime and ctime. An entry is trusted only when the
//! file's mtime and ctime are older, by [`RACY_WINDOW`], than the cache
//! file's own mtime (the time it was written, on the filesystem's clock);
//! other entries are hashed again on the next run, which then writes them
//! as trusted. An entry is also not recorded when the file's `stat`
//! changed while it was read.
//!
//! Directory trees (`hasher::hash_tree`) keep their Merkle nodes here too:
//! per tree, its root digest, the `stat` of each of its folders (a name
//! added, removed or renamed changes its folder's mtime and ctime) and of
//! its `.imgformignore`, and which file entry each of its files is. A tree
//! whose folders are unchanged is not listed again (no `readdir`, no ignore
//! pattern matched): its files are `stat`ed against their entries, and when
//! every one hits, the root digest is reused as it is; else it is computed
//! again from the entries. A tree is recorded only when it holds no
//! symlink (a link's target can change where no folder's `stat` shows it),
//! and kept only with all of its file entries. Racy folders (as for files,
//! below) make its record untrusted.
//!
//! Format (text, one entry a line, so it can be inspected):
//!
//! ```text
//! imgform file hashes 3
//! <sha256 hex>\t<x|->\t<t|->\t<dev>\t<ino>\t<size>\t<mode>\t<mtime ns>\t<ctime ns>
//! tree\t<root sha256 hex>\t<stat of .imgformignore|->\t<folders>\t<files>\t<root path>
//! d\t<stat>\t<folder, relative to the root; empty for the root>
//! f\t<dev>\t<ino>\t<file, relative to the root>
//! end <number of entries> <number of trees>
//! ```
//!
//! `x`: executable; `t`: a small text input; a tree's `stat` is the six
//! numbers of an entry joined by commas. A tree's `d` and `f` lines follow
//! it. Anything that does not parse exactly (a truncated file, a bad line,
//! a different version) makes the whole cache be ignored, and it is
//! written again; a cache of version 2 (no trees) is read as it is.
//!
//! Concurrent runs: the file is replaced atomically (temp file in the same
//! dir, rename), so a reader sees a whole cache or the previous one; when
//! two runs write, the last one wins and the other's new entries are
//! simply hashed again later. Entries not used by a run are dropped when it
//! writes, so deleted and renamed files do not accumulate.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::hasher::HashedFile;

/// The cache file, relative to the definition dir.
pub const CACHE_FILE: &str = ".imgform/cache/file-hashes";
const HEADER: &str = "imgform file hashes 3";
/// The version before trees were kept: read, and written again as 3.
const HEADER_2: &str = "imgform file hashes 2";
/// Wider than the coarsest common timestamp granularity (FAT: 2 s).
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// Device and inode.
pub type Key = (u64, u64);

/// The Merkle nodes of a hashed directory tree, as the cache keeps them
/// (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRecord {
    /// The tree's root digest (`hasher::HashedTree::root`, without `sha256:`).
    pub root: [u8; 32],
    /// The `stat` of the root's `.imgformignore`, if it has one.
    pub ignore: Option<FileStat>,
    /// Every folder not ignored (relative; the root is ""), with its `stat`.
    pub folders: Vec<(String, FileStat)>,
    /// Every file not ignored (relative), with the key of its entry.
    pub files: Vec<(String, Key)>,
}

impl TreeRecord {
    /// Whether it can be written as lines (no name with a line break).
    fn writable(&self, root: &Path) -> bool {
        let clean = |s: &str| !s.contains(['\n', '\r']);
        clean(&root.to_string_lossy())
            && self.folders.iter().all(|(rel, _)| clean(rel))
            && self.files.iter().all(|(rel, _)| clean(rel))
    }
}

pub use crate::watch::FileStat;

/// A file's hash as the cache keeps it: the digest's 32 bytes, not its
/// hex (a cache of 50,000 files holds no 50,000 strings).
#[derive(Debug, Clone)]
struct Entry {
    stat: FileStat,
    sha256: [u8; 32],
    executable: bool,
    is_text: bool,
}

impl Entry {
    fn new(stat: FileStat, hashed: &HashedFile) -> Option<Entry> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(&hashed.sha256, &mut sha256).ok()?;
        Some(Entry {
            stat,
            sha256,
            executable: hashed.executable,
            is_text: hashed.is_text,
        })
    }

    fn hashed(&self) -> HashedFile {
        HashedFile {
            sha256: hex::encode(self.sha256),
            executable: self.executable,
            is_text: self.is_text,
        }
    }
}

/// A loaded entry, and whether this run used it (a hit).
#[derive(Debug)]
struct Loaded {
    entry: Entry,
    hit: AtomicBool,
}

/// The cache of one run: loaded once, written once at the end if anything
/// in it changed.
#[derive(Debug)]
pub struct HashCache {
    path: PathBuf,
    /// Trusted entries as loaded, by (device, inode), each marked when hit.
    loaded: HashMap<Key, Loaded>,
    /// Entries made by this run (misses).
    fresh: Mutex<HashMap<Key, Entry>>,
    /// Trusted tree records as loaded, by root path, each marked when reused.
    trees: HashMap<PathBuf, (TreeRecord, AtomicBool)>,
    /// Tree records made by this run.
    fresh_trees: Mutex<HashMap<PathBuf, TreeRecord>>,
    /// Whether the file on disk differs from what `used` will hold
    /// (misses, racy or stale entries, a corrupt file).
    changed: AtomicBool,
}

impl HashCache {
    /// The cache of the definition dir `def_dir`: what its cache file
    /// holds, or empty when it is missing or corrupt (never an error).
    pub fn open(def_dir: &Path) -> HashCache {
        let path = def_dir.join(CACHE_FILE);
        let (entries, trees, clean) = match read(&path) {
            Ok(Some(read)) => (read.entries, read.trees, read.clean),
            Ok(None) => (HashMap::new(), HashMap::new(), true),
            Err(_) => (HashMap::new(), HashMap::new(), false),
        };
        let loaded = entries
            .into_iter()
            .map(|(key, entry)| {
                let hit = AtomicBool::new(false);
                (key, Loaded { entry, hit })
            })
            .collect();
        let trees = trees
            .into_iter()
            .map(|(root, record)| (root, (record, AtomicBool::new(false))))
            .collect();
        HashCache {
            path,
            loaded,
            fresh: Mutex::default(),
            trees,
            fresh_trees: Mutex::default(),
            changed: AtomicBool::new(!clean),
        }
    }

    /// The record of the tree at `root` (the path as hashed), if trusted.
    pub fn tree(&self, root: &Path) -> Option<&TreeRecord> {
        self.trees.get(root).map(|(record, _)| record)
    }

    /// The tree at `root` was answered by its record, which stays.
    pub fn tree_reused(&self, root: &Path) {
        if let Some((_, used)) = self.trees.get(root) {
            used.store(true, Ordering::Relaxed);
        }
    }

    /// Records the tree at `root` as this run hashed it.
    pub fn record_tree(&self, root: &Path, record: TreeRecord) {
        self.changed.store(true, Ordering::Relaxed);
        self.fresh_trees
            .lock()
            .expect("hash cache")
            .insert(root.to_path_buf(), record);
    }

    /// The cached hash of the file whose `stat` is `stat`, if the cache has
    /// it for exactly that `stat`.
    pub fn lookup(&self, stat: FileStat) -> Option<HashedFile> {
        let loaded = self.loaded.get(&(stat.dev, stat.ino))?;
        if loaded.entry.stat != stat {
            self.changed.store(true, Ordering::Relaxed);
            return None;
        }
        loaded.hit.store(true, Ordering::Relaxed);
        Some(loaded.entry.hashed())
    }

    /// Records what a file hashed to. `before` and `after` are its `stat`
    /// before and after reading; a file that changed meanwhile is not
    /// recorded.
    pub fn record(&self, before: &fs::Metadata, after: &fs::Metadata, hashed: &HashedFile) {
        self.changed.store(true, Ordering::Relaxed);
        let stat = FileStat::of(before);
        if stat != FileStat::of(after) {
            return;
        }
        if let Some(entry) = Entry::new(stat, hashed) {
            self.fresh
                .lock()
                .expect("hash cache")
                .insert((stat.dev, stat.ino), entry);
        }
    }

    /// Writes the entries this run used, if that changes the file.
    /// Failing to write is not an error for the run (it is a cache).
    pub fn save(&self) -> io::Result<()> {
        // Copies of it that killed runs left half-written go, written or not.
        if let Some(dir) = self.path.parent() {
            crate::paths::sweep_stale_temp_files(dir);
        }
        let fresh = self.fresh.lock().expect("hash cache");
        let hits = self
            .loaded
            .iter()
            .filter(|(key, l)| l.hit.load(Ordering::Relaxed) && !fresh.contains_key(*key));
        let mut used: Vec<(&Key, &Entry)> = hits.map(|(k, l)| (k, &l.entry)).collect();
        let fresh_trees = self.fresh_trees.lock().expect("hash cache");
        let reused = self.trees.iter().filter(|(root, (_, used))| {
            used.load(Ordering::Relaxed) && !fresh_trees.contains_key(*root)
        });
        let mut trees: Vec<(&PathBuf, &TreeRecord)> = reused.map(|(r, (t, _))| (r, t)).collect();
        // Every loaded entry and tree used, nothing new: the file is right
        // as it is.
        if !self.changed.load(Ordering::Relaxed)
            && used.len() == self.loaded.len()
            && trees.len() == self.trees.len()
        {
            return Ok(());
        }
        used.extend(fresh.iter());
        used.sort_by(|a, b| a.0.cmp(b.0));
        // A tree is kept with all of its files' entries, or not at all.
        trees.extend(fresh_trees.iter());
        trees.retain(|(root, tree)| {
            tree.writable(root)
                && tree
                    .files
                    .iter()
                    .all(|(_, key)| used.binary_search_by(|(k, _)| (*k).cmp(key)).is_ok())
        });
        trees.sort_by(|a, b| a.0.cmp(b.0));
        let mut text = String::with_capacity(64 + used.len() * 160);
        text.push_str(HEADER);
        text.push('\n');
        // (`write!` into the one buffer: no string made per line.)
        let mut hex = [0u8; 64];
        for (_, e) in &used {
            let _ = writeln!(
                text,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                hex_of(&e.sha256, &mut hex),
                if e.executable { 'x' } else { '-' },
                if e.is_text { 't' } else { '-' },
                e.stat.dev,
                e.stat.ino,
                e.stat.size,
                e.stat.mode,
                e.stat.mtime_ns,
                e.stat.ctime_ns,
            );
        }
        for (root, tree) in &trees {
            let _ = write!(text, "tree\t{}\t", hex_of(&tree.root, &mut hex));
            match tree.ignore {
                Some(stat) => write_stat(&mut text, stat),
                None => text.push('-'),
            }
            let _ = writeln!(
                text,
                "\t{}\t{}\t{}",
                tree.folders.len(),
                tree.files.len(),
                root.display()
            );
            for (rel, stat) in &tree.folders {
                text.push_str("d\t");
                write_stat(&mut text, *stat);
                let _ = writeln!(text, "\t{rel}");
            }
            for (rel, (dev, ino)) in &tree.files {
                let _ = writeln!(text, "f\t{dev}\t{ino}\t{rel}");
            }
        }
        let _ = writeln!(text, "end {} {}", used.len(), trees.len());
        write_replacing(&self.path, text.as_bytes())
    }
}

/// A tree's `stat`: the six numbers joined by commas.
fn write_stat(text: &mut String, s: FileStat) {
    let _ = write!(
        text,
        "{},{},{},{},{},{}",
        s.dev, s.ino, s.size, s.mode, s.mtime_ns, s.ctime_ns
    );
}

/// The lowercase hex of a digest, in `buf`.
fn hex_of<'a>(digest: &[u8; 32], buf: &'a mut [u8; 64]) -> &'a str {
    hex::encode_to_slice(digest, buf).expect("64 hex digits");
    std::str::from_utf8(buf).expect("hex is ASCII")
}

/// A tree's `stat` ([`write_stat`]).
fn parse_stat(text: &str) -> Option<FileStat> {
    let mut f = text.split(',');
    let stat = stat_fields(&mut f)?;
    f.next().is_none().then_some(stat)
}

/// The next six fields: device, inode, size, mode, mtime and ctime.
fn stat_fields<'a>(f: &mut impl Iterator<Item = &'a str>) -> Option<FileStat> {
    Some(FileStat {
        dev: f.next()?.parse().ok()?,
        ino: f.next()?.parse().ok()?,
        size: f.next()?.parse().ok()?,
        mode: f.next()?.parse().ok()?,
        mtime_ns: f.next()?.parse().ok()?,
        ctime_ns: f.next()?.parse().ok()?,
    })
}

/// What a cache file holds that can be trusted, and whether it was clean
/// (nothing racy dropped).
struct Read {
    entries: HashMap<Key, Entry>,
    trees: HashMap<PathBuf, TreeRecord>,
    clean: bool,
}

/// A tree being read: its record, root, and how many `d` and `f` lines
/// are still to come.
struct PendingTree {
    root: PathBuf,
    record: TreeRecord,
    folders: usize,
    files: usize,
}

impl PendingTree {
    fn parse(line: &str) -> Option<PendingTree> {
        let mut f = line.splitn(6, '\t');
        if f.next()? != "tree" {
            return None;
        }
        let mut root = [0u8; 32];
        hex::decode_to_slice(f.next()?, &mut root).ok()?;
        let ignore = match f.next()? {
            "-" => None,
            stat => Some(parse_stat(stat)?),
        };
        let folders: usize = f.next()?.parse().ok()?;
        let files: usize = f.next()?.parse().ok()?;
        let path = PathBuf::from(f.next()?);
        Some(PendingTree {
            root: path,
            // (Counts from a file are not trusted with an allocation.)
            record: TreeRecord {
                root,
                ignore,
                folders: Vec::with_capacity(folders.min(1 << 12)),
                files: Vec::with_capacity(files.min(1 << 16)),
            },
            folders,
            files,
        })
    }

    /// Takes a `d` or `f` line of this tree.
    fn add(&mut self, line: &str) -> Option<()> {
        if let Some(rest) = line.strip_prefix("d\t") {
            let (stat, rel) = rest.split_once('\t')?;
            if self.record.folders.len() == self.folders {
                return None;
            }
            self.record
                .folders
                .push((rel.to_owned(), parse_stat(stat)?));
        } else {
            let rest = line.strip_prefix("f\t")?;
            let mut f = rest.splitn(3, '\t');
            let key = (f.next()?.parse().ok()?, f.next()?.parse().ok()?);
            if self.record.files.len() == self.files {
                return None;
            }
            self.record.files.push((f.next()?.to_owned(), key));
        }
        Some(())
    }

    fn complete(&self) -> bool {
        self.record.folders.len() == self.folders && self.record.files.len() == self.files
    }

    /// Whether a folder or the ignore file changed within the racy window
    /// before the cache was written at `written_ns`.
    fn racy(&self, written_ns: i64) -> bool {
        let racy = |s: &FileStat| s.newest_ns().saturating_add(RACY_WINDOW_NS) >= written_ns;
        self.record.ignore.as_ref().is_some_and(racy)
            || self.record.folders.iter().any(|(_, s)| racy(s))
    }
}

/// What the cache file holds; `None` when there is no file; `Err` when it
/// is corrupt.
fn read(path: &Path) -> Result<Option<Read>, ()> {
    let (text, meta) = match fs::read_to_string(path).and_then(|t| Ok((t, fs::metadata(path)?))) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(()),
    };
    let written_ns = FileStat::of(&meta).mtime_ns;
    let mut lines = text.lines();
    let version_2 = match lines.next() {
        Some(HEADER) => false,
        Some(HEADER_2) => true,
        _ => return Err(()),
    };
    let mut entries = HashMap::new();
    let mut trees = HashMap::new();
    let mut tree: Option<PendingTree> = None;
    let mut tree_count = 0usize;
    let mut count = 0usize;
    let mut clean = !version_2;
    let mut ended = false;
    for line in lines {
        if ended {
            return Err(());
        }
        if let Some(pending) = tree.as_mut().filter(|t| !t.complete()) {
            pending.add(line).ok_or(())?;
            continue;
        }
        if let Some(done) = tree.take() {
            if done.racy(written_ns) {
                clean = false;
            } else {
                trees.insert(done.root, done.record);
            }
        }
        if let Some(n) = line.strip_prefix("end ") {
            let expected = if version_2 {
                format!("{count}")
            } else {
                format!("{count} {tree_count}")
            };
            if n != expected {
                return Err(());
            }
            ended = true;
            continue;
        }
        if line.starts_with("tree\t") && !version_2 {
            tree = Some(PendingTree::parse(line).ok_or(())?);
            tree_count += 1;
            continue;
        }
        let entry = parse_line(line).ok_or(())?;
        count += 1;
        let newest = entry.stat.mtime_ns.max(entry.stat.ctime_ns);
        if newest.saturating_add(RACY_WINDOW_NS) >= written_ns {
            clean = false;
            continue;
        }
        entries.insert((entry.stat.dev, entry.stat.ino), entry);
    }
    if !ended {
        return Err(());
    }
    Ok(Some(Read {
        entries,
        trees,
        clean,
    }))
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut f = line.split('\t');
    let sha256 = f.next()?;
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let executable = flag(f.next()?, "x")?;
    let is_text = flag(f.next()?, "t")?;
    let stat = stat_fields(&mut f)?;
    if f.next().is_some() {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(sha256, &mut digest).ok()?;
    Some(Entry {
        stat,
        sha256: digest,
        executable,
        is_text,
    })
}

fn flag(field: &str, on: &str) -> Option<bool> {
    match field {
        "-" => Some(false),
        f if f == on => Some(true),
        _ => None,
    }
}

/// Replaces `path` atomically: a temp file beside it, renamed over it.
/// Not fsynced: losing the cache in a crash only costs hashing again.
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_replacing_with(path, |f| f.write_all(bytes))
}

/// [`write_replacing`] with the bytes written by `write` into the temp
/// file (a large cache is streamed, never held whole in memory).
pub(crate) fn write_replacing_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    fs::create_dir_all(dir)?;
    let temp = crate::paths::temp_path_for(path);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut f: File| write(&mut f))
        .and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::FileHasher;

    fn backdate(path: &Path) {
        // mtime an hour ago; ctime moves to now, so wait out the racy window.
        set_mtime(
            path,
            std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
        );
    }

    fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    fn hash(dir: &Path, file: &Path) -> HashedFile {
        let hasher = FileHasher::with_cache(HashCache::open(dir));
        let hashed = hasher.hash_file(file).unwrap();
        hasher.save_cache();
        hashed
    }

    fn cache_text(dir: &Path) -> String {
        fs::read_to_string(dir.join(CACHE_FILE)).unwrap_or_default()
    }

    #[test]
    fn a_hit_is_the_fresh_hash_and_racy_entries_are_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.sh");
        fs::write(&file, "echo hi\n").unwrap();
        let fresh = FileHasher::new().hash_file(&file).unwrap();
        let first = hash(dir.path(), &file);
        assert_eq!(first.sha256, fresh.sha256);
        assert!(cache_text(dir.path()).contains(&fresh.sha256));
        // Just written: racy, so not trusted yet.
        assert!(read(&dir.path().join(CACHE_FILE))
            .unwrap()
            .unwrap()
            .entries
            .is_empty());
        std::thread::sleep(std::time::Duration::from_millis(2100));
        hash(dir.path(), &file);
        let Read {
            entries: trusted,
            clean,
            ..
        } = read(&dir.path().join(CACHE_FILE)).unwrap().unwrap();
        assert!(clean);
        let stat = FileStat::of(&fs::metadata(&file).unwrap());
        let entry = &trusted[&(stat.dev, stat.ino)];
        assert_eq!(entry.hashed().sha256, fresh.sha256);
        assert!(entry.is_text);
    }

    #[test]
    fn an_edit_keeping_size_and_mtime_is_caught_by_ctime() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.sh");
        fs::write(&file, "echo one\n").unwrap();
        backdate(&file);
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2100));
        hash(dir.path(), &file);
        hash(dir.path(), &file);
        let path = dir.path().join(CACHE_FILE);
        assert_eq!(
            read(&path).unwrap().unwrap().entries.len(),
            1,
            "trusted now"
        );
        fs::write(&file, "echo two\n").unwrap();
        set_mtime(&file, mtime);
        let stat = fs::metadata(&file).unwrap();
        assert_eq!(stat.modified().unwrap(), mtime);
        assert_eq!(stat.len(), 9);
        let after = hash(dir.path(), &file);
        assert_eq!(
            after.sha256,
            crate::fingerprint::hasher::sha256_hex(b"echo two\n")
        );
    }

    #[test]
    fn a_corrupt_cache_is_ignored_and_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.sh");
        fs::write(&file, "echo hi\n").unwrap();
        let fresh = FileHasher::new().hash_file(&file).unwrap();
        for garbage in [
            "not a cache\n".to_owned(),
            format!("{HEADER}\n{}\tx\n", "a".repeat(64)),
            // A tree promising more lines than any memory holds.
            format!(
                "{HEADER}\ntree\t{}\t-\t{max}\t{max}\t/x\nend 0 1\n",
                "a".repeat(64),
                max = usize::MAX
            ),
            // Truncated: no end line.
            format!("{HEADER}\n{}\t-\tt\t1\t2\t8\t33188\t0\t0\n", "b".repeat(64)),
            // The previous format (with paths).
            format!(
                "imgform file hashes 1\n{}\t-\tt\t1\t2\t8\t33188\t0\t0\t{}\nend 1\n",
                "b".repeat(64),
                file.display()
            ),
        ] {
            fs::create_dir_all(dir.path().join(".imgform/cache")).unwrap();
            fs::write(dir.path().join(CACHE_FILE), &garbage).unwrap();
            assert_eq!(hash(dir.path(), &file).sha256, fresh.sha256);
            assert!(cache_text(dir.path()).starts_with(HEADER));
            assert!(cache_text(dir.path()).ends_with("end 1 0\n"));
        }
    }

    #[test]
    fn a_cache_of_version_2_is_read_and_written_as_3() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.sh");
        fs::write(&file, "echo hi\n").unwrap();
        backdate(&file);
        let stat = FileStat::of(&fs::metadata(&file).unwrap());
        // A forged hash: a hit answers it without reading the file.
        let forged = "c".repeat(64);
        let v2 = format!(
            "{HEADER_2}\n{forged}\t-\tt\t{}\t{}\t{}\t{}\t{}\t{}\nend 1\n",
            stat.dev, stat.ino, stat.size, stat.mode, stat.mtime_ns, stat.ctime_ns
        );
        fs::create_dir_all(dir.path().join(".imgform/cache")).unwrap();
        fs::write(dir.path().join(CACHE_FILE), v2).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
        set_mtime(&dir.path().join(CACHE_FILE), later);
        assert_eq!(hash(dir.path(), &file).sha256, forged);
        let text = cache_text(dir.path());
        assert!(text.starts_with(&format!("{HEADER}\n{forged}\t")), "{text}");
        assert!(text.ends_with("end 1 0\n"), "{text}");
    }
}
