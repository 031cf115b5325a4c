//! `imgform apply [PLANFILE|DIR]`: plan (or read a saved plan), confirm,
//! build, record.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use super::{prepare, Status};
use crate::addr::{ImageAddr, TargetAddr};
use crate::apply::events::{CancelToken, Event};
use crate::apply::{self, ApplyOptions, BuildJob};
use crate::cli::settings::{lock_timeout, Output};
use crate::cli::ApplyArgs;
use crate::config::LoadOptions;
use crate::plan::file::PlanFile;
use crate::plan::Plan;
use crate::state::{StateBackend, StateFile};
use crate::views::{self, Style};

pub async fn run(chdir: Option<&Path>, args: ApplyArgs, output: Output) -> Result<Status> {
    let saved = args.target.as_ref().filter(|t| t.is_file()).cloned();
    let dir: PathBuf = match (&saved, &args.target) {
        (Some(_), _) => chdir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        (None, Some(dir)) => dir.clone(),
        (None, None) => chdir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    super::def_dir_exists(&dir)?;
    let def_dir =
        std::fs::canonicalize(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let opts = &args.options;
    let timeout = lock_timeout(&opts.lock.lock_timeout).map_err(anyhow::Error::msg)?;
    let options = LoadOptions::from_env(opts.vars.vars.clone(), opts.vars.var_files.clone());
    let saved_file = match &saved {
        Some(path) => Some(PlanFile::read(path)?),
        None => None,
    };
    let flags = &opts.backend.backend_config;
    let backend = match &saved_file {
        Some(PlanFile {
            backend: Some(b), ..
        }) => prepare::backend_from_plan(&def_dir, b, flags)?,
        Some(_) => prepare::backend_for_saved_plan(&def_dir, flags)?,
        None => prepare::backend_for_dir(&def_dir, flags)?,
    };

    let (plan, jobs, lock, states) = match saved_file {
        Some(file) => {
            let lock = super::lock(&backend, "apply", timeout)?;
            let states = states_for_saved_plan(&backend, &file.plan)?;
            let mut jobs = prepare::jobs_from_plan_file(&file);
            for job in jobs.values_mut() {
                job.spec.def_dir = def_dir.clone();
            }
            if file.needs_secrets {
                take_secrets_from_definitions(&dir, &options, &mut jobs)?;
            }
            (file.plan, jobs, lock, states)
        }
        None => {
            let resolve = prepare::resolve_for(&dir, opts.refresh, flags)?;
            let prepared = prepare::prepare(&dir, &options, &resolve)?;
            super::print_warnings(&prepared.warnings, output);
            let lock = super::lock(&backend, "apply", timeout)?;
            let states = prepare::load_states(&backend, &prepared)?;
            let request = prepare::PlanRequest {
                replace: &opts.replace,
                targets: &opts.targets,
                refresh: opts.refresh,
            };
            let plan = prepare::make_plan(&prepared, &backend, &states, &request).await?;
            let jobs = prepare::build_jobs(&prepared, &plan);
            (plan, jobs, lock, states)
        }
    };

    if !args.json {
        print!(
            "{}",
            views::plan::render(
                &plan,
                Style {
                    color: output.color_stdout
                }
            )
        );
    }
    if !plan.has_changes() {
        if args.json {
            print!(
                "{}",
                views::json::to_string(&result_json(&plan, &Default::default()))
            );
        }
        return Ok(Status::Ok);
    }
    if !args.auto_approve && args.target.as_ref().is_none_or(|t| !t.is_file()) {
        if !output.stdin_is_tty {
            anyhow::bail!("apply needs confirmation, but stdin is not a terminal\n  hint: review the plan above and run `imgform apply --auto-approve`, or save it with `imgform plan --out plan.bin` and run `imgform apply plan.bin`");
        }
        eprint!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("reading the answer")?;
        if answer.trim() != "yes" {
            eprintln!("Apply cancelled.");
            return Ok(Status::Failed);
        }
    }

    let outcome = execute(
        &plan,
        jobs,
        &*backend,
        states,
        &def_dir,
        (args.parallelism, args.keep_failed, args.on_error == "abort"),
        output,
    )
    .await;
    drop(lock);
    let outcome = outcome?;
    eprint!(
        "{}",
        views::progress::summary(
            &outcome,
            Style {
                color: output.color_stderr
            }
        )
    );
    if args.json {
        print!("{}", views::json::to_string(&result_json(&plan, &outcome)));
    }
    Ok(if outcome.ok() {
        Status::Ok
    } else {
        Status::Failed
    })
}

/// The states a saved plan was made against, refusing a plan whose state
/// moved on, that belongs to another lineage, or that was already applied.
fn states_for_saved_plan(
    backend: &dyn StateBackend,
    plan: &Plan,
) -> Result<BTreeMap<TargetAddr, StateFile>> {
    let mut states = BTreeMap::new();
    for (target, planned) in &plan.states {
        let mut state = backend
            .load(target)
            .with_context(|| format!("loading the state of target {target}"))?;
        let never_written = state.serial == 0 && state.images.is_empty();
        if never_written && planned.serial == 0 {
            // Neither existed: the plan's lineage becomes the state's.
            state.lineage = planned.lineage.clone();
        } else if state.lineage != planned.lineage {
            anyhow::bail!(
                "the plan is for another state of target {target} (lineage {}, but the state's is {})\n  hint: make a new plan against this state: imgform plan --out FILE",
                planned.lineage,
                state.lineage
            );
        } else if state.serial != planned.serial {
            anyhow::bail!(
                "stale plan: state serial {}, plan was made at {} (target {target})\n  hint: the state changed since the plan was made (another apply, or this plan was already applied); make a new plan: imgform plan --out FILE",
                state.serial,
                planned.serial
            );
        }
        states.insert(TargetAddr(target.clone()), state);
    }
    Ok(states)
}

/// Secrets are never saved in a plan: evaluate the definitions again to
/// take them, and refuse if any image's inputs changed since the plan (the
/// content address covers a digest of every sensitive value, so a different
/// secret is refused too).
fn take_secrets_from_definitions(
    dir: &Path,
    options: &LoadOptions,
    jobs: &mut BTreeMap<ImageAddr, BuildJob>,
) -> Result<()> {
    // The plan's own resolutions: a saved plan is applied exactly.
    let recorded = jobs
        .iter()
        .filter_map(|(a, j)| j.spec.base.clone().map(|b| (a.clone(), b)))
        .collect();
    let resolve = prepare::Resolve::Recorded(tokio::runtime::Handle::current(), recorded);
    let prepared = prepare::prepare(dir, options, &resolve)?;
    for (addr, job) in jobs.iter_mut() {
        let Some(now) = prepared.images.get(addr) else {
            anyhow::bail!("{addr} is no longer defined; the saved plan cannot be applied\n  hint: make a new plan");
        };
        if now.manifest.content_address != job.content_address {
            anyhow::bail!(
                "the definitions of {addr} changed since the plan was made (content {} now, {} in the plan)\n  hint: a saved plan is applied exactly; make a new plan: imgform plan --out FILE",
                views::short_address(&now.manifest.content_address),
                views::short_address(&job.content_address)
            );
        }
        // Same inputs: the fresh spec is the plan's, with the secrets.
        let def_dir = job.spec.def_dir.clone();
        job.spec = now.spec.clone();
        job.spec.def_dir = def_dir;
    }
    Ok(())
}

/// Runs the build with progress on stderr, per-image logs and Ctrl-C
/// handling.
async fn execute(
    plan: &Plan,
    jobs: BTreeMap<ImageAddr, BuildJob>,
    backend: &dyn StateBackend,
    states: BTreeMap<TargetAddr, StateFile>,
    def_dir: &Path,
    (parallelism, keep_failed, keep_on_error): (usize, bool, bool),
    output: Output,
) -> Result<apply::ApplyOutcome> {
    let err_style = Style {
        color: output.color_stderr,
    };
    let run_id = uuid::Uuid::new_v4().to_string();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let (cancel_tx, cancel) = CancelToken::new();

    let log_dir = def_dir.join(".imgform").join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let printer = tokio::spawn(async move {
        let mut logs: BTreeMap<String, std::fs::File> = BTreeMap::new();
        while let Some(event) = events_rx.recv().await {
            if let Some(line) = views::progress::line(&event, err_style) {
                eprintln!("{line}");
            }
            if let (Some(addr), Some(line)) =
                (event_addr(&event), views::progress::log_line(&event))
            {
                let slug = addr.slug();
                if !logs.contains_key(&slug) {
                    match std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log_dir.join(format!("{slug}.log")))
                    {
                        Ok(f) => {
                            logs.insert(slug.clone(), f);
                        }
                        Err(_) => continue,
                    }
                }
                if let Some(file) = logs.get_mut(&slug) {
                    let _ = writeln!(file, "{line}");
                }
            }
        }
    });

    // Ctrl-C: the first stops new work and cancels running builds (which
    // clean up); the second exits at once.
    let signal_tx = events_tx.clone();
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel_tx.send(true);
            let _ = signal_tx.send(Event::Interrupted);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "Interrupted twice: exiting now. Run `imgform plan` to see what was recorded."
                );
                std::process::exit(130);
            }
        }
    });

    let options = ApplyOptions {
        parallelism,
        keep_failed,
        keep_on_error,
        def_dir: def_dir.to_path_buf(),
        run_id,
    };
    let result = apply::apply(plan, jobs, backend, states, &options, events_tx, cancel).await;
    signals.abort();
    let _ = printer.await;
    Ok(result?)
}

fn result_json(plan: &Plan, outcome: &apply::ApplyOutcome) -> serde_json::Value {
    let pairs = |v: &Vec<(ImageAddr, String)>, key: &str| {
        v.iter()
            .map(|(a, s)| serde_json::json!({"address": a.to_string(), key: s}))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "format_version": views::json::JSON_FORMAT_VERSION,
        "plan": views::json::plan(plan),
        "result": {
            "built": pairs(&outcome.built, "artifact_id"),
            "failed": pairs(&outcome.failed, "message"),
            "skipped": outcome.skipped.iter().map(|(a, b)| serde_json::json!({"address": a.to_string(), "because": b.to_string()})).collect::<Vec<_>>(),
            "destroyed": pairs(&outcome.destroyed, "artifact_id"),
            "not_started": outcome.not_started.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "interrupted": outcome.interrupted,
        }
    })
}

fn event_addr(event: &Event) -> Option<&ImageAddr> {
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
