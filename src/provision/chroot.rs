//! The `chroot` communicator: runs commands inside a root filesystem with
//! `chroot ROOT /bin/sh -c ...`, with /proc, /sys and /dev mounted while the
//! build runs.
//!
//! Invariants: the mounts live in a mount namespace of their own
//! ([`Mounts`]), never in the host's: they end when the build drops them —
//! after success, failure, cancellation or a panic — and also when imgform
//! is killed outright, so a stale work dir never holds a mount point into
//! the host's /dev or /sys. Files are written through the
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

/// /proc, /sys and /dev mounted into a root, in a mount namespace of their
/// own: a holder process (`unshare --mount --propagation private`) mounts
/// them and then waits for its stdin to close. Commands enter that
/// namespace (`nsenter`). The host never sees these mounts, and when
/// imgform goes — dropped, failed, or killed by any signal, SIGKILL
/// included — the holder's stdin closes, it stops whatever still runs in
/// the namespace and exits, and the kernel drops every mount with the
/// namespace.
pub struct Mounts {
    root: PathBuf,
    holder: Option<std::process::Child>,
}

/// What the holder runs: mount, say so, wait for stdin to close, then
/// stop every process still in the namespace (a daemon a provisioner
/// started, a command of a killed imgform), so the namespace and its
/// mounts end at once.
const HOLDER_SCRIPT: &str = r#"set -e
mount -t proc proc "$1/proc"
mount --rbind /sys "$1/sys"
mount --rbind /dev "$1/dev"
echo mounted
read -r _ || true
set +e
ours=$(readlink /proc/$$/ns/mnt)
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [ "$pid" = "$$" ] && continue
  [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ours" ] && kill -KILL "$pid" 2>/dev/null
done
exit 0
"#;

impl Mounts {
    pub fn mount(root: &Path) -> Result<Mounts, String> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut mounts = Mounts {
            root: root.to_path_buf(),
            holder: None,
        };
        if !is_root() {
            return Ok(mounts);
        }
        for dir in ["proc", "sys", "dev"] {
            let target = root.join(dir);
            std::fs::create_dir_all(&target)
                .map_err(|e| format!("creating {}: {e}", target.display()))?;
        }
        let mut holder = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(HOLDER_SCRIPT)
            .arg("imgform-mounts")
            .arg(root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Not in imgform's process group: a terminal's Ctrl-C reaches
            // imgform, which then closes the holder's stdin itself.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("running unshare: {e}"))?;
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("piped");
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "mounted" {
            drop(holder.stdin.take());
            let out = holder.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "mounting /proc, /sys and /dev in {}: {}",
                root.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        mounts.holder = Some(holder);
        Ok(mounts)
    }

    /// The mount namespace commands must enter, while the mounts are up.
    pub fn namespace(&self) -> Option<PathBuf> {
        self.holder
            .as_ref()
            .map(|h| PathBuf::from(format!("/proc/{}/ns/mnt", h.id())))
    }

    /// Ends the namespace (and with it every mount in it): closes the
    /// holder's stdin and waits for it.
    pub fn unmount(&mut self) -> Result<(), String> {
        if let Some(mut holder) = self.holder.take() {
            drop(holder.stdin.take());
            if let Err(e) = holder.wait() {
                return Err(format!("waiting for the mount namespace to end: {e}"));
            }
        }
        if still_mounted(&self.root) {
            return Err(format!(
                "could not unmount: something is still mounted below {}",
                self.root.display()
            ));
        }
        Ok(())
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
    /// The mount namespace holding /proc, /sys and /dev ([`Mounts::namespace`]),
    /// entered by every command; None when nothing is mounted.
    pub namespace: Option<PathBuf>,
    /// Fires on Ctrl-C: running commands are killed.
    pub cancel: crate::build::events::CancelToken,
}

impl ChrootCommunicator {
    fn command(&self, script: &str, env: &[(String, String)]) -> Command {
        let mut cmd = if let Some(namespace) = &self.namespace {
            let mut c = Command::new("nsenter");
            c.arg(format!("--mount={}", namespace.display()))
                .args(["--", "chroot"]);
            c
        } else if is_root() {
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
