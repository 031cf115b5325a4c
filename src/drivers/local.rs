//! What the builders of local image files (chroot, qemu) share about those
//! files: whether one is whole, before `state recover`/`import` adopt it.

use std::path::Path;

/// Whether an image file is whole: `qemu-img check` for qcow2, `tar -t` for
/// tar (a truncated file fails both). A raw disk has no structure to check.
pub async fn verify_image(path: &Path, format: &str) -> Result<(), String> {
    let mut cmd = match format {
        "tar" => {
            let mut c = tokio::process::Command::new("tar");
            c.arg("-tf").arg(path);
            c
        }
        "raw" => return Ok(()),
        _ => {
            let mut c = tokio::process::Command::new("qemu-img");
            c.args(["check", "-q", "-f", "qcow2"]).arg(path);
            c
        }
    };
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot check it: {e}"))?;
    // qemu-img check: 3 is leaked clusters only, which lose no data.
    if out.status.success() || (format == "qcow2" && out.status.code() == Some(3)) {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr.lines().last().unwrap_or("").trim().to_owned();
    Err(if why.is_empty() {
        format!("the check exited with {}", out.status)
    } else {
        why
    })
}
