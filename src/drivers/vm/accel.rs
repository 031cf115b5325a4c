//! Which accelerator QEMU gets: KVM when it really works, else TCG.
//!
//! `/dev/kvm` existing proves little: under nested virtualisation KVM can
//! open, run a boot sector, and then hang on the first long-mode kernel.
//! So the check boots a real Linux kernel under KVM (`-kernel`, no root
//! disk: the kernel starts, finds no root, panics, and `-no-reboot` ends
//! QEMU) and wants to see the kernel's banner and that end within a few
//! seconds. The verdict is cached per boot of the host and QEMU binary
//! (`~/.cache/imgform/accel-…`), so only the first build after a reboot
//! pays for it. `IMGFORM_ACCEL=kvm|tcg` or Packer's `accelerator` decide
//! without a check.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// Packer's `accelerator` values (`none` is TCG, QEMU's own emulation).
    pub fn parse(text: &str) -> Option<Accel> {
        match text {
            "kvm" => Some(Accel::Kvm),
            "tcg" | "none" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

/// How long a kernel may take to reach its panic under a working KVM.
const PROBE_LIMIT: Duration = Duration::from_secs(20);

/// The accelerator to use: `IMGFORM_ACCEL`, the cached verdict, or a check
/// with `kernel`. With no kernel to check with, TCG: a KVM that opens may
/// still hang the guest, and a slow build beats one that never ends.
pub async fn detect(qemu: &str, kernel: Option<&Path>) -> Accel {
    if let Some(forced) = std::env::var("IMGFORM_ACCEL")
        .ok()
        .as_deref()
        .and_then(Accel::parse)
    {
        return forced;
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Accel::Tcg;
    }
    let cache = cache_file(qemu);
    if let Some(cached) = cache
        .as_ref()
        .and_then(|c| std::fs::read_to_string(c).ok())
        .and_then(|t| Accel::parse(t.trim()))
    {
        return cached;
    }
    let Some(kernel) = kernel else {
        return Accel::Tcg;
    };
    let verdict = if kernel_boots_under_kvm(qemu, kernel).await {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    if let Some(cache) = cache {
        if let Some(dir) = cache.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(cache, verdict.as_str());
    }
    verdict
}

/// `~/.cache/imgform/accel-<boot id>-<qemu binary size and mtime>`.
fn cache_file(qemu: &str) -> Option<PathBuf> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let binary = which(qemu)?;
    let meta = std::fs::metadata(&binary).ok()?;
    let stamp = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(
        base.join("imgform")
            .join(format!("accel-{}-{}-{stamp}", boot_id.trim(), meta.len())),
    )
}

fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Boots `kernel` under KVM with no root disk; true when it prints its
/// banner and panics (QEMU exits) within [`PROBE_LIMIT`].
async fn kernel_boots_under_kvm(qemu: &str, kernel: &Path) -> bool {
    let dir = match tempdir() {
        Ok(d) => d,
        Err(_) => return false,
    };
    let log = dir.join("console.log");
    let child = tokio::process::Command::new(qemu)
        .args([
            "-accel",
            "kvm",
            "-display",
            "none",
            "-nodefaults",
            "-no-reboot",
        ])
        .args(["-m", "256", "-monitor", "none"])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 root=/dev/imgform-probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let started = Instant::now();
    let ended = tokio::time::timeout(PROBE_LIMIT, child.wait())
        .await
        .is_ok();
    let _ = child.kill().await;
    let printed = std::fs::read_to_string(&log)
        .map(|t| t.contains("Linux version"))
        .unwrap_or(false);
    let _ = std::fs::remove_dir_all(&dir);
    ended && printed && started.elapsed() < PROBE_LIMIT
}

fn tempdir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("imgform-accel-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}
