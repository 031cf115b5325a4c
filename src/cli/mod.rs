//! Command-line definitions (clap derive) only. `settings` turns them plus
//! the environment into what commands need.

pub mod packer_args;
pub mod settings;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::addr::ImageAddr;

const ABOUT: &str = "terraform plan/apply for golden machine images.

imgform reads Packer HCL2 templates (*.pkr.hcl, *.img.hcl, *.pkr.json), hashes every
image's inputs into a content address, and compares those addresses with the state it
recorded for each cloud. `plan` says which images must be built, rebuilt or destroyed
and why; `apply` builds only those (and their dependents), in dependency order, in
parallel, recording each artifact as soon as it exists.";

const AFTER_HELP: &str = "Examples:
  imgform validate                     check the definitions in the current dir
  imgform plan -C images/              what would change, and why
  imgform apply --auto-approve         build what changed
  imgform plan --json | jq .summary    machine-readable plan
  imgform graph | dot -Tsvg > g.svg    draw the image dependency graph";

#[derive(Debug, Parser)]
#[command(name = "imgform", version, about = "terraform plan/apply for golden machine images", long_about = ABOUT, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Change to DIR first (like make -C): the template path and every relative path are then relative to DIR
    #[arg(short = 'C', long, global = true, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Never colour the output (NO_COLOR is honoured too; colour is only used on a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the definitions: syntax, schemas, variables, references, cycles
    #[command(
        after_help = "Example:\n  imgform validate images/\n\nExit status 0 when valid, 1 with every problem listed as file:line:col, a label and a hint."
    )]
    Validate(ValidateArgs),

    /// Show which images would be built, rebuilt or destroyed, and why
    #[command(after_help = "Examples:
  imgform plan                               compare definitions with the recorded state
  imgform plan --var region=eu-west-1        override a variable
  imgform plan --target golden.null.app      only this image and the images it is built from
  imgform plan --replace golden.null.base    rebuild it even if nothing changed
  imgform plan --json                        the plan as JSON (see README for the schema)
  imgform plan --detailed-exitcode           exit 0 = no changes, 1 = error, 2 = changes
  imgform plan --out plan.bin --markdown     save the plan for `apply plan.bin`, print a PR comment")]
    Plan(PlanArgs),

    /// Build what the plan says, in dependency order and in parallel
    #[command(after_help = "Examples:
  imgform apply                      show the plan, ask, then build
  imgform apply --auto-approve       build without asking (CI)
  imgform apply --parallelism 2      at most two images at a time
  imgform apply plan.bin             apply exactly a plan saved with `plan --out plan.bin`

Progress goes to stderr, one line per step, prefixed with the image address; full logs
are written to .imgform/logs/<image>.log in the definition dir. Ctrl-C stops starting new
images, lets running ones finish or clean up, records what finished, and exits 1.")]
    Apply(ApplyArgs),

    /// Report which recorded images are stale, missing or untracked, and why
    #[command(after_help = "Examples:
  imgform drift                  a table: current / stale (with reasons) / missing / untracked
  imgform drift --json           the report as JSON (format_version 1)
  imgform drift --markdown       for an issue or a scheduled job's summary
  imgform drift --html > drift.html   a page to publish: the image graph coloured by status

Exit status: 0 when every recorded image is current, 2 when anything is stale, missing
or untracked, 1 on error. A stale image is one whose definitions changed since it was
built, whose parent was rebuilt after it, or that is older than its build's max_age.")]
    Drift(DriftArgs),

    /// Show a saved plan, or the recorded state of every target
    #[command(
        after_help = "Examples:\n  imgform show                 the recorded state\n  imgform show plan.bin        a saved plan, as `plan` prints it\n  imgform show --json plan.bin the saved plan as JSON"
    )]
    Show(ShowArgs),

    /// Print the image dependency graph in Graphviz DOT
    #[command(after_help = "Example:\n  imgform graph | dot -Tsvg > images.svg")]
    Graph(GraphArgs),

    /// Inspect or edit the recorded state
    #[command(subcommand)]
    State(StateCommand),

    /// Print the software bill of materials (packages) of a recorded image
    #[command(after_help = "Examples:
  imgform sbom local.chroot.base                      CycloneDX 1.5 JSON (as stored)
  imgform sbom local.chroot.base --format spdx        SPDX 2.3 JSON
  imgform sbom local.chroot.base > base.cdx.json && grype sbom:base.cdx.json
  imgform sbom local.chroot.base > base.cdx.json && trivy sbom base.cdx.json

