//! Resolves command-line arguments and the environment into settings.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use super::DirArg;

/// Output settings shared by all commands.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Colour on stdout.
    pub color_stdout: bool,
    /// Colour on stderr.
    pub color_stderr: bool,
    pub stderr_is_tty: bool,
    pub stdin_is_tty: bool,
}

impl Output {
    pub fn detect(no_color_flag: bool) -> Output {
        let no_color = no_color_flag
            || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
            || std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Output {
            color_stdout: !no_color && std::io::stdout().is_terminal(),
            color_stderr: !no_color && std::io::stderr().is_terminal(),
            stderr_is_tty: std::io::stderr().is_terminal(),
            stdin_is_tty: std::io::stdin().is_terminal(),
        }
    }
}

/// The template folder or file: the positional argument, else ".". (`-C DIR`
/// has already changed the current directory.)
pub fn definition_dir(dir: &DirArg) -> PathBuf {
    dir.dir.clone().unwrap_or_else(|| PathBuf::from("."))
}

pub fn lock_timeout(text: &str) -> Result<Duration, String> {
    crate::spec::parse_duration(text)
        .ok_or_else(|| format!("--lock-timeout `{text}` is not a duration like 30s or 5m"))
}
