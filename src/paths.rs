//! Paths as imgform shows and hashes them: relative to the definition dir,
//! with forward slashes, so that a moved checkout keeps its addresses.

use std::path::{Component, Path, PathBuf};

/// `path` (absolute) relative to `dir`, with `..` where needed, forward
/// slashes; `.` for the dir itself.
pub fn relative_to(dir: &Path, path: &Path) -> String {
    let a: Vec<_> = dir.components().collect();
    let b: Vec<_> = path.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_owned(), a.len() - common).collect();
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// `path` with `.` and `a/..` resolved by the names alone (no symlink is
/// followed: `..` after a link goes back up the name, as in a shell's `cd`).
pub fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A path as it appears in a manifest: relative to the definition dir when
/// inside it, without `./`.
pub fn relativize_path(path: &str, def_dir: &Path) -> String {
    let p = Path::new(path);
    let rel = if p.is_absolute() {
        p.strip_prefix(def_dir)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| p.to_path_buf())
    } else {
        p.to_path_buf()
    };
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::CurDir => {}
            other => out.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    if out.is_empty() {
        ".".to_owned()
    } else {
        out.join("/")
    }
}

/// The local path a Packer-style location names: `file://PATH` is PATH, a
/// plain path is itself; a remote URL (`https://…`, any other `scheme://`)
/// names no local file.
pub fn local_path_of(location: &str) -> Option<&str> {
    if let Some(path) = location.strip_prefix("file://") {
        return Some(path);
    }
    if location.contains("://") {
        return None;
    }
    Some(location)
}

/// The file of a local artifact whose id (as a state records it) is
/// `id`: a relative path inside the definition dir, in a folder (the image's
/// output folder), named `<image>-<12 hex of its content address>.<format>`.
/// Anything else — an absolute path, `..`, a symlinked folder leading out, a
/// name that is no artifact's — is refused with why: a state (hand-edited, or
/// written by whoever can write its bucket) must never make imgform read or
/// delete another file.
pub fn local_artifact(def_dir: &Path, id: &str) -> Result<std::path::PathBuf, String> {
    let refuse = |why: &str| {
        Err(format!(
            "the state names `{id}` as a local artifact, which {why}; imgform only creates and deletes artifacts in their image's output folder"
        ))
    };
    let path = Path::new(id);
    if path.is_absolute() {
        return refuse("is an absolute path");
    }
    let parts: Vec<Component> = path.components().collect();
    if parts.iter().any(|c| !matches!(c, Component::Normal(_))) {
        return refuse("leaves its folder (`..` or `.`)");
    }
    if parts.len() < 2 {
        return refuse("is not in an output folder");
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let named_by_content = name
        .rsplit_once('.')
        .and_then(|(stem, ext)| {
            let hex = stem.rsplit_once('-')?.1;
            Some(
                hex.len() == 12
                    && hex.chars().all(|c| c.is_ascii_hexdigit())
                    && matches!(
                        ext,
                        "qcow2" | "raw" | "tar" | "img" | "vmdk" | "vdi" | "vhdx"
                    ),
            )
        })
        .unwrap_or(false);
    if !named_by_content {
        return refuse("is not named as an artifact (`<image>-<12 hex>.<format>`)");
    }
    let full = def_dir.join(path);
    if let (Ok(dir), Ok(parent)) = (
        def_dir.canonicalize(),
        full.parent()
            .expect("at least two components")
            .canonicalize(),
    ) {
        if !parent.starts_with(&dir) {
            return refuse("is in a folder that leads out of the definition dir");
        }
    }
    Ok(full)
}

/// Refresh of a local artifact that exists: whether its bytes still hash to
/// the sha256 its build recorded (`attributes.sha256`). `None` when they do,
/// or when nothing was recorded to compare with. Reads the whole file.
pub fn local_artifact_changed(
    def_dir: &Path,
    artifact: &crate::state::Artifact,
) -> Result<Option<crate::state::ArtifactChange>, String> {
    use sha2::Digest;
    use std::io::Read;
    let Some(recorded) = artifact.attributes.get("sha256").and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    let path = local_artifact(def_dir, &artifact.id)?;
    // Refresh passes every output folder: copies killed runs left there go.
    if let Some(dir) = path.parent() {
        sweep_stale_temp_files_once(dir);
    }
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        // Gone: `exists` says so, this is not a change.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let found = hex::encode(hasher.finalize());
    let recorded = recorded.trim_start_matches("sha256:");
    Ok((found != recorded).then(|| crate::state::ArtifactChange {
        recorded: format!("sha256:{recorded}"),
        found: format!("sha256:{found}"),
    }))
}

/// The same, off the async runtime's threads (an image is large).
pub async fn local_artifact_changed_async(
    def_dir: &Path,
    artifact: &crate::state::Artifact,
) -> Result<Option<crate::state::ArtifactChange>, String> {
    let (def_dir, artifact) = (def_dir.to_path_buf(), artifact.clone());
    let id = artifact.id.clone();
    tokio::task::spawn_blocking(move || local_artifact_changed(&def_dir, &artifact))
        .await
        .map_err(|e| format!("hashing {id}: {e}"))?
}

/// The target text of `path` when it is a symlink that leads out of
/// `boundary` (its resolved target is not below it) or nowhere; `None` for
/// anything else. Such a link is hashed and copied as a link, never read
/// through: the bytes it points at are not the project's.
pub fn link_leading_out(path: &Path, boundary: &Path) -> Option<String> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(path).ok()?;
    let boundary = std::fs::canonicalize(boundary).unwrap_or_else(|_| boundary.to_path_buf());
    let inside = std::fs::canonicalize(path).is_ok_and(|t| t.starts_with(&boundary));
    (!inside).then(|| target.to_string_lossy().into_owned())
}

