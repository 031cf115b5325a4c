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
}
