//! Paths as imgform shows and hashes them: relative to the definition dir,
//! with forward slashes, so that a moved checkout keeps its addresses.

use std::path::{Component, Path};

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
}
