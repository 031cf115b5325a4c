//! File and directory hashing with a per-run cache.
//!
//! A file is hashed by its bytes (never its mtime or owner). A directory is
//! hashed as a Merkle tree: the root is SHA-256 over the sorted lines
//! `<relative name>\0<exec bit>\0<sha256 hex>\n` of every regular file below
//! it, skipping what `.imgformignore` (in the directory's root) and the
//! built-in ignores (`.git`, `.imgform`, `__pycache__`, `*.retry`) exclude.
//! Symlinks that resolve inside the tree's boundary (the definition dir, or
//! the tree itself when it lies outside it) are followed. A symlink that
//! points outside the boundary, or nowhere, is hashed as a link: its target
//! *text* (`<name>\0@\0<target>` in the tree), never the bytes it points
//! at, so nothing outside the project reaches a manifest, the object store
//! or a plan; uploads copy such a link as a link too.
//! The files of a tree are hashed on every core. With a persistent
//! [`HashCache`] a file whose `stat` is unchanged since an earlier run is
//! not read at all, and a tree whose folders are unchanged is not listed
//! again: it reuses its cached nodes (see [`super::cache`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::cache::{HashCache, Key, TreeRecord};
use crate::watch::FileStat;

/// Files at most this large that are valid UTF-8 are kept as text inputs
/// (for diffs in plans).
pub const TEXT_INPUT_LIMIT: u64 = 256 * 1024;

#[derive(Debug, Clone)]
pub struct HashedFile {
    pub sha256: String,
    pub executable: bool,
    /// Small (at most [`TEXT_INPUT_LIMIT`]) UTF-8 text without NULs: kept in
    /// the object store for diffs.
    pub is_text: bool,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether `bytes` are a text input worth keeping for diffs.
pub fn is_text(bytes: &[u8]) -> bool {
    bytes.len() as u64 <= TEXT_INPUT_LIMIT
        && !bytes.contains(&0)
        && std::str::from_utf8(bytes).is_ok()
}

impl HashedFile {
    /// `sha256:<hex>`, with `+x` for executables.
    pub fn describe(&self) -> String {
        if self.executable {
            format!("sha256:{}+x", self.sha256)
        } else {
            format!("sha256:{}", self.sha256)
        }
    }
}

#[derive(Debug, Clone)]
pub struct HashedTree {
    pub root: String,
    pub entries: BTreeMap<String, HashedFile>,
    /// Symlinks hashed as links: relative name -> the link's target text.
    pub links: BTreeMap<String, String>,
}

/// A file's hash, the key of its persistent cache entry, and whether that
/// entry answered (see [`FileHasher::hash_file_keyed`]).
type Keyed = (HashedFile, (Key, bool));

/// Hashes files once per run, however many images read them, and (with a
/// [`HashCache`]) not at all when their `stat` says they did not change
/// since an earlier run.
#[derive(Debug, Default)]
pub struct FileHasher {
    cache: Mutex<HashMap<PathBuf, HashedFile>>,
    /// Trees hashed by this run, by root (their files are not in `cache`:
    /// thousands of path keys cost more than a tree asked for again).
    trees: Mutex<HashMap<PathBuf, Arc<HashedTree>>>,
    persistent: Option<HashCache>,
}

impl FileHasher {
    /// A hasher that reads every file (once per run).
    pub fn new() -> FileHasher {
        FileHasher::default()
    }

    /// A hasher that trusts `cache` for files whose `stat` it knows.
    pub fn with_cache(cache: HashCache) -> FileHasher {
        FileHasher {
            persistent: Some(cache),
            ..FileHasher::default()
        }
    }

    /// Writes the persistent cache, if there is one and it changed. A
    /// cache that cannot be written is skipped: the next run hashes again.
    pub fn save_cache(&self) {
        if let Some(cache) = &self.persistent {
            let _ = cache.save();
        }
    }

