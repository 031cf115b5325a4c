//! What the two git data sources share: finding the repository that holds
//! a folder (walking up, as the plugin does) and running `git` in it.

use std::path::{Path, PathBuf};

use super::{config_str, Request};

/// The folder `path` names (default `.`, the definition dir), as given.
pub(super) fn start_dir(request: &Request<'_>) -> PathBuf {
    let path = config_str(request.config, "path").unwrap_or(".");
    request.def_dir.join(path)
}

/// Runs `git -C dir ARGS` and returns its stdout, trimmed of the final
/// newline; an error names the command and what git said.
pub(super) async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("running git: {e} (is git installed?)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(format!("git {}: {err}", args.join(" ")));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// The top of the work tree holding `dir`.
pub(super) async fn repository(dir: &Path) -> Result<PathBuf, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a folder", dir.display()));
    }
    git(dir, &["rev-parse", "--show-toplevel"])
        .await
        .map(PathBuf::from)
        .map_err(|e| format!("{} is not inside a git repository ({e})", dir.display()))
}

/// Non-empty lines.
pub(super) fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}
