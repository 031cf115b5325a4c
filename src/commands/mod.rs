//! Commands: the only wiring layer. Each command turns parsed arguments into
//! calls on the core and writes data to stdout; progress and diagnostics go
//! to stderr. Exit codes are decided in `main` from what these return.

pub mod apply;
pub mod drift;
pub mod graph;
pub mod plan;
pub mod prepare;
pub mod show;
pub mod state;
pub mod validate;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cli::settings::Output;
use crate::cli::{Cli, Command, StateCommand};
use crate::state::{acquire, LockGuard, LockInfo, StateBackend};

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// `--detailed-exitcode` and the plan has changes.
    Changes,
    /// The command ran but part of the work failed (exit 1, already reported).
    Failed,
}

pub fn run(cli: Cli, output: Output) -> Result<Status> {
    let chdir = cli.chdir.as_deref();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Validate(args) => validate::run(chdir, args, output),
        Command::Plan(args) => runtime.block_on(plan::run(chdir, args, output)),
        Command::Apply(args) => runtime.block_on(apply::run(chdir, args, output)),
        Command::Show(args) => show::run(chdir, args, output),
        Command::Drift(args) => runtime.block_on(drift::run(chdir, args, output)),
        Command::Graph(args) => graph::run(chdir, args),
        Command::State(StateCommand::List(args)) => state::list(chdir, args, output),
        Command::State(StateCommand::Show(args)) => state::show(chdir, args, output),
        Command::State(StateCommand::Rm(args)) => state::rm(chdir, args),
        Command::State(StateCommand::Recover(args)) => {
            runtime.block_on(state::recover(chdir, args, output))
        }
        Command::State(StateCommand::Import(args)) => runtime.block_on(state::import(chdir, args)),
        Command::ForceUnlock(args) => state::force_unlock(chdir, args),
    }
}

/// Takes the state lock, naming the holder when it is taken.
pub fn lock<'a>(
    backend: &'a dyn StateBackend,
    operation: &str,
    timeout: Duration,
) -> Result<LockGuard<'a>> {
    acquire(backend, LockInfo::new(operation), timeout).map_err(|e| {
        let hint = match &e {
            crate::state::StateError::Locked { holder } => format!(
                "\n  hint: another imgform run holds the state lock: {} ({}) since {}, lock id {}.\n  Wait for it (--lock-timeout 5m), or if that run is gone: imgform force-unlock {}",
                holder.who, holder.operation, holder.created, holder.id, holder.id
            ),
            _ => String::new(),
        };
        anyhow::anyhow!("{e}{hint}")
    })
}

pub fn print_warnings(warnings: &[crate::diag::Diagnostic], output: Output) {
    if !warnings.is_empty() {
        eprint!(
            "{}",
            crate::views::diagnostics::render(
                warnings,
                crate::views::Style {
                    color: output.color_stderr
                }
            )
        );
    }
}

pub fn def_dir_exists(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("definition dir {} does not exist\n  hint: pass the folder holding your *.pkr.hcl files with --chdir DIR", dir.display());
    }
    Ok(())
}
