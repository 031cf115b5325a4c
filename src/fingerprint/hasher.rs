//! File and directory hashing with a per-run cache.
//!
//! A file is hashed by its bytes (never its mtime or owner). A directory is
//! hashed as a Merkle tree: the root is SHA-256 over the sorted lines
//! `<relative name>\0<exec bit>\0<sha256 hex>\n` of every regular file below
//! it, skipping what `.imgformignore` (in the directory's root) and the
//! built-in ignores (`.git`, `.imgform`, `__pycache__`, `*.retry`) exclude.
//! Symlinks are followed for files and listed by target for directories.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

/// Files at most this large that are valid UTF-8 are kept as text inputs
/// (for diffs in plans).
pub const TEXT_INPUT_LIMIT: u64 = 256 * 1024;

#[derive(Debug, Clone)]
pub struct HashedFile {
    pub sha256: String,
    pub executable: bool,
    /// The bytes, when the file is small UTF-8 text.
    pub text: Option<Arc<Vec<u8>>>,
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
}

/// Hashes files once per run, however many images read them.
#[derive(Debug, Default)]
pub struct FileHasher {
    cache: Mutex<HashMap<PathBuf, HashedFile>>,
}

impl FileHasher {
    pub fn new() -> FileHasher {
        FileHasher::default()
    }

    pub fn cached(&self, path: &Path) -> Option<HashedFile> {
        self.cache.lock().expect("hash cache").get(path).cloned()
    }

    pub fn hash_file(&self, path: &Path) -> std::io::Result<HashedFile> {
        if let Some(hit) = self.cached(path) {
            return Ok(hit);
        }
        let mut file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(std::io::Error::other("is a directory"));
        }
        let executable = meta.permissions().mode() & 0o111 != 0;
        let (sha256, text) = if meta.len() <= TEXT_INPUT_LIMIT {
            // Small files (scripts, playbooks): one exact-size read.
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut bytes)?;
            let sha = hex::encode(Sha256::digest(&bytes));
            let is_text = !bytes.contains(&0) && std::str::from_utf8(&bytes).is_ok();
            (sha, is_text.then(|| Arc::new(bytes)))
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
            (hex::encode(hasher.finalize()), None)
        };
        let hashed = HashedFile {
            sha256,
            executable,
            text,
        };
        self.cache
            .lock()
            .expect("hash cache")
            .insert(path.to_path_buf(), hashed.clone());
        Ok(hashed)
    }

    /// Records a file already hashed elsewhere (by a function such as
    /// `file()`), so its text is available for diffs.
    pub fn remember(&self, path: &Path, bytes: Vec<u8>) {
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let text = (bytes.len() as u64 <= TEXT_INPUT_LIMIT
            && std::str::from_utf8(&bytes).is_ok()
            && !bytes.contains(&0))
        .then(|| Arc::new(bytes));
        self.cache.lock().expect("hash cache").insert(
            path.to_path_buf(),
            HashedFile {
                sha256,
                executable: false,
                text,
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

/// Hashes a directory tree. `extra_ignore` adds patterns (relative).
pub fn hash_tree(
    hasher: &FileHasher,
    root: &Path,
    extra_ignore: Option<&GlobSet>,
) -> std::io::Result<HashedTree> {
    let ignore = ignore_set(root);
    let mut entries = BTreeMap::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name();
    let mut it = walker.into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.map_err(|e| std::io::Error::other(e.to_string()))?;
        let rel = match entry.path().strip_prefix(root) {
            Ok(r) if !r.as_os_str().is_empty() => r.to_string_lossy().replace('\\', "/"),
            _ => continue,
        };
        if ignore.is_match(&rel) || extra_ignore.is_some_and(|g| g.is_match(&rel)) {
            if entry.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        if entry.file_type().is_file() {
            entries.insert(rel, hasher.hash_file(entry.path())?);
        }
    }
    let mut h = Sha256::new();
    for (rel, f) in &entries {
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(if f.executable { b"x" } else { b"-" });
        h.update([0]);
        h.update(f.sha256.as_bytes());
        h.update(b"\n");
    }
    Ok(HashedTree {
        root: format!("sha256:{}", hex::encode(h.finalize())),
        entries,
    })
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
        let h1 = hash_tree(&FileHasher::new(), dir.path(), None).unwrap();
        std::fs::write(dir.path().join("notes.tmp"), "scratch").unwrap();
        std::fs::write(dir.path().join(".imgformignore"), "*.tmp\n.imgformignore\n").unwrap();
        let h2 = hash_tree(&FileHasher::new(), dir.path(), None).unwrap();
        assert_eq!(h1.root, h2.root);
        std::fs::write(dir.path().join("roles/x/main.yml"), "a: 2\n").unwrap();
        let h3 = hash_tree(&FileHasher::new(), dir.path(), None).unwrap();
        assert_ne!(h1.root, h3.root);
        assert!(h3.entries.contains_key("roles/x/main.yml"));
    }
}