/// What `apply` writes beside a local artifact: its SBOM.
pub const SBOM_SUFFIX: &str = ".cdx.json";

/// Deletes the local artifact `id` (checked by [`local_artifact`]), the
/// files its builder keeps beside it (`companions`, suffixes of its name)
/// and the SBOM `apply` wrote beside it. Files already gone are no error.
pub fn remove_local_artifact(def_dir: &Path, id: &str, companions: &[&str]) -> Result<(), String> {
    let path = local_artifact(def_dir, id)?;
    let beside = companions.iter().chain(&[SBOM_SUFFIX]);
    let all = std::iter::once(path.clone()).chain(
        beside.map(|suffix| std::path::PathBuf::from(format!("{}{suffix}", path.display()))),
    );
    for file in all {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("deleting {}: {e}", file.display())),
        }
    }
    Ok(())
}

/// A new private temporary dir under `parent`, mode 0700, named
/// `<prefix>-<pid>-<random>` so that [`sweep_stale_temp_dirs`] can tell a
/// dead run's dir from a live one's. Secrets (inline scripts with their
/// values, cloud-init seeds, keys) go in such dirs only.
pub fn private_temp_dir(parent: &Path, prefix: &str) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::create_dir_all(parent)?;
    let dir = parent.join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// A [`private_temp_dir`] under the system temp dir, removed (with what is
/// in it) when dropped: on success, error and unwinding alike.
pub struct PrivateTempDir(std::path::PathBuf);

