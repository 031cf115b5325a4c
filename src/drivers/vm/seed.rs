//! Disks handed to a booting VM: ISO 9660 images of a folder (`xorriso`), a
//! cloud-init NoCloud seed (an ISO labelled `cidata` with `meta-data` and
//! `user-data`), and the user-data that lets imgform log in with a key of
//! its own.

use std::path::Path;

use tokio::process::Command;

/// Writes an ISO 9660 image (Rock Ridge and Joliet names) of the folder
/// `contents`, with volume label `label`, to `out`.
pub async fn make_iso(contents: &Path, label: &str, out: &Path) -> Result<(), String> {
    let output = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-J", "-r", "-V", label, "-o"])
        .arg(out)
        .arg(contents)
        .output()
        .await
        .map_err(|e| format!("xorriso: cannot start: {e} (install xorriso)"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "xorriso failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A NoCloud seed in `dir/seed.iso`, from the files' texts.
pub async fn nocloud_seed(
    dir: &Path,
    meta_data: &str,
    user_data: &str,
) -> Result<std::path::PathBuf, String> {
    let contents = dir.join("cidata");
    let write = |name: &str, text: &str| {
        std::fs::write(contents.join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    std::fs::create_dir_all(&contents).map_err(|e| format!("creating the seed: {e}"))?;
    write("meta-data", meta_data)?;
    write("user-data", user_data)?;
    let iso = dir.join("seed.iso");
    make_iso(&contents, "cidata", &iso).await?;
    Ok(iso)
}

/// The cloud-init user-data of a boot check: a user `user` with
/// passwordless sudo and `public_key`, and nothing else changed.
pub fn login_user_data(user: &str, public_key: &str) -> String {
    format!(
        "#cloud-config\n\
         manage_etc_hosts: localhost\n\
         users:\n\
         \x20 - default\n\
         \x20 - name: {user}\n\
         \x20   sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n\
         \x20   shell: /bin/sh\n\
         \x20   lock_passwd: true\n\
         \x20   ssh_authorized_keys:\n\
         \x20     - {public_key}\n"
    )
}

/// NoCloud meta-data: an instance id (a new one makes cloud-init run its
/// per-instance modules) and a host name.
pub fn meta_data(instance_id: &str, hostname: &str) -> String {
    format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
}
