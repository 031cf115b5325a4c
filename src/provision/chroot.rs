//! The `chroot` communicator: runs commands inside a root filesystem with
//! `chroot ROOT /bin/sh -c ...`, with /proc, /sys and /dev mounted while the
//! build runs.
//!
//! Invariants: [`Mounts`] unmounts everything it mounted when dropped —
//! after success, failure, cancellation or a panic — and the root is never
//! packed while anything below it is mounted. Files are written through the
//! chroot (`cat`/`tar` inside it), never by joining host paths, so a symlink
//! inside the image can never redirect a write to the host.
//!
//! As root, commands run directly; otherwise they run in a user namespace
//! (`unshare --map-root-user`), where /proc, /sys and /dev are not mounted.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::{CommError, Communicator};
use crate::build::events::EventSink;
use crate::build::BoxFuture;

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// /proc, /sys and /dev mounted into a root; unmounted on drop.
pub struct Mounts {
    root: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Mounts {
    pub fn mount(root: &Path) -> Result<Mounts, String> {
        let mut mounts = Mounts {
            root: root.to_path_buf(),
            mounted: Vec::new(),
        };
        if !is_root() {
            return Ok(mounts);
        }
        let steps: [(&str, &[&str]); 3] = [
            ("proc", &["-t", "proc", "proc"]),
            ("sys", &["--rbind", "/sys"]),
            ("dev", &["--rbind", "/dev"]),
        ];
        for (dir, args) in steps {
            let target = root.join(dir);
            std::fs::create_dir_all(&target)
                .map_err(|e| format!("creating {}: {e}", target.display()))?;
            let status = std::process::Command::new("mount")
                .args(args)
                .arg(&target)
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("running mount: {e}"))?;
            if !status.status.success() {
                return Err(format!(
                    "mounting {}: {}",
                    target.display(),
                    String::from_utf8_lossy(&status.stderr).trim()
                ));
            }
            mounts.mounted.push(target.clone());
            if dir != "proc" {
                let _ = std::process::Command::new("mount")
                    .args(["--make-rslave"])
                    .arg(&target)
                    .status();
            }
        }
        Ok(mounts)
    }

    /// Unmounts everything (children first), lazily if busy.
    pub fn unmount(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        while let Some(target) = self.mounted.pop() {
            let ok = std::process::Command::new("umount")
                .arg("-R")
                .arg(&target)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let lazy = std::process::Command::new("umount")
                    .args(["-R", "-l"])
                    .arg(&target)
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !lazy {
                    errors.push(target.display().to_string());
                }
            }
        }
        if still_mounted(&self.root) {
            errors.push(format!(
                "something is still mounted below {}",
                self.root.display()
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("could not unmount: {}", errors.join(", ")))
        }
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

/// Whether anything is mounted at or below `root`.
pub fn still_mounted(root: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let root = root.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|mp| mp == root || mp.starts_with(&format!("{root}/")))
}

pub struct ChrootCommunicator {
    pub root: PathBuf,
    /// Fires on Ctrl-C: running commands are killed.
    pub cancel: crate::build::events::CancelToken,
}

impl ChrootCommunicator {
    fn command(&self, script: &str, env: &[(String, String)]) -> Command {
        let mut cmd = if is_root() {
            Command::new("chroot")
        } else {
            let mut c = Command::new("unshare");
            c.args(["--map-root-user", "chroot"]);
            c
        };
        cmd.arg(&self.root)
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        cmd
    }

    /// Runs `script` in the chroot with `input` on stdin, returning stderr on failure.
    /// Runs `script` in the chroot with `input` streamed to its stdin (a
    /// small buffer at a time: a 200 MiB upload does not sit in memory).
    async fn with_stdin<R>(
        &self,
        script: &str,
        args_env: &[(String, String)],
        mut input: R,
    ) -> Result<(), CommError>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
    {
        let mut child = self
            .command(script, args_env)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| CommError::Failed(format!("cannot run chroot: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        let writer = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut input, &mut stdin).await;
            drop(stdin);
        });
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| CommError::Failed(e.to_string()))?;
        let _ = writer.await;
        if out.status.success() {
            Ok(())
        } else {
            Err(CommError::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }
}

impl Communicator for ChrootCommunicator {
    fn exec<'a>(
        &'a self,
        command: &'a str,
        env: &'a [(String, String)],
        events: &'a EventSink,
    ) -> BoxFuture<'a, Result<i32, CommError>> {
        Box::pin(async move {
            match super::run_streaming(self.command(command, env), events, &self.cancel).await {
                Ok(super::Streamed::Exited { code, .. }) => Ok(code),
                Ok(super::Streamed::Cancelled) => Err(CommError::Cancelled),
                Err(e) => Err(CommError::Failed(format!("cannot run chroot: {e}"))),
            }
        })
    }

    fn upload<'a>(
        &'a self,
        local: &'a Path,
        remote: &'a str,
    ) -> BoxFuture<'a, Result<(), CommError>> {
        Box::pin(async move {
            let env = vec![("IMGFORM_DEST".to_owned(), remote.to_owned())];
            if local.is_dir() {
                // A tar stream of the directory's contents, piped into the
                // chroot and unpacked there as it is made.
                let mut tar = Command::new("tar")
                    .args(["--numeric-owner", "-C"])
                    .arg(local)
                    .args(["-cf", "-", "."])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| CommError::Failed(format!("tar: {e}")))?;
                let stream = tar.stdout.take().expect("piped");
                let unpacked = self
                    .with_stdin(
                        "mkdir -p \"$IMGFORM_DEST\" && tar -xf - -C \"$IMGFORM_DEST\"",
                        &env,
                        stream,
                    )
                    .await;
                let packed = tar
                    .wait_with_output()
                    .await
                    .map_err(|e| CommError::Failed(format!("tar: {e}")))?;
                // An unpacking that failed makes tar fail too (broken
                // pipe): its own error says more.
                unpacked?;
                if !packed.status.success() {
                    return Err(CommError::Failed(format!(
                        "tar {}: {}",
                        local.display(),
                        String::from_utf8_lossy(&packed.stderr).trim()
                    )));
                }
                Ok(())
            } else {
                let file = tokio::fs::File::open(local)
                    .await
                    .map_err(|e| CommError::Failed(format!("reading {}: {e}", local.display())))?;
                self.with_stdin(
                    "mkdir -p \"$(dirname \"$IMGFORM_DEST\")\" && cat > \"$IMGFORM_DEST\"",
                    &env,
                    file,
                )
                .await
            }
        })
    }

    fn host_env(&self) -> Vec<(String, String)> {
        let root = self.root.to_string_lossy().into_owned();
        vec![
            ("TARGET_ROOT".to_owned(), root.clone()),
            ("IMGFORM_CHROOT_ROOT".to_owned(), root),
        ]
    }

    fn download<'a>(
        &'a self,
        remote: &'a str,
        local: &'a Path,
    ) -> BoxFuture<'a, Result<(), CommError>> {
        Box::pin(async move {
            let out = self
                .command(
                    "cat \"$IMGFORM_SRC\"",
                    &[("IMGFORM_SRC".to_owned(), remote.to_owned())],
                )
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| CommError::Failed(e.to_string()))?;
            if !out.status.success() {
                return Err(CommError::Failed(format!(
                    "reading {remote}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            if let Some(parent) = local.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            tokio::fs::write(local, out.stdout)
                .await
                .map_err(|e| CommError::Failed(format!("writing {}: {e}", local.display())))
        })
    }
}