    /// Forgets what this run hashed (keeping the persistent cache to
    /// save): once every image is fingerprinted, nothing asks again.
    pub fn forget_run(&mut self) {
        *self.cache.get_mut().expect("hash cache") = HashMap::new();
        *self.trees.get_mut().expect("hash cache") = HashMap::new();
    }

    pub fn cached(&self, path: &Path) -> Option<HashedFile> {
        self.cache.lock().expect("hash cache").get(path).cloned()
    }

    pub fn hash_file(&self, path: &Path) -> std::io::Result<HashedFile> {
        if let Some(hit) = self.cached(path) {
            return Ok(hit);
        }
        let (hashed, _) = self.hash_file_keyed(path)?;
        self.cache
            .lock()
            .expect("hash cache")
            .insert(path.to_path_buf(), hashed.clone());
        Ok(hashed)
    }

    /// Hashes the file at `path` (one `stat` when the persistent cache
    /// has it), not looking in or adding to this run's memo. Also the key
    /// of the persistent cache's entry that now holds the hash, and
    /// whether that entry answered.
    fn hash_file_keyed(&self, path: &Path) -> std::io::Result<Keyed> {
        // With a persistent cache, an unchanged file costs one `stat`.
        if let Some(cache) = &self.persistent {
            let meta = std::fs::metadata(path)?;
            if meta.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
            let stat = FileStat::of(&meta);
            if let Some(hit) = cache.lookup(stat) {
                crate::watch::read(path, &meta);
                return Ok((hit, ((stat.dev, stat.ino), true)));
            }
        }
        let mut file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        crate::watch::read(path, &meta);
        let executable = meta.permissions().mode() & 0o111 != 0;
        let (sha256, is_text) = if meta.len() <= TEXT_INPUT_LIMIT {
            // Small files (scripts, playbooks): one exact-size read.
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut bytes)?;
            (sha256_hex(&bytes), is_text(&bytes))
        } else {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            (hex::encode(hasher.finalize()), false)
        };
        let hashed = HashedFile {
            sha256,
            executable,
            is_text,
        };
        if let Some(cache) = &self.persistent {
            cache.record(&meta, &file.metadata()?, &hashed);
        }
        let stat = FileStat::of(&meta);
        Ok((hashed, ((stat.dev, stat.ino), false)))
    }

    /// Records a file already hashed elsewhere (by a function such as
    /// `file()`), so its text is available for diffs.
    pub fn remember(&self, path: &Path, bytes: &[u8]) {
        self.cache.lock().expect("hash cache").insert(
            path.to_path_buf(),
            HashedFile {
                sha256: sha256_hex(bytes),
                executable: false,
                is_text: is_text(bytes),
            },
        );
    }
}

const BUILTIN_IGNORES: &[&str] = &[".git", ".imgform", "__pycache__", "*.retry", ".DS_Store"];

fn ignore_set(root: &Path) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    let mut add = |pattern: &str| {
        let pattern = pattern.trim().trim_end_matches('/');
        if pattern.is_empty() || pattern.starts_with('#') {
            return;
        }
        let pattern = pattern.trim_start_matches('/');
        // A pattern without a slash matches at any depth, as in .gitignore.
        let globs = if pattern.contains('/') {
            vec![pattern.to_owned(), format!("{pattern}/**")]
        } else {
            vec![
                format!("**/{pattern}"),
                format!("**/{pattern}/**"),
                pattern.to_owned(),
                format!("{pattern}/**"),
            ]
        };
        for g in globs {
            if let Ok(glob) = Glob::new(&g) {
                builder.add(glob);
            }
        }
    };
    for p in BUILTIN_IGNORES {
        add(p);
    }
    if let Ok(text) = std::fs::read_to_string(root.join(".imgformignore")) {
        for line in text.lines() {
            add(line);
        }
    }
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

