//! Commands: the only wiring layer. Each command parses its arguments, calls
//! the core (`pipeline`, `apply`, `state`), picks a view and writes data to
//! stdout; progress and diagnostics go to stderr. Exit codes are decided in
//! `main` from what these return, and every error's hint is found in one
//! place, [`hint`].

pub mod apply;
pub mod drift;
pub mod graph;
pub mod plan;
mod progress;
pub mod sbom;
pub mod show;
pub mod state;
pub mod validate;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::addr::{ContentAddress, ImageAddr};
use crate::cli::settings::Output;
use crate::cli::{Cli, Command, StateCommand};
use crate::pipeline::PipelineError;
use crate::state::{acquire, LockGuard, LockInfo, StateBackend, StateError};

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// `--detailed-exitcode` and the plan has changes.
    Changes,
    /// The command ran but part of the work failed (exit 1, already reported).
    Failed,
    /// SIGINT or SIGTERM stopped the work (apply's builds were cancelled and
    /// cleaned up); exit 128 + the signal's number.
    Interrupted(crate::interrupt::Interrupt),
}

/// What a command itself refuses, one variant per failure; the hint is
/// [`CommandError::hint`].
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("apply needs confirmation, but stdin is not a terminal")]
    NeedsConfirmation,
    #[error("{address} is not in the state")]
    NotInState { address: ImageAddr },
    #[error("{address} is not defined")]
    NotDefined { address: ImageAddr },
    #[error("{id} is not an artifact of {address} built from its current definitions (content {})", content.short())]
    NotAdoptable {
        id: String,
        address: ImageAddr,
        content: ContentAddress,
    },
    #[error("--markdown renders a saved plan: imgform show --markdown PLANFILE")]
    MarkdownNeedsPlan,
    #[error("--lock-timeout `{0}` is not a duration like 30s or 5m")]
    BadLockTimeout(String),
    #[error("{address} has no {which}SBOM recorded")]
    NoSbom {
        address: ImageAddr,
        /// `` or `previous `.
        which: &'static str,
    },
    #[error("the SBOM of {address} is missing from the state's object store ({hex})")]
    SbomObjectMissing { address: ImageAddr, hex: String },
}

impl CommandError {
    pub fn hint(&self) -> Option<String> {
        let text = match self {
            CommandError::NeedsConfirmation => "review the plan above and run `imgform apply --auto-approve`, or save it with `imgform plan --out plan.bin` and run `imgform apply plan.bin`",
            CommandError::NotInState { .. } => "`imgform state list` shows the recorded images",
            CommandError::NotDefined { .. } => "`imgform validate` lists the defined images",
            CommandError::NotAdoptable { .. } => "imgform only adopts artifacts whose tags or name carry the image's current content address; run `imgform apply` to build it",
            CommandError::NoSbom { which: "", .. } => "an SBOM is recorded when a build finds a package database (dpkg, rpm or apk) in the image; images built before imgform recorded SBOMs have none until rebuilt",
            CommandError::NoSbom { .. } => "the image has no earlier build with an SBOM: `imgform diff` compares two builds that both read a package database",
            CommandError::SbomObjectMissing { .. } => "the state's object store lost it; `imgform taint ADDR` and an apply rebuild the image and its SBOM",
            CommandError::MarkdownNeedsPlan | CommandError::BadLockTimeout(_) => return None,
        };
        Some(text.to_owned())
    }
}

/// The hint for an error: the first one a typed error in its chain carries.
/// The one place hints are found; `main` renders them.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|e| {
        if let Some(e) = e.downcast_ref::<CommandError>() {
            e.hint()
        } else if let Some(e) = e.downcast_ref::<PipelineError>() {
            e.hint()
        } else if let Some(e) = e.downcast_ref::<StateError>() {
            e.hint()
        } else {
            None
        }
    })
}

pub fn run(cli: Cli, output: Output) -> Result<Status> {
    // -C DIR changes directory first, like `make -C` and `terraform
    // -chdir`: the template path, --var-file, plan files and every relative
    // path in the templates are then relative to DIR.
    if let Some(dir) = &cli.chdir {
        std::env::set_current_dir(dir)
            .map_err(|_| PipelineError::NoDefinitionDir { dir: dir.clone() })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // From here on SIGINT and SIGTERM stop the command cleanly (the lock
    // released, temporary dirs removed) whatever it is doing.
    crate::interrupt::listen(&runtime);
    let status = match cli.command {
        Command::Validate(args) => validate::run(args, output),
        Command::Plan(args) => runtime.block_on(plan::run(args, output)),
        Command::Apply(args) => runtime.block_on(apply::run(args, output)),
        Command::Show(args) => show::run(args, output),
        Command::Drift(args) => runtime.block_on(drift::run(args, output)),
        Command::Graph(args) => graph::run(args),
        Command::State(StateCommand::List(args)) => state::list(args, output),
        Command::State(StateCommand::Show(args)) => state::show(args, output),
        Command::State(StateCommand::Rm(args)) => state::rm(args),
        Command::State(StateCommand::Recover(args)) => {
            runtime.block_on(state::recover(args, output))
        }
        Command::State(StateCommand::Import(args)) => runtime.block_on(state::import(args)),
        Command::Sbom(args) => sbom::sbom(args),
        Command::Diff(args) => sbom::diff(args, output),
        Command::Taint(args) => state::taint(args, true),
        Command::Untaint(args) => state::taint(args, false),
        Command::ForceUnlock(args) => state::force_unlock(args),
    };
    // Interrupted as it ended: the exit code is the signal's.
    crate::interrupt::park_if_stopping();
    status
}

/// Takes the state lock (the error names the holder when it is taken).
pub fn lock<'a>(
    backend: &'a dyn StateBackend,
    operation: &str,
    timeout: &str,
) -> Result<LockGuard<'a>> {
    let timeout = lock_timeout(timeout)?;
    let guard = acquire(backend, LockInfo::new(operation), timeout)?;
    if crate::fault::armed_anywhere("pause-after-lock") {
        crate::fault::pause();
    }
    Ok(guard)
}

fn lock_timeout(text: &str) -> Result<Duration, CommandError> {
    crate::spec::parse_duration(text).ok_or_else(|| CommandError::BadLockTimeout(text.to_owned()))
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

/// The template folder or file of a command (relative to the current
/// directory, after -C), else "."; it must exist.
pub fn definition_dir(dir: &crate::cli::DirArg) -> Result<PathBuf> {
    let dir = crate::cli::settings::definition_dir(dir);
    crate::pipeline::definition_dir_exists(&dir)?;
    Ok(dir)
}
