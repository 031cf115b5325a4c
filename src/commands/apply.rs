//! `imgform apply [PLANFILE|DIR]`: plan (or read a saved plan), confirm,
//! build, record.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use super::{CommandError, Status};
use crate::addr::{ImageAddr, TargetAddr};
use crate::apply::{self, ApplyOptions, BuildJob};
use crate::build::events::{CancelToken, Event};
use crate::cli::settings::Output;
use crate::cli::ApplyArgs;
use crate::config::LoadOptions;
use crate::pipeline::{self, backend, refresh, saved};
use crate::plan::file::PlanFile;
use crate::plan::Plan;
use crate::state::{StateBackend, StateFile};
use crate::views::{self, Style};

pub async fn run(args: ApplyArgs, output: Output) -> Result<Status> {
    let saved_plan = args
        .plan_or_dir
        .as_ref()
        .filter(|t| t.is_file() && !crate::config::is_template_file(t))
        .cloned();
    // A saved plan applies to the definitions here (after -C); else the
    // positional argument is the template folder or file.
    let saved_file = match &saved_plan {
        Some(path) => Some(PlanFile::read(path)?),
        None => None,
    };
    // A saved plan names the templates it was made of (`plan packer/ --out
    // p.bin`); run `apply p.bin` where `plan` ran.
    let dir: PathBuf = match (&saved_file, &args.plan_or_dir) {
        (Some(file), _) => file.templates.clone().unwrap_or_else(|| PathBuf::from(".")),
        (None, Some(dir)) => dir.clone(),
        (None, None) => PathBuf::from("."),
    };
    pipeline::definition_dir_exists(&dir)?;
    // The state and logs are kept with the templates; relative paths (and
    // so local artifacts) are under the current directory, as in Packer.
    let template_dir = std::fs::canonicalize(crate::config::template_folder(&dir))
        .with_context(|| format!("opening {}", dir.display()))?;
    let work_dir = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .context("finding the current directory")?;
    let flags = &args.options.backend.backend_config;
    // Nothing to do, and the plan cache knows it: as `plan` answers.
    let memo_request = super::plan::memo_request(&dir, &args.options);
    let cacheable = saved_file.is_none() && super::plan::cacheable(&args.options);
    if cacheable {
        if let Some(plan) = super::plan::cached_plan(&memo_request, &args.options)?
            .filter(|plan| !plan.has_changes())
        {
            show_plan(&plan, &args, output);
            return Ok(no_changes(&plan, &args));
        }
        crate::watch::start();
    }
    // The definitions are loaded once: their backend block chooses the
    // state, as for `plan`.
    let source = match saved_file {
        Some(file) => Source::Saved(file),
        None => Source::Definitions(Box::new(prepare_definitions(&dir, &args, output)?)),
    };
    let backend = match &source {
        Source::Saved(file) => backend::backend_for_saved_plan(
            &template_dir,
            file.backend.as_ref(),
            flags,
            |warning| eprintln!("warning: {warning}"),
        )?,
        Source::Definitions(prepared) => backend::backend_for(
            &prepared.project.template_dir,
            prepared.project.backend.as_ref(),
            flags,
        )?,
    };
    let work = match source {
        Source::Saved(file) => from_saved_plan(file, &dir, &work_dir, &args, &*backend)?,
        Source::Definitions(prepared) => {
            from_definitions(*prepared, &args, &memo_request, &*backend).await?
        }
    };
    let Work {
        plan,
        jobs,
        lock,
        mut states,
    } = work;
    apply::compact_leftovers(&*backend, &mut states)?;

    show_plan(&plan, &args, output);
    if !plan.has_changes() {
        return Ok(no_changes(&plan, &args));
    }
    if !args.auto_approve && saved_plan.is_none() && !confirmed(output)? {
        eprintln!("Apply cancelled.");
        return Ok(Status::Failed);
    }

    let settings = (
        args.parallelism,
        args.keep_failed,
        args.on_error == "abort",
        args.json,
    );
    let dirs = (template_dir.as_path(), work_dir.as_path());
    let outcome = execute(&plan, jobs, &*backend, states, dirs, settings, output).await;
    drop(lock);
    let outcome = outcome?;
    let style = Style {
        color: output.color_stderr,
    };
    eprint!("{}", views::progress::summary(&outcome, style));
    if args.json {
        // The last line of the event stream.
        println!("{}", result_json(&plan, &outcome));
    } else if args.markdown {
        print!("{}", views::markdown::apply(&outcome));
    }
    Ok(match crate::interrupt::received() {
        Some(signal) => Status::Interrupted(signal),
        None if outcome.ok() => Status::Ok,
        None => Status::Failed,
    })
}

