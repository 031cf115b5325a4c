//! Turning trees into files: unpacking a base (tarball, directory, or
//! another chroot image), and packing a tree as a deterministic tar or as an
//! ext4 filesystem written in place (`mke2fs -d`, inode times pinned with
//! `debugfs`), with every time set from `SOURCE_DATE_EPOCH`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::{fail, parse_size};
use crate::build::BuildError;
use crate::spec::ImageSpec;

/// Runs `cmd` to the end; its stdout, or a failure with its stderr.
pub(super) async fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, BuildError> {
    let child = {
        let _guard = crate::provision::spawn_guard();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let out = child
        .map_err(|e| fail(format!("{what}: cannot start: {e}")))?
        .wait_with_output()
        .await
        .map_err(|e| fail(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

pub(super) fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Unpacks `base` into `root`.
pub(super) async fn unpack(base: &Path, root: &Path) -> Result<(), BuildError> {
    if base.is_dir() {
        run(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", base.display()))
                .arg(root),
            "copying the base directory",
        )
        .await?;
        return Ok(());
    }
    let name = base.to_string_lossy().into_owned();
    let is_disk = name.ends_with(".qcow2") || name.ends_with(".raw") || name.ends_with(".img");
    if is_disk {
        // Another chroot image: prefer its packed tree, else read the ext4.
        let sidecar = PathBuf::from(format!("{name}.rootfs.tar"));
        if sidecar.exists() {
            return Box::pin(unpack(&sidecar, root)).await;
        }
        let raw = root.with_extension("base.raw");
        run(
            Command::new("qemu-img")
                .args(["convert", "-O", "raw"])
                .arg(base)
                .arg(&raw),
            "qemu-img convert",
        )
        .await?;
        let result = run(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("rdump / {}", root.display()))
                .arg(&raw),
            "debugfs rdump",
        )
        .await;
        let _ = std::fs::remove_file(&raw);
        result?;
        let _ = std::fs::remove_dir(root.join("lost+found"));
        return Ok(());
    }
    run(
        Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(base)
            .arg("-C")
            .arg(root),
        "unpacking the base tarball",
    )
    .await?;
    Ok(())
}

/// Sets every file time under `root` to `epoch` (symlinks themselves too).
pub(super) async fn normalise_times(root: &Path, epoch: u64) -> Result<(), BuildError> {
    run(
        Command::new("find")
            .arg(root)
            .args(["-depth", "-exec", "touch", "-h", "-d"])
            .arg(format!("@{epoch}"))
            .args(["{}", "+"]),
        "normalising file times",
    )
    .await
    .map(|_| ())
}

async fn tree_size(root: &Path) -> Result<u64, BuildError> {
    let out = run(
        Command::new("du")
            .args(["-s", "-B1", "--apparent-size"])
            .arg(root),
        "measuring the tree",
    )
    .await?;
    Ok(String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// Packs `root` into a deterministic tar.
pub(super) async fn pack_tar(root: &Path, dest: &Path, epoch: u64) -> Result<(), BuildError> {
    run(
        Command::new("tar")
            .args(["--sort=name", "--numeric-owner", "--format=gnu"])
            .arg(format!("--mtime=@{epoch}"))
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(dest)
            .arg("."),
        "packing the tar",
    )
    .await
    .map(|_| ())
}

/// The size of the root filesystem: `size`, else the tree plus 30% and
/// 64 MiB of headroom, in whole MiB.
pub(super) async fn filesystem_size(spec: &ImageSpec, root: &Path) -> Result<u64, BuildError> {
    let size = match spec.attr("size") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => parse_size(s)
            .ok_or_else(|| fail(format!("size `{s}` is not a size like 512M or 2G")))?,
        _ => {
            let content = tree_size(root).await?;
            let want = content + content * 3 / 10 + 64 * 1024 * 1024;
            want.div_ceil(1 << 20) << 20
        }
    };
    Ok(size)
}

/// An ext4 filesystem of the tree `root`: its label, its UUID and the seed
/// of its directory hashes (both derived from the content address).
pub(super) struct Ext4<'a> {
    pub root: &'a Path,
    pub label: &'a str,
    pub uuid: String,
    pub hash_seed: String,
    pub epoch: u64,
}

impl Ext4<'_> {
    /// Writes the filesystem into `file` at byte `offset`, `size` bytes
    /// long (`mke2fs -d`: no loop device, no mount), then pins its inode
    /// times. `file` must exist and be large enough.
    pub async fn write(&self, file: &Path, offset: u64, size: u64) -> Result<(), BuildError> {
        let blocks = size / 4096;
        run(
            Command::new("mke2fs")
                .args([
                    "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-m", "0",
                ])
                .args(["-L", self.label, "-U", &self.uuid])
                .arg("-E")
                .arg(format!(
                    "offset={offset},hash_seed={},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
                    self.hash_seed
                ))
                .arg("-d")
                .arg(self.root)
                .arg(file)
                .arg(blocks.to_string())
                .env("E2FSPROGS_FAKE_TIME", self.epoch.to_string())
                .env("MKE2FS_DEVICE_SECTSIZE", "512"),
            "mke2fs",
        )
        .await?;
        // e2fsprogs opens `file?offset=N` at that offset.
        let device = if offset == 0 {
            file.display().to_string()
        } else {
            format!("{}?offset={offset}", file.display())
        };
        pin_inode_times(
            self.root,
            &device,
            &file.with_extension("debugfs"),
            self.epoch,
        )
        .await
    }
}

/// mke2fs -d copies each file's atime and ctime from the host, and the
/// kernel sets those to "now"; pin every time field of every inode to
/// `epoch` with debugfs so the image bytes do not depend on when it was built.
async fn pin_inode_times(
    root: &Path,
    device: &str,
    script: &Path,
    epoch: u64,
) -> Result<(), BuildError> {
    let mut commands = String::new();
    let mut add = |target: &str| {
        for field in ["atime", "ctime", "mtime", "crtime"] {
            commands.push_str(&format!(
                "sif {target} {field} @{epoch}\nsif {target} {field}_extra 0\n"
            ));
        }
    };
    add("<2>");
    for entry in walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| fail(format!("walking the tree: {e}")))?;
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let path = format!("/{}", rel.to_string_lossy());
        if path.contains('"') || path.contains('\n') {
            continue; // debugfs cannot quote these; their times stay as copied.
        }
        add(&format!("\"{path}\""));
    }
    std::fs::write(script, commands)
        .map_err(|e| fail(format!("writing {}: {e}", script.display())))?;
    let result = run(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(script)
            .arg(device)
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string()),
        "debugfs (pinning inode times)",
    )
    .await;
    let _ = std::fs::remove_file(script);
    result.map(|_| ())
}
