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
//! not read at all (see [`super::cache`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::cache::HashCache;

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

/// Hashes files once per run, however many images read them, and (with a
/// [`HashCache`]) not at all when their `stat` says they did not change
/// since an earlier run.
#[derive(Debug, Default)]
pub struct FileHasher {
    cache: Mutex<HashMap<PathBuf, HashedFile>>,
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
            cache: Mutex::default(),
            persistent: Some(cache),
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
    }

    pub fn cached(&self, path: &Path) -> Option<HashedFile> {
        self.cache.lock().expect("hash cache").get(path).cloned()
    }

    pub fn hash_file(&self, path: &Path) -> std::io::Result<HashedFile> {
        if let Some(hit) = self.cached(path) {
            return Ok(hit);
        }
        // With a persistent cache, an unchanged file costs one `stat`.
        if let Some(cache) = &self.persistent {
            let meta = std::fs::metadata(path)?;
            if meta.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
            if let Some(hit) = cache.lookup(&meta) {
                crate::watch::read(path, &meta);
                self.cache
                    .lock()
                    .expect("hash cache")
                    .insert(path.to_path_buf(), hit.clone());
                return Ok(hit);
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
        self.cache
            .lock()
            .expect("hash cache")
            .insert(path.to_path_buf(), hashed.clone());
        Ok(hashed)
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

/// Hashes a directory tree. `extra_ignore` adds patterns (relative);
/// `boundary` is the folder symlinks may lead into and still be followed
/// (see the module doc).
pub fn hash_tree(
    hasher: &FileHasher,
    root: &Path,
    extra_ignore: Option<&GlobSet>,
    boundary: &Path,
) -> std::io::Result<HashedTree> {
    let ignore = ignore_set(root);
    // For the plan cache: the folders' listings (a file added or removed)
    // and the ignore file; the files are watched as they are hashed.
    crate::watch::paths([root, &root.join(".imgformignore")]);
    let boundary = std::fs::canonicalize(boundary).unwrap_or_else(|_| boundary.to_path_buf());
    let relative = |path: &Path| match path.strip_prefix(root) {
        Ok(r) if !r.as_os_str().is_empty() => Some(r.to_string_lossy().replace('\\', "/")),
        _ => None,
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
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
                    if !ignore.is_match(&rel) && !extra_ignore.is_some_and(|g| g.is_match(&rel)) {
                        links.insert(rel, target);
                    }
                    continue;
                }
                _ => return Err(std::io::Error::other(e.to_string())),
            },
        };
        let Some(rel) = relative(entry.path()) else {
            continue;
        };
        if ignore.is_match(&rel) || extra_ignore.is_some_and(|g| g.is_match(&rel)) {
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if entry.path_is_symlink() {
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
            crate::watch::path(entry.path());
        }
    }
    let entries: BTreeMap<String, HashedFile> = hash_files_in_parallel(hasher, files)?;
    let mut lines: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (rel, f) in &entries {
        let mode = if f.executable { "x" } else { "-" };
        lines.insert(rel, format!("{mode}\0{}", f.sha256).into_bytes());
    }
    for (rel, target) in &links {
        lines.insert(rel, format!("@\0{target}").into_bytes());
    }
    let mut h = Sha256::new();
    for (rel, line) in lines {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(line);
        h.update(b"\n");
    }
    Ok(HashedTree {
        root: format!("sha256:{}", hex::encode(h.finalize())),
        entries,
        links,
    })
}

/// The target text of the symlink at `path`, if it is one.
fn link_text(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.to_string_lossy().into_owned())
}

/// Hashes `files` on every core (a large tree is mostly reading and
/// SHA-256, both per file), keeping their names.
fn hash_files_in_parallel(
    hasher: &FileHasher,
    files: Vec<(String, PathBuf)>,
) -> std::io::Result<BTreeMap<String, HashedFile>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().div_ceil(8).max(1));
    if threads <= 1 {
        return files
            .into_iter()
            .map(|(rel, path)| Ok((rel, hasher.hash_file(&path)?)))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::io::Result<Vec<(usize, HashedFile)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((_, path)) = files.get(i) else {
                            return Ok(done);
                        };
                        done.push((i, hasher.hash_file(path)?));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("hash thread"))
            .collect()
    });
    let mut hashed: Vec<Option<HashedFile>> = vec![None; files.len()];
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
        let h1 = hash_tree(&FileHasher::new(), dir.path(), None, dir.path()).unwrap();
        std::fs::write(dir.path().join("notes.tmp"), "scratch").unwrap();
        std::fs::write(dir.path().join(".imgformignore"), "*.tmp\n.imgformignore\n").unwrap();
        let h2 = hash_tree(&FileHasher::new(), dir.path(), None, dir.path()).unwrap();
        assert_eq!(h1.root, h2.root);
        std::fs::write(dir.path().join("roles/x/main.yml"), "a: 2\n").unwrap();
        let h3 = hash_tree(&FileHasher::new(), dir.path(), None, dir.path()).unwrap();
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

        let hashed = hash_tree(&FileHasher::new(), &tree, None, project.path()).unwrap();
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
        let again = hash_tree(&FileHasher::new(), &tree, None, project.path()).unwrap();
        assert_eq!(hashed.root, again.root);
        std::fs::remove_file(tree.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tree.join("out")).unwrap();
        let moved = hash_tree(&FileHasher::new(), &tree, None, project.path()).unwrap();
        assert_ne!(hashed.root, moved.root);
    }

    #[test]
    fn a_tree_is_watched_by_its_folders_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("files");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("sub/deeper/a"), "a").unwrap();
        std::fs::write(root.join("b"), "b").unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref").unwrap();
        // (Recording is process-wide: other tests may add paths meanwhile.)
        crate::watch::start();
        hash_tree(&FileHasher::new(), &root, None, dir.path()).unwrap();
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
            root.join("b"),
        ] {
            assert!(watched.contains_key(&path), "{path:?}: {watched:?}");
        }
        assert!(!watched.keys().any(|p| p.starts_with(root.join(".git"))));
    }
}