/// The plan an apply is about to carry out (on stderr when stdout is for
/// the markdown result; not at all for `--json`).
fn show_plan(plan: &Plan, args: &ApplyArgs, output: Output) {
    if args.markdown {
        let style = Style {
            color: output.color_stderr,
        };
        eprint!("{}", views::plan::render(plan, style));
    } else if !args.json {
        let style = Style {
            color: output.color_stdout,
        };
        print!("{}", views::plan::render(plan, style));
    }
}

/// The result of an apply with nothing to do.
fn no_changes(plan: &Plan, args: &ApplyArgs) -> Status {
    let nothing = apply::ApplyOutcome::default();
    if args.json {
        println!("{}", result_json(plan, &nothing));
    } else if args.markdown {
        print!("{}", views::markdown::apply(&nothing));
    }
    Status::Ok
}

/// What an apply will do, under the state lock.
struct Work<'a> {
    plan: Plan,
    jobs: BTreeMap<ImageAddr, BuildJob>,
    lock: crate::state::LockGuard<'a>,
    states: BTreeMap<TargetAddr, StateFile>,
}

/// A saved plan, exactly: its jobs, against the state it was made for.
fn from_saved_plan<'a>(
    file: PlanFile,
    dir: &Path,
    def_dir: &Path,
    args: &ApplyArgs,
    backend: &'a dyn StateBackend,
) -> Result<Work<'a>> {
    let opts = &args.options;
    let lock = super::lock(backend, "apply", &opts.lock.lock_timeout)?;
    let states = saved::states_for_saved_plan(backend, &file.plan)?;
    let mut jobs = saved::jobs_from_plan_file(&file);
    for job in jobs.values_mut() {
        job.spec.def_dir = def_dir.to_path_buf();
    }
    if file.needs_secrets {
        let mut options =
            LoadOptions::from_env(opts.vars.vars.clone(), opts.vars.var_files.clone());
        options.file_cache = !opts.no_cache;
        saved::take_secrets_from_definitions(dir, &options, &mut jobs)?;
    }
    saved::verify_jobs(&jobs, &states)?;
    Ok(Work {
        plan: file.plan,
        jobs,
        lock,
        states,
    })
}

/// A fresh plan of the definitions in `dir`.
/// What an apply works from: a saved plan, or the definitions here.
enum Source {
    Saved(PlanFile),
    Definitions(Box<pipeline::Prepared>),
}

/// Loads, evaluates and fingerprints the definitions at `dir`, printing
/// their warnings.
fn prepare_definitions(dir: &Path, args: &ApplyArgs, output: Output) -> Result<pipeline::Prepared> {
    let opts = &args.options;
    let mut options = LoadOptions::from_env(opts.vars.vars.clone(), opts.vars.var_files.clone());
    options.file_cache = !opts.no_cache;
    let resolve = pipeline::Resolve::for_plan(opts.refresh, &opts.backend.backend_config);
    let prepared = pipeline::prepare(dir, &options, &resolve)?;
    super::print_warnings(&prepared.warnings, output);
    Ok(prepared)
}

async fn from_definitions<'a>(
    prepared: pipeline::Prepared,
    args: &ApplyArgs,
    memo_request: &pipeline::memo::Request<'_>,
    backend: &'a dyn StateBackend,
) -> Result<Work<'a>> {
    let opts = &args.options;
    let lock = super::lock(backend, "apply", &opts.lock.lock_timeout)?;
    let states = refresh::load_states(backend, &prepared)?;
    let request = super::plan::request(opts);
    let plan = pipeline::plan::make_plan(&prepared, backend, &states, &request).await?;
    prepared.save_file_cache();
    // Only a plan with nothing to do stays true once this apply has run.
    if let Some(watched) = crate::watch::finish().filter(|_| !plan.has_changes()) {
        pipeline::memo::save(memo_request, &prepared, backend, &states, &plan, watched);
    }
    let jobs = saved::build_jobs(&prepared, &plan);
    Ok(Work {
        plan,
        jobs,
        lock,
        states,
    })
}