impl PrivateTempDir {
    /// A new one named `<prefix>-<pid>-<random>`.
    pub fn new(prefix: &str) -> std::io::Result<PrivateTempDir> {
        private_temp_dir(&std::env::temp_dir(), prefix).map(PrivateTempDir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Gives the dir up: it is no longer removed on drop.
    pub fn keep(self) -> std::path::PathBuf {
        let me = std::mem::ManuallyDrop::new(self);
        me.0.clone()
    }
}

impl Drop for PrivateTempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the temporary dirs (see [`private_temp_dir`]) of imgform runs
/// that are gone — killed with SIGKILL, or a machine that lost power — from
/// `parent`, and returns them. A dir with anything mounted under it is left
/// alone (it is never deleted through a mount point) and returned as kept.
pub fn sweep_stale_temp_dirs(parent: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    use std::os::unix::fs::MetadataExt;
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return (removed, kept);
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_pid(&name) else {
            continue;
        };
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || Some(meta.uid()) != uid || pid_is_running(pid) {
            continue;
        }
        if mounted_below(&mounts, &path) {
            kept.push(path);
        } else if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    (removed, kept)
}

/// Removes this process's own temporary dirs under `parent` (an
/// interrupted run, on its way out), except one with anything mounted
/// below it.
pub fn remove_own_temp_dirs(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if stale_pid(&name) == Some(std::process::id()) && is_dir && !mounted_below(&mounts, &path)
        {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn pid_is_running(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether `/proc/self/mountinfo` (`mounts`) has a mount point below `dir`.
fn mounted_below(mounts: &str, dir: &Path) -> bool {
    let prefix = format!("{}/", dir.display());
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.starts_with(&prefix))
}

/// How long a temporary file of an atomic write (see [`temp_path_for`])
/// may go unmodified before it is stale even though a process with its
/// writer's pid runs (the pid reused, or another pid namespace): no write
/// pauses that long.
pub const STALE_TEMP_FILE_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The temporary name an atomic write of `path` uses before renaming it
/// into place: `.<name>.imgform-<pid>-<32 hex>.part` in the same folder, so
/// that [`sweep_stale_temp_files`] can tell a dead writer's file from a
/// live one's.
pub fn temp_path_for(path: &Path) -> std::path::PathBuf {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    dir.join(format!(
        ".{name}.imgform-{}-{}.part",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// The writer's pid of a [`temp_path_for`] name; `Some(None)` for the
/// pid-less `.imgform-XXXXXX.part` of earlier versions.
fn temp_file_writer(name: &str) -> Option<Option<u32>> {
    let stem = name.strip_suffix(".part")?;
    if let Some(random) = stem.strip_prefix(".imgform-") {
        if random.len() == 6 && random.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Some(None);
        }
    }
    let (head, tail) = stem.rsplit_once(".imgform-")?;
    if !head.starts_with('.') || head.len() < 2 {
        return None;
    }
    let (pid, random) = tail.split_once('-')?;
    if random.len() != 32 || !random.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok().map(Some)
}

/// Removes, from `dir` (not below it), the temporary files of atomic writes
/// (see [`temp_path_for`]) whose writer is gone — killed during an artifact,
/// state or object write — or that nobody has written to for
/// [`STALE_TEMP_FILE_AGE`]; returns them. A file a live run is writing is
/// never touched.
pub fn sweep_stale_temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(writer) = temp_file_writer(&name) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMP_FILE_AGE);
        let gone = writer.is_some_and(|pid| !pid_is_running(pid));
        if (gone || old) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// [`sweep_stale_temp_files`] once per folder per process (many images
/// share an output folder).
pub fn sweep_stale_temp_files_once(dir: &Path) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SWEPT: Mutex<Option<HashSet<std::path::PathBuf>>> = Mutex::new(None);
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if swept
        .get_or_insert_with(HashSet::new)
        .insert(dir.to_path_buf())
    {
        drop(swept);
        sweep_stale_temp_files(dir);
    }
}

/// The pid in `imgform-…-<pid>-<32 hex>`, the name [`private_temp_dir`] gives.
fn stale_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("imgform-")?;
    let (head, random) = rest.rsplit_once('-')?;
    if random.len() != 32 || !random.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    head.rsplit_once('-')?.1.parse().ok()
}

/// Replaces `path` with `bytes` so that readers see the old or the new
/// contents, also after a crash: a temporary file in the same dir (see
/// [`temp_path_for`]), fsynced, renamed over `path`, then the dir fsynced.
/// Stale temp files of earlier writes into that dir are swept first.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // Temp files of writes into this folder that a kill cut short go first.
    sweep_stale_temp_files_once(&dir);
    let temp = temp_path_for(path);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    std::fs::File::open(&dir).and_then(|d| d.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative() {
        let dir = Path::new("/home/u/defs");
        assert_eq!(relativize_path("./scripts/a.sh", dir), "scripts/a.sh");
        assert_eq!(
            relativize_path("/home/u/defs/scripts/a.sh", dir),
            "scripts/a.sh"
        );
        assert_eq!(relative_to(dir, Path::new("/home/u/x")), "../x");
        assert_eq!(relative_to(dir, dir), ".");
    }

    #[test]
    fn locations_name_local_files_or_none() {
        assert_eq!(
            local_path_of("file:///srv/base.qcow2"),
            Some("/srv/base.qcow2")
        );
        assert_eq!(local_path_of("file://base.qcow2"), Some("base.qcow2"));
        assert_eq!(
            local_path_of("images/base.qcow2"),
            Some("images/base.qcow2")
        );
        assert_eq!(local_path_of("https://example.org/base.iso"), None);
    }

    #[test]
    fn local_artifacts_stay_in_their_folder() {
        let dir = std::env::temp_dir();
        assert!(local_artifact(&dir, "output/golden-chroot-base-0123456789ab.qcow2").is_ok());
        for bad in [
            "../../somewhere/x-0123456789ab.qcow2",
            "/etc/passwd",
            "output/../precious-0123456789ab.qcow2",
            "x-0123456789ab.qcow2",
            "output/precious.txt",
        ] {
            let err = local_artifact(&dir, bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn temp_files_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("golden-0123456789ab.qcow2");
        let live = temp_path_for(&target);
        assert_eq!(
            temp_file_writer(&live.file_name().unwrap().to_string_lossy()),
            Some(Some(std::process::id()))
        );
        let dead = dir.path().join(format!(
            ".golden-0123456789ab.qcow2.imgform-999999999-{}.part",
            "b".repeat(32)
        ));
        let legacy = dir.path().join(".imgform-Ab12Cd.part");
        let other = dir.path().join("notes.part");
        for f in [&live, &dead, &legacy, &other, &target] {
            std::fs::write(f, "x").unwrap();
        }
        // The pid-less file of an older version goes only once it is old.
        assert_eq!(sweep_stale_temp_files(dir.path()), vec![dead.clone()]);
        let old = std::time::SystemTime::now() - STALE_TEMP_FILE_AGE * 2;
        std::fs::File::options()
            .write(true)
            .open(&legacy)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(sweep_stale_temp_files(dir.path()), vec![legacy.clone()]);
        assert!(live.exists() && other.exists() && target.exists());
        // write_atomically leaves nothing beside its file.
        write_atomically(&target, b"new").unwrap();
        std::fs::remove_file(&live).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["golden-0123456789ab.qcow2", "notes.part"]);
    }

    #[test]
    fn links_leading_out_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::write(dir.path().join("plain"), "p").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("plain", dir.path().join("in")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
        let out = link_leading_out(&dir.path().join("out"), dir.path());
        assert_eq!(
            out.as_deref(),
            Some(&*outside.path().join("secret").to_string_lossy())
        );
        assert_eq!(link_leading_out(&dir.path().join("in"), dir.path()), None);
        assert_eq!(
            link_leading_out(&dir.path().join("plain"), dir.path()),
            None
        );
        assert_eq!(
            link_leading_out(&dir.path().join("dangling"), dir.path()).as_deref(),
            Some("nowhere")
        );
    }

    #[test]
    fn private_dirs_are_0700_and_swept_once_their_run_is_gone() {
        use std::os::unix::fs::PermissionsExt;
        let parent = std::env::temp_dir().join(format!(
            "imgform-sweep-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mine = private_temp_dir(&parent, "imgform-x").unwrap();
        let mode = std::fs::metadata(&mine).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // A dir of a pid that cannot be running (beyond pid_max).
        let dead = parent.join(format!("imgform-x-999999999-{}", "a".repeat(32)));
        std::fs::create_dir_all(dead.join("inner")).unwrap();
        std::fs::write(dead.join("inner/inline.sh"), "secret").unwrap();
        let other = parent.join("imgform-not-ours");
        std::fs::create_dir_all(&other).unwrap();
        let (removed, kept) = sweep_stale_temp_dirs(&parent);
        assert_eq!(removed, std::slice::from_ref(&dead));
        assert!(kept.is_empty());
        assert!(mine.exists() && other.exists() && !dead.exists());
        std::fs::remove_dir_all(&parent).unwrap();
        assert_eq!(
            stale_pid(&format!(
                "imgform-chroot-golden-chroot-base-42-{}",
                "0".repeat(32)
            )),
            Some(42)
        );
        assert_eq!(stale_pid("imgform-accel-abc"), None);
    }
}