The SBOM is read from the image's package database (dpkg, rpm or apk) at the end of its
build and recorded with the image; a local image also has it beside its artifact
(<artifact>.cdx.json).")]
    Sbom(SbomArgs),

    /// Show the package changes of a recorded image against its previous build
    #[command(after_help = "Examples:
  imgform diff local.chroot.base           changed, added and removed packages
  imgform diff local.chroot.base --json    the same as JSON")]
    Diff(DiffArgs),

    /// Mark a recorded image for rebuild: the next plan rebuilds it
    #[command(
        after_help = "Example:\n  imgform taint golden.chroot.base\n\nLike terraform taint: the image (and, through it, every image built from it) is rebuilt\nby the next apply, whatever its inputs. `imgform untaint ADDR` takes the mark back."
    )]
    Taint(TaintArgs),

    /// Take back `imgform taint`
    #[command(after_help = "Example:\n  imgform untaint golden.chroot.base")]
    Untaint(TaintArgs),

    /// Remove a stale state lock left by a crashed run
    #[command(
        name = "force-unlock",
        after_help = "Example:\n  imgform force-unlock 6f1c2d1e-...\n\nThe lock id is printed by the run that found the state locked. Only remove a lock\nwhose holder is really gone."
    )]
    ForceUnlock(ForceUnlockArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct DirArg {
    /// The template folder or file (default: the current directory); relative paths in templates resolve against the current directory, as in Packer
    #[arg(value_name = "TEMPLATE")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct VarArgs {
    /// Set a variable: NAME=VALUE (repeatable; later wins)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,

    /// Read variables from a file (repeatable; after *.auto.pkrvars.hcl)
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_files: Vec<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct LockArgs {
    /// Wait this long for the state lock (e.g. 30s, 5m) instead of failing at once
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_timeout: String,
}

/// `--backend-config`, on every command that reads or writes the state.
#[derive(Debug, Args, Clone, Default)]
pub struct BackendArgs {
    /// Set a state backend setting, overriding the `backend` block (repeatable):
    /// bucket, key_prefix, region, endpoint, profile. Without a block: an s3 backend
    #[arg(long = "backend-config", value_name = "KEY=VALUE")]
    pub backend_config: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Print diagnostics as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct PlanOptions {
    #[command(flatten)]
    pub vars: VarArgs,

    /// Only this image and the images it is built from (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub selected: Vec<String>,

    /// Rebuild this image even if its inputs did not change (repeatable)
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,

    /// Ask the clouds whether recorded artifacts still exist (--refresh=false: no API calls)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub refresh: bool,

    /// Plan in full: do not answer from the plan cache, and hash every input file again instead of trusting the file-hash cache (both in .imgform/cache/)
    #[arg(long)]
    pub no_cache: bool,

    #[command(flatten)]
    pub lock: LockArgs,

    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub options: PlanOptions,

    /// Print the plan as JSON on stdout
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,

    /// Print the plan as a Markdown PR comment
    #[arg(long)]
    pub markdown: bool,

    /// Also save the plan to FILE, for `imgform apply FILE` to apply exactly
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there are no changes, 2 when there are, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A saved plan (from `plan --out`) to apply exactly, or the template folder or file
    #[arg(value_name = "PLANFILE|TEMPLATE")]
    pub plan_or_dir: Option<PathBuf>,
    #[command(flatten)]
    pub options: PlanOptions,

    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,

    /// Build at most N images at a time
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub parallelism: usize,

    /// Keep a new image whose tests failed (it is still not recorded)
    #[arg(long)]
    pub keep_failed: bool,

    /// When a build fails or is interrupted: `cleanup` deletes its temporary
    /// cloud resources (instance, key pair, security group, server); `abort`
    /// keeps them for debugging and prints what was kept, as Packer's
    /// -on-error=abort
    #[arg(long, value_name = "cleanup|abort", default_value = "cleanup", value_parser = ["cleanup", "abort"])]
    pub on_error: String,

    /// Print the plan and results as JSON on stdout
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,

    /// Print the results as a Markdown PR comment on stdout (with each
    /// rebuilt image's package changes); the plan goes to stderr
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A saved plan file (from `plan --out`) or a definition dir
    #[arg(value_name = "PLANFILE|DIR")]
    pub plan_or_dir: Option<PathBuf>,
    /// Print as JSON
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print a saved plan as a Markdown PR comment
    #[arg(long)]
    pub markdown: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Print the report as JSON
    #[arg(long, conflicts_with_all = ["markdown", "html"])]
    pub json: bool,
    /// Print the report as Markdown
    #[arg(long, conflicts_with = "html")]
    pub markdown: bool,
    /// Print the report as one self-contained HTML page (SVG graph, no
    /// scripts, no external assets): `imgform drift --html > drift.html`
    #[arg(long)]
    pub html: bool,
    /// Exit 2 when anything drifted (the default for drift; accepted for symmetry with plan)
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Hash every input file again instead of trusting the file-hash cache in .imgform/cache/
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub vars: VarArgs,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List recorded images: address, target, artifact
    #[command(after_help = "Example:\n  imgform state list")]
    List(StateListArgs),
    /// Show one recorded image in full
    #[command(after_help = "Example:\n  imgform state show golden.null.base")]
    Show(StateAddrArgs),
    /// Forget a recorded image without deleting its artifact
    #[command(
        after_help = "Example:\n  imgform state rm golden.null.old\n\nThe artifact itself is left alone; the next plan will build the image again if it is still defined."
    )]
    Rm(StateAddrArgs),
    /// Find artifacts the state lacks (e.g. after a crash) and adopt them
    #[command(
        after_help = "Examples:\n  imgform state recover                   show what would be adopted\n  imgform state recover --auto-approve    adopt it\n\nAn artifact is adopted when it was built from exactly the current definitions of its\nimage (its tags or name carry the content address), e.g. when imgform was killed\nbetween capturing an image and writing the state."
    )]
    Recover(StateRecoverArgs),
    /// Adopt a given artifact as the image ADDR
    #[command(
        after_help = "Example:\n  imgform state import chroot.base output/chroot-base-0e5f0f4c7c1a.qcow2\n\nThe artifact must have been built from the current definitions of ADDR (its tags or\nname carry the content address); otherwise imgform cannot vouch for its contents."
    )]
    Import(StateImportArgs),
}