/// Hashes a directory tree; `boundary` is the folder symlinks may lead
/// into and still be followed (see the module doc). With a persistent
/// cache, a tree whose folders did not change reuses its cached nodes.
pub fn hash_tree(
    hasher: &FileHasher,
    root: &Path,
    boundary: &Path,
) -> std::io::Result<Arc<HashedTree>> {
    if let Some(tree) = hasher.trees.lock().expect("hash cache").get(root) {
        return Ok(Arc::clone(tree));
    }
    let tree = Arc::new(hash_tree_anew(hasher, root, boundary)?);
    hasher
        .trees
        .lock()
        .expect("hash cache")
        .insert(root.to_path_buf(), Arc::clone(&tree));
    Ok(tree)
}

/// [`hash_tree`] of a tree this run has not hashed yet.
fn hash_tree_anew(
    hasher: &FileHasher,
    root: &Path,
    boundary: &Path,
) -> std::io::Result<HashedTree> {
    let ignore_file = root.join(".imgformignore");
    // For the plan cache: the folders' listings (a file added or removed)
    // and the ignore file; the files are watched as they are hashed.
    crate::watch::paths([root, &ignore_file]);
    if let Some(tree) = reuse_tree(hasher, root, &ignore_file)? {
        return Ok(tree);
    }
    let ignore_stat = FileStat::at(&ignore_file);
    let ignore = ignore_set(root);
    let boundary = std::fs::canonicalize(boundary).unwrap_or_else(|_| boundary.to_path_buf());
    let relative = |path: &Path| match path.strip_prefix(root) {
        Ok(r) if !r.as_os_str().is_empty() => Some(r.to_string_lossy().replace('\\', "/")),
        _ => None,
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    // The folders' `stat`s (taken before they are listed) for the cache's
    // record; a tree with a symlink in it is not recorded.
    let mut folders: Vec<(String, FileStat)> = Vec::new();
    let mut symlinked = false;
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name();
    let mut it = walker.into_iter();
    while let Some(entry) = it.next() {
        let entry = match entry {
            Ok(entry) => entry,
            // A link to nothing cannot be followed: it is kept as a link.
            Err(e) => match e.path().and_then(|p| Some((relative(p)?, link_text(p)?))) {
                Some((rel, target)) if e.depth() > 0 => {
                    if !ignore.is_match(&rel) {
                        links.insert(rel, target);
                    }
                    continue;
                }
                _ => return Err(std::io::Error::other(e.to_string())),
            },
        };
        let Some(rel) = relative(entry.path()) else {
            if entry.depth() == 0 {
                folders.push((String::new(), FileStat::of(&entry.metadata()?)));
            }
            continue;
        };
        if ignore.is_match(&rel) {
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if entry.path_is_symlink() {
            symlinked = true;
            let inside =
                std::fs::canonicalize(entry.path()).is_ok_and(|t| t.starts_with(&boundary));
            if !inside {
                if let Some(target) = link_text(entry.path()) {
                    links.insert(rel, target);
                }
                if entry.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
        }
        if entry.file_type().is_file() {
            files.push((rel, entry.into_path()));
        } else if entry.file_type().is_dir() {
            let meta = entry.metadata()?;
            crate::watch::read(entry.path(), &meta);
            folders.push((rel, FileStat::of(&meta)));
        }
    }
    let hashed = hash_files_in_parallel(files, |path| hasher.hash_file_keyed(path))?;
    let (entries, keys) = entries_and_keys(hashed);
    let root_digest = root_digest(&entries, &links);
    if let (Some(cache), false) = (&hasher.persistent, symlinked || !links.is_empty()) {
        let record = TreeRecord {
            root: root_digest,
            ignore: ignore_stat,
            folders,
            files: keys,
        };
        cache.record_tree(root, record);
    }
    Ok(HashedTree {
        root: format!("sha256:{}", hex::encode(root_digest)),
        entries,
        links,
    })
}

/// The tree at `root` from its cached nodes, if its folders and ignore
/// file have the `stat`s recorded: no folder is listed again. Its files
/// are looked up by `stat`; when each one is the entry the record names,
/// the root digest is the recorded one, else it is computed again.
fn reuse_tree(
    hasher: &FileHasher,
    root: &Path,
    ignore_file: &Path,
) -> std::io::Result<Option<HashedTree>> {
    let Some(cache) = &hasher.persistent else {
        return Ok(None);
    };
    let Some(record) = cache.tree(root) else {
        return Ok(None);
    };
    if FileStat::at(ignore_file) != record.ignore {
        return Ok(None);
    }
    for (rel, stat) in &record.folders {
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        match std::fs::metadata(&path) {
            Ok(meta) if FileStat::of(&meta) == *stat => crate::watch::read(&path, &meta),
            _ => return Ok(None),
        }
    }
    let files = record
        .files
        .iter()
        .map(|(rel, _)| (rel.clone(), root.join(rel)))
        .collect();
    let hashed = hash_files_in_parallel(files, |path| hasher.hash_file_keyed(path))?;
    let unchanged = hashed
        .iter()
        .zip(&record.files)
        .all(|((_, (_, key)), (_, recorded))| *key == (*recorded, true));
    let (entries, keys) = entries_and_keys(hashed);
    let links = BTreeMap::new();
    let root_digest = if unchanged {
        cache.tree_reused(root);
        record.root
    } else {
        let digest = root_digest(&entries, &links);
        let record = TreeRecord {
            root: digest,
            files: keys,
            ..record.clone()
        };
        cache.record_tree(root, record);
        digest
    };
    Ok(Some(HashedTree {
        root: format!("sha256:{}", hex::encode(root_digest)),
        entries,
        links,
    }))
}

/// A tree's hashed files by name, and the key of each one's entry in the
/// persistent cache (for the tree's record).
fn entries_and_keys(
    hashed: Vec<(String, Keyed)>,
) -> (BTreeMap<String, HashedFile>, Vec<(String, Key)>) {
    let mut keys = Vec::with_capacity(hashed.len());
    let mut entries = BTreeMap::new();
    for (rel, (file, (key, _))) in hashed {
        keys.push((rel.clone(), key));
        entries.insert(rel, file);
    }
    (entries, keys)
}

/// The Merkle root of a tree's files and links: SHA-256 over their lines
/// `<name>\0<x|->\0<sha256 hex>\n` and `<name>\0@\0<target>\n`, in
/// name order.
fn root_digest(
    entries: &BTreeMap<String, HashedFile>,
    links: &BTreeMap<String, String>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut files = entries.iter().peekable();
    let mut links = links.iter().peekable();
    // The two maps' names merged in order (a name is in one of them).
    loop {
        let file_first = match (files.peek(), links.peek()) {
            (Some((f, _)), Some((l, _))) => f < l,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if file_first {
            let (rel, f) = files.next().expect("peeked");
            h.update(rel.as_bytes());
            h.update(if f.executable { b"\0x\0" } else { b"\0-\0" });
            h.update(f.sha256.as_bytes());
        } else {
            let (rel, target) = links.next().expect("peeked");
            h.update(rel.as_bytes());
            h.update(b"\0@\0");
            h.update(target.as_bytes());
        }
        h.update(b"\n");
    }
    h.finalize().into()
}

/// The target text of the symlink at `path`, if it is one.
fn link_text(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.to_string_lossy().into_owned())
}

/// Hashes `files` with `hash` on every core (a large tree is mostly
/// reading and SHA-256, both per file), keeping their names and order.
fn hash_files_in_parallel<T: Clone + Send>(
    files: Vec<(String, PathBuf)>,
    hash: impl Fn(&Path) -> std::io::Result<T> + Sync,
) -> std::io::Result<Vec<(String, T)>> {
    let threads = crate::threads(files.len().div_ceil(8));
    if threads <= 1 {
        return files
            .into_iter()
            .map(|(rel, path)| Ok((rel, hash(&path)?)))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::io::Result<Vec<(usize, T)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, path)) = files.get(i) else {
                            return Ok(done);
                        };
                        done.push((i, hash(path)?));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("hash thread"))
            .collect()
    });
    let mut hashed: Vec<Option<T>> = vec![None; files.len()];
    for result in results {
        for (i, h) in result? {
            hashed[i] = Some(h);
        }
    }
    Ok(files
        .into_iter()
        .zip(hashed)
        .map(|((rel, _), h)| (rel, h.expect("every file hashed")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_ignores_mtime_and_honours_ignore_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("roles/x")).unwrap();
        std::fs::write(dir.path().join("roles/x/main.yml"), "a: 1\n").unwrap();
        std::fs::write(dir.path().join("site.yml"), "- hosts: all\n").unwrap();
        let h1 = hash_tree(&FileHasher::new(), dir.path(), dir.path()).unwrap();
        std::fs::write(dir.path().join("notes.tmp"), "scratch").unwrap();
        std::fs::write(dir.path().join(".imgformignore"), "*.tmp\n.imgformignore\n").unwrap();
        let h2 = hash_tree(&FileHasher::new(), dir.path(), dir.path()).unwrap();
        assert_eq!(h1.root, h2.root);
        std::fs::write(dir.path().join("roles/x/main.yml"), "a: 2\n").unwrap();
        let h3 = hash_tree(&FileHasher::new(), dir.path(), dir.path()).unwrap();
        assert_ne!(h1.root, h3.root);
        assert!(h3.entries.contains_key("roles/x/main.yml"));
    }

    #[test]
    fn a_link_out_of_the_boundary_is_hashed_as_a_link_never_by_its_target() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s3cret\n").unwrap();
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        std::fs::write(outside.path().join("dir/inner"), "x").unwrap();
        let project = tempfile::tempdir().unwrap();
        let tree = project.path().join("files");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("plain"), "p\n").unwrap();
        std::fs::write(project.path().join("shared"), "shared\n").unwrap();
        let secret = outside.path().join("secret");
        std::os::unix::fs::symlink(&secret, tree.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), tree.join("outdir")).unwrap();
        std::os::unix::fs::symlink("../shared", tree.join("in")).unwrap();
        std::os::unix::fs::symlink("nowhere", tree.join("dangling")).unwrap();

        let hashed = hash_tree(&FileHasher::new(), &tree, project.path()).unwrap();
        let names: Vec<&str> = hashed.entries.keys().map(String::as_str).collect();
        assert_eq!(names, ["in", "plain"], "inside links are followed");
        assert_eq!(hashed.links["out"], secret.to_string_lossy());
        assert_eq!(
            hashed.links["outdir"],
            outside.path().join("dir").to_string_lossy()
        );
        assert_eq!(hashed.links["dangling"], "nowhere");

        // The target's bytes do not count; where the link points does.
        std::fs::write(&secret, "changed\n").unwrap();
        let again = hash_tree(&FileHasher::new(), &tree, project.path()).unwrap();
        assert_eq!(hashed.root, again.root);
        std::fs::remove_file(tree.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tree.join("out")).unwrap();
        let moved = hash_tree(&FileHasher::new(), &tree, project.path()).unwrap();
        assert_ne!(hashed.root, moved.root);
    }

    /// `files/` in `dir`: `c`, `sub/b`, `sub/deeper/a`, and `.git/HEAD`
    /// (ignored).
    fn sample_tree(dir: &Path) -> PathBuf {
        let root = dir.join("files");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("sub/deeper/a"), "a").unwrap();
        std::fs::write(root.join("sub/b"), "b").unwrap();
        std::fs::write(root.join("c"), "c").unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref").unwrap();
        root
    }

    #[test]
    fn a_tree_is_watched_by_its_folders_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = sample_tree(dir.path());
        // (Recording is process-wide: other tests may add paths meanwhile.)
        crate::watch::start();
        hash_tree(&FileHasher::new(), &root, dir.path()).unwrap();
        let watched: std::collections::BTreeMap<_, _> = crate::watch::finish()
            .unwrap()
            .paths()
            .into_iter()
            .collect();
        // Folders (a file added or removed) and files (one changed), the
        // ignore file (created later), nothing ignored.
        for path in [
            root.clone(),
            root.join(".imgformignore"),
            root.join("sub"),
            root.join("sub/deeper"),
            root.join("sub/deeper/a"),
            root.join("sub/b"),
            root.join("c"),
        ] {
            assert!(watched.contains_key(&path), "{path:?}: {watched:?}");
        }
        assert!(!watched.keys().any(|p| p.starts_with(root.join(".git"))));
    }

    /// A run with the persistent cache of `dir`, written as if a few
    /// seconds had passed (so nothing in it is racy).
    fn hash_cached(dir: &Path, root: &Path) -> Arc<HashedTree> {
        let hasher = FileHasher::with_cache(HashCache::open(dir));
        let tree = hash_tree(&hasher, root, dir).unwrap();
        hasher.save_cache();
        settle(dir);
        tree
    }

    fn settle(dir: &Path) {
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3);
        std::fs::File::options()
            .write(true)
            .open(dir.join(super::super::cache::CACHE_FILE))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }

    #[test]
    fn a_tree_reuses_its_cached_nodes_until_something_in_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = sample_tree(dir.path());
        let fresh = || hash_tree(&FileHasher::new(), &root, dir.path()).unwrap();
        let same = |a: &HashedTree, b: &HashedTree| {
            let names = |t: &HashedTree| -> Vec<(String, String)> {
                t.entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.describe()))
                    .collect()
            };
            assert_eq!(a.root, b.root);
            assert_eq!(names(a), names(b));
        };
        let first = hash_cached(dir.path(), &root);
        same(&first, &fresh());
        let cache_file = dir.path().join(super::super::cache::CACHE_FILE);
        let text = std::fs::read_to_string(&cache_file).unwrap();
        let root_hex = first.root.trim_start_matches("sha256:");
        let tree_line = format!("tree\t{root_hex}\t-\t3\t3\t{}", root.display());
        assert!(text.contains(&tree_line), "{text}");
        for line in ["\t\n", "\tsub\n", "\tsub/deeper\n", "\tc\n", "\tsub/b\n"] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
        assert!(!text.contains(".git"), "{text}");

        // Reused as recorded: a forged root digest shows through.
        let forged = text.replace(&tree_line, &tree_line.replace(root_hex, &"0".repeat(64)));
        std::fs::write(&cache_file, forged).unwrap();
        settle(dir.path());
        assert_eq!(
            hash_cached(dir.path(), &root).root,
            format!("sha256:{}", "0".repeat(64))
        );
        std::fs::write(&cache_file, &text).unwrap();
        settle(dir.path());
        same(&hash_cached(dir.path(), &root), &first);

        // A file edited in place (no folder changes): hashed again, and
        // the root computed again.
        std::fs::write(root.join("sub/b"), "B").unwrap();
        let edited = hash_cached(dir.path(), &root);
        assert_ne!(edited.root, first.root);
        same(&edited, &fresh());
        same(&hash_cached(dir.path(), &root), &edited);
        // A file added deep down: its folder's `stat` changed.
        std::fs::write(root.join("sub/deeper/new"), "n").unwrap();
        let added = hash_cached(dir.path(), &root);
        assert!(added.entries.contains_key("sub/deeper/new"));
        same(&added, &fresh());
        // The ignore file, written: honoured.
        std::fs::write(root.join(".imgformignore"), "new\n.imgformignore\n").unwrap();
        let ignoring = hash_cached(dir.path(), &root);
        assert!(!ignoring.entries.contains_key("sub/deeper/new"));
        same(&ignoring, &fresh());
        same(&ignoring, &edited);
        // A tree with a link in it is not recorded (hashed in full).
        std::os::unix::fs::symlink("c", root.join("sub/link")).unwrap();
        same(&hash_cached(dir.path(), &root), &fresh());
        let text = std::fs::read_to_string(&cache_file).unwrap();
        assert!(!text.contains("tree\t"), "{text}");
    }
}