/// Asks on the terminal; only `yes` goes on.
fn confirmed(output: Output) -> Result<bool> {
    if !output.stdin_is_tty {
        return Err(CommandError::NeedsConfirmation.into());
    }
    eprint!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(answer.trim() == "yes")
}

/// Runs the build with progress on stderr, per-image logs (in the template
/// folder) and Ctrl-C handling; local artifacts are under `work_dir`.
async fn execute(
    plan: &Plan,
    jobs: BTreeMap<ImageAddr, BuildJob>,
    backend: &dyn StateBackend,
    states: BTreeMap<TargetAddr, StateFile>,
    (template_dir, work_dir): (&Path, &Path),
    (parallelism, keep_failed, keep_on_error, json): (usize, bool, bool, bool),
    output: Output,
) -> Result<apply::ApplyOutcome> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let (events_tx, events_rx) = mpsc::unbounded_channel::<Event>();
    let (cancel_tx, cancel) = CancelToken::new();

    // Temporary dirs of runs that were killed (their scripts may hold
    // secrets) go before this run makes its own.
    sweep_stale_temp_dirs();
    let log_dir = template_dir.join(".imgform").join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let planned = plan
        .changes
        .iter()
        .filter(|c| {
            matches!(
                c.action,
                crate::plan::Action::Build | crate::plan::Action::Rebuild
            )
        })
        .map(|c| c.address.clone())
        .collect();
    let printer = super::progress::spawn(
        events_rx,
        planned,
        super::progress::Settings {
            output,
            json,
            log_dir,
        },
    );

    // Ctrl-C or SIGTERM while building: the first stops new work and
    // cancels running builds (which clean up: VMs stopped, instances
    // deleted, and are recorded as usual); the second exits at once.
    let signal_tx = events_tx.clone();
    let graceful = crate::interrupt::handle_gracefully(move |_| {
        let _ = cancel_tx.send(true);
        let _ = signal_tx.send(Event::Interrupted);
    });

    let options = ApplyOptions {
        parallelism,
        keep_failed,
        keep_on_error,
        def_dir: work_dir.to_path_buf(),
        run_id,
    };
    let result = apply::apply(plan, jobs, backend, states, &options, events_tx, cancel).await;
    drop(graceful);
    let _ = printer.await;
    // Again at the end: a tool a killed run had started (mke2fs, qemu-img)
    // may have still been writing into its dir at the start.
    sweep_stale_temp_dirs();
    Ok(result?)
}

/// Removes the temporary dirs of imgform runs that are gone, saying so.
fn sweep_stale_temp_dirs() {
    let (swept, kept) = crate::paths::sweep_stale_temp_dirs(&std::env::temp_dir());
    if !swept.is_empty() {
        eprintln!(
            "Removed {} temporary dir(s) of imgform runs that are gone.",
            swept.len()
        );
    }
    for dir in kept {
        eprintln!(
            "warning: {} belongs to an imgform run that is gone but has something mounted under it; unmount it (umount -R) and delete it",
            dir.display()
        );
    }
}

fn result_json(plan: &Plan, outcome: &apply::ApplyOutcome) -> serde_json::Value {
    serde_json::json!({
        "format_version": views::json::JSON_FORMAT_VERSION,
        "plan": views::json::plan(plan),
        "result": outcome,
    })
}

pub(super) fn event_addr(event: &Event) -> Option<&ImageAddr> {
    match event {
        Event::Started { addr }
        | Event::Step { addr, .. }
        | Event::Output { addr, .. }
        | Event::Built { addr, .. }
        | Event::Failed { addr, .. }
        | Event::Skipped { addr, .. }
        | Event::Cancelled { addr }
        | Event::Destroyed { addr, .. } => Some(addr),
        Event::StateSaved { .. } | Event::Interrupted => None,
    }
}
