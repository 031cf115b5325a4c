//! The files a `qemu` build hands to QEMU: the base (downloaded or local,
//! checked against `iso_checksum`), the output disk made from it, and the
//! CD (`cd_files`/`cd_content`, an ISO 9660 image via `xorriso`) and floppy
//! (`floppy_files`/`floppy_content`, a FAT image via `mkfs.vfat` and
//! mtools) it boots with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::checksum::{self, ChecksumError, Expected};
use crate::build::BuildError;

pub(super) fn fail(message: impl Into<String>) -> BuildError {
    BuildError::failed(message)
}

/// Runs a tool to completion; its stdout, or a failure with its stderr.
pub(super) async fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, BuildError> {
    let child = {
        let _guard = crate::provision::spawn_guard();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    };
    let out = child
        .map_err(|e| fail(format!("{what}: cannot start: {e}")))?
        .wait_with_output()
        .await
        .map_err(|e| fail(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(fail(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

pub(super) use crate::drivers::vm::image::{backing_file, disk_format};

/// Where a source location's bytes are on this machine: a local file as it
/// is, a remote one downloaded (with `curl`) into imgform's download cache.
/// Each of `sources` is tried in turn (Packer's `iso_urls`).
pub(super) async fn fetch_base(
    spec: &crate::spec::ImageSpec,
    sources: &[String],
    expected: &Expected,
    events: &crate::build::events::EventSink,
) -> Result<PathBuf, BuildError> {
    let def_dir = spec.def_dir.as_path();
    // A download already cached wins over asking the first mirror again.
    let mut ordered: Vec<&String> = sources.iter().collect();
    ordered.sort_by_key(|s| {
        let cached =
            crate::paths::local_path_of(s).is_none() && cache_path(s).is_some_and(|c| c.is_file());
        !cached
    });
    let mut errors = Vec::new();
    for source in ordered {
        let got = match crate::paths::local_path_of(source) {
            Some(path) => {
                let full = def_dir.join(path);
                if full.is_file() {
                    Ok(full)
                } else {
                    Err(format!("{source}: no such file"))
                }
            }
            None => download(source, events).await,
        };
        match got {
            Ok(path) => {
                // A checksum that does not hold is the template's error:
                // said at the place it is written.
                let at = crate::drivers::kind::loc_of(spec, "iso_checksum")
                    .map(|l| format!("{l}: "))
                    .unwrap_or_default();
                let checked = verify(def_dir, source, &path, expected, events).await;
                if checked.is_err() && crate::paths::local_path_of(source).is_none() {
                    // A bad download must not be trusted from the cache next time.
                    let _ = std::fs::remove_file(&path);
                }
                checked.map_err(|e| match e {
                    BuildError::Failed { message, hint } => BuildError::Failed {
                        message: format!("{at}{message}"),
                        hint,
                    },
                    other => other,
                })?;
                return Ok(path);
            }
            Err(e) => errors.push(e),
        }
    }
    Err(
        fail(format!("cannot get the base image: {}", errors.join("; "))).with_hint(
            "check iso_url (a path relative to the definition dir, file://…, or http(s)://…)",
        ),
    )
}

/// `~/.cache/imgform/downloads/<sha256 of the URL>-<file name>`.
fn cache_path(url: &str) -> Option<PathBuf> {
    use sha2::Digest;
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let key = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    let name = file_name(url);
    Some(
        base.join("imgform")
            .join("downloads")
            .join(format!("{}-{name}", &key[..16])),
    )
}

/// The last path segment of a location, without a query.
fn file_name(location: &str) -> String {
    let path = location.split(['?', '#']).next().unwrap_or(location);
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

async fn download(url: &str, events: &crate::build::events::EventSink) -> Result<PathBuf, String> {
    let target = cache_path(url).ok_or("no cache dir (HOME is not set)")?;
    if target.is_file() {
        return Ok(target);
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    events.step(format!("downloading {url}"));
    let partial = target.with_extension("part");
    run(
        Command::new("curl")
            .args(["-fsSL", "--retry", "3", "-o"])
            .arg(&partial)
            .arg(url),
        &format!("curl {url}"),
    )
    .await
    .map_err(|e| e.to_string())?;
    std::fs::rename(&partial, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(target)
}

/// Checks `path`'s bytes against `iso_checksum` (downloaded from `source`).
async fn verify(
    def_dir: &Path,
    source: &str,
    path: &Path,
    expected: &Expected,
    events: &crate::build::events::EventSink,
) -> Result<(), BuildError> {
    let (algo, hex) = match expected {
        Expected::None => return Ok(()),
        Expected::Digest { algo, hex } => (*algo, hex.clone()),
        Expected::File(list) => {
            let text = read_list(def_dir, list).await.map_err(checksum_error)?;
            checksum::find_in_list(&text, &file_name(source))
                .ok_or_else(|| ChecksumError::NotListed {
                    file: list.clone(),
                    name: file_name(source),
                })
                .map_err(checksum_error)?
        }
    };
    events.step(format!(
        "checking {source} against iso_checksum ({})",
        algo.name()
    ));
    let hashed = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || checksum::digest_file(&hashed, algo))
        .await
        .map_err(|e| fail(format!("hashing {source}: {e}")))?
        .map_err(|e| fail(format!("hashing {}: {e}", path.display())))?;
    if actual != hex {
        return Err(checksum_error(ChecksumError::Mismatch {
            what: source.to_owned(),
            algo: algo.name(),
            expected: hex,
            actual,
        }));
    }
    Ok(())
}

fn checksum_error(e: ChecksumError) -> BuildError {
    let hint = e.hint();
    fail(e.to_string()).with_hint(hint)
}

/// The text of a checksums file: local (a path or `file://`) or remote.
async fn read_list(def_dir: &Path, location: &str) -> Result<String, ChecksumError> {
    let no_file = |message: String| ChecksumError::NoFile {
        file: location.to_owned(),
        message,
    };
    match crate::paths::local_path_of(location) {
        Some(path) => {
            std::fs::read_to_string(def_dir.join(path)).map_err(|e| no_file(e.to_string()))
        }
        None => {
            let out = run(Command::new("curl").args(["-fsSL", location]), "curl")
                .await
                .map_err(|e| no_file(e.to_string()))?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

/// Copies `files` (files or folders, relative to `def_dir`; a folder's
/// contents go in under its own name, as Packer does) and `content` (file
/// name → text) into the folder `into`.
pub(super) fn gather(
    def_dir: &Path,
    files: &[String],
    content: &BTreeMap<String, String>,
    into: &Path,
) -> Result<(), BuildError> {
    std::fs::create_dir_all(into).map_err(|e| fail(format!("creating {}: {e}", into.display())))?;
    for rel in files {
        let from = def_dir.join(crate::paths::local_path_of(rel).unwrap_or(rel));
        let name = from
            .file_name()
            .ok_or_else(|| fail(format!("{rel} names no file")))?;
        copy_all(&from, &into.join(name))?;
    }
    for (name, text) in content {
        let to = into.join(name.trim_start_matches('/'));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::write(&to, text).map_err(|e| fail(format!("writing {}: {e}", to.display())))?;
    }
    Ok(())
}

fn copy_all(from: &Path, to: &Path) -> Result<(), BuildError> {
    let err = |e: std::io::Error| fail(format!("copying {}: {e}", from.display()));
    if from.is_dir() {
        std::fs::create_dir_all(to).map_err(err)?;
        for entry in std::fs::read_dir(from).map_err(err)? {
            let entry = entry.map_err(err)?;
            copy_all(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ()).map_err(err)
    }
}

/// A 1.44 MB FAT floppy image of the folder `contents`, labelled `label`.
pub(super) async fn make_floppy(
    contents: &Path,
    label: &str,
    out: &Path,
) -> Result<(), BuildError> {
    let hint =
        "floppy_files needs mkfs.vfat and mtools (Debian: apt-get install dosfstools mtools)";
    run(
        Command::new("mkfs.vfat")
            .args(["-C", "-n"])
            .arg(label.to_uppercase().chars().take(11).collect::<String>())
            .arg(out)
            .arg("1440"),
        "mkfs.vfat (the floppy)",
    )
    .await
    .map_err(|e| e.with_hint(hint))?;
    let entries: Vec<PathBuf> = std::fs::read_dir(contents)
        .map_err(|e| fail(format!("reading {}: {e}", contents.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let mut mcopy = Command::new("mcopy");
    mcopy
        .args(["-s", "-Q", "-i"])
        .arg(out)
        .args(&entries)
        .arg("::/");
    mcopy.env("MTOOLS_SKIP_CHECK", "1");
    run(&mut mcopy, "mcopy (the floppy)")
        .await
        .map_err(|e| e.with_hint(hint))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_gathers_files_folders_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cfg/sub")).unwrap();
        std::fs::write(dir.path().join("cfg/sub/a.txt"), "a").unwrap();
        std::fs::write(dir.path().join("ks.cfg"), "ks").unwrap();
        let into = dir.path().join("cd");
        let content = [("/user-data".to_owned(), "#cloud-config\n".to_owned())].into();
        gather(
            dir.path(),
            &["ks.cfg".into(), "cfg".into()],
            &content,
            &into,
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(into.join("ks.cfg")).unwrap(), "ks");
        assert_eq!(
            std::fs::read_to_string(into.join("cfg/sub/a.txt")).unwrap(),
            "a"
        );
        assert_eq!(
            std::fs::read_to_string(into.join("user-data")).unwrap(),
            "#cloud-config\n"
        );
    }

    #[tokio::test]
    async fn a_floppy_holds_its_files() {
        if std::process::Command::new("mcopy")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("skipped: no mtools");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let contents = dir.path().join("floppy");
        std::fs::create_dir_all(contents.join("scripts")).unwrap();
        std::fs::write(contents.join("autounattend.xml"), "<unattend/>").unwrap();
        std::fs::write(contents.join("scripts/setup.cmd"), "echo").unwrap();
        let image = dir.path().join("floppy.img");
        make_floppy(&contents, "packer", &image).await.unwrap();
        assert_eq!(std::fs::metadata(&image).unwrap().len(), 1440 * 1024);
        let out = std::process::Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&image)
            .arg("::/scripts/setup.cmd")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "echo");
        let label = std::process::Command::new("mlabel")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-s", "-i"])
            .arg(&image)
            .arg("::")
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&label.stdout).contains("PACKER"));
    }

    #[test]
    fn file_names_of_locations() {
        assert_eq!(file_name("https://x/a/debian.iso?x=1"), "debian.iso");
        assert_eq!(file_name("images/base.qcow2"), "base.qcow2");
    }
}