#[derive(Debug, Args)]
pub struct StateRecoverArgs {
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub vars: VarArgs,
    /// Adopt without asking
    #[arg(long)]
    pub auto_approve: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct StateImportArgs {
    /// Image address, e.g. golden.chroot.base
    pub address: String,
    /// The artifact id: a qcow2 path, an AMI id, a Glance image id
    pub id: String,
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub vars: VarArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct StateListArgs {
    #[command(flatten)]
    pub dir: DirArg,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct StateAddrArgs {
    /// Image address, e.g. golden.null.base
    pub address: ImageAddr,
    #[command(flatten)]
    pub dir: DirArg,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct SbomArgs {
    /// Image address, e.g. golden.chroot.base
    pub address: ImageAddr,
    #[command(flatten)]
    pub dir: DirArg,
    /// Document format
    #[arg(long, value_name = "cyclonedx|spdx", default_value = "cyclonedx", value_parser = ["cyclonedx", "spdx"])]
    pub format: String,
    /// The SBOM of the build this one replaced
    #[arg(long)]
    pub previous: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Image address, e.g. golden.chroot.base
    pub address: ImageAddr,
    #[command(flatten)]
    pub dir: DirArg,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct TaintArgs {
    /// Image address, e.g. golden.null.base
    pub address: ImageAddr,
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub lock: LockArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The lock id to remove (shown by the run that found the state locked)
    pub lock_id: String,
    #[command(flatten)]
    pub dir: DirArg,
    #[command(flatten)]
    pub backend: BackendArgs,
}
