//! The files one image's post-processors write in a run, so that a failure
//! leaves nothing behind: a file that existed is moved aside (renamed in
//! its folder) before it is replaced and put back on roll-back; a new file
//! and every folder created for it are removed. Files are written to a
//! temporary file in the target's folder and renamed over it, so a reader
//! sees the old bytes or the new ones, never a part.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One replaced or created file: its path and where its old bytes wait.
struct Entry {
    path: PathBuf,
    aside: Option<PathBuf>,
    /// Removed again by a later step (`keep_input_artifact = false`).
    removed: bool,
}

#[derive(Default)]
pub struct Outputs {
    entries: Vec<Entry>,
    /// Folders created, parents first.
    dirs: Vec<PathBuf>,
}

/// A file being written: a temporary file beside its target.
pub struct Pending {
    pub file: File,
    temp: PathBuf,
    path: PathBuf,
}

impl Outputs {
    /// Starts writing `path`: creates its folder (remembering what it
    /// created) and a temporary file beside it.
    pub fn create(&mut self, path: &Path) -> std::io::Result<Pending> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.create_dir(&dir)?;
        // Named as every atomic write names its temporary file, so a killed
        // run's is swept like the others'.
        let temp = crate::paths::temp_path_for(path);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        Ok(Pending {
            file,
            temp,
            path: path.to_path_buf(),
        })
    }

    /// Finishes `pending`: syncs it and renames it over its target, the
    /// target's old bytes (if any) moved aside first.
    pub fn finish(&mut self, pending: Pending) -> std::io::Result<PathBuf> {
        let Pending {
            mut file,
            temp,
            path,
        } = pending;
        let done = (|| {
            file.flush()?;
            file.sync_all()?;
            drop(file);
            let touched = self.entries.iter().any(|e| e.path == path && !e.removed);
            let aside = if !touched && path.exists() {
                let aside = temp.with_extension("old");
                std::fs::rename(&path, &aside)?;
                Some(aside)
            } else {
                None
            };
            if let Err(e) = std::fs::rename(&temp, &path) {
                if let Some(aside) = &aside {
                    let _ = std::fs::rename(aside, &path);
                }
                return Err(e);
            }
            if !touched {
                self.entries.push(Entry {
                    path: path.clone(),
                    aside,
                    removed: false,
                });
            }
            Ok(path)
        })();
        if done.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        done
    }

    /// Drops a pending file (a failed step's).
    pub fn abandon(pending: Pending) {
        drop(pending.file);
        let _ = std::fs::remove_file(&pending.temp);
    }

    /// `path`'s current bytes, if it exists.
    pub fn read(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes an earlier step's artifact file (not kept): one written in
    /// this run goes at once; any other is moved aside, so a roll-back can
    /// put it back.
    pub fn remove(&mut self, path: &Path) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.path == path) {
            let _ = std::fs::remove_file(path);
            entry.removed = true;
            return;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let aside = path.with_file_name(format!(".{name}.{}.old", uuid::Uuid::new_v4().simple()));
        if std::fs::rename(path, &aside).is_ok() {
            self.entries.push(Entry {
                path: path.to_path_buf(),
                aside: Some(aside),
                removed: true,
            });
        }
    }

    /// Success: the old bytes moved aside are deleted; returns the files
    /// written (and not removed again).
    pub fn commit(self) -> Vec<PathBuf> {
        let mut written = Vec::new();
        for entry in self.entries {
            if let Some(aside) = &entry.aside {
                let _ = std::fs::remove_file(aside);
            }
            if !entry.removed {
                written.push(entry.path);
            }
        }
        written
    }

    /// Failure: every file written is removed or put back as it was, and
    /// the folders created are removed (when empty).
    pub fn roll_back(self) {
        for entry in self.entries.iter().rev() {
            let _ = std::fs::remove_file(&entry.path);
            if let Some(aside) = &entry.aside {
                let _ = std::fs::rename(aside, &entry.path);
            }
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }

    fn create_dir(&mut self, dir: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dir(parent)?;
        }
        std::fs::create_dir(dir)?;
        self.dirs.push(dir.to_path_buf());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roll_back_restores_what_was_there_and_removes_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("sums.txt");
        std::fs::write(&old, "old\n").unwrap();
        let new = tmp.path().join("a/b/out.tar");
        let mut outputs = Outputs::default();
        for (path, bytes) in [(&old, "new\n"), (&new, "archive")] {
            let mut pending = outputs.create(path).unwrap();
            pending.file.write_all(bytes.as_bytes()).unwrap();
            outputs.finish(pending).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "new\n");
        outputs.roll_back();
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "old\n");
        assert!(!tmp.path().join("a").exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the old file is left: {left:?}");
    }

    #[test]
    fn a_commit_keeps_the_new_bytes_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sums.txt");
        std::fs::write(&path, "old\n").unwrap();
        let mut outputs = Outputs::default();
        let mut pending = outputs.create(&path).unwrap();
        pending.file.write_all(b"new\n").unwrap();
        outputs.finish(pending).unwrap();
        assert_eq!(outputs.commit(), vec![path.clone()]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
