//! `imgform apply`: plan, confirm, build, record.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use tokio::sync::mpsc;

use super::{prepare, Status};
use crate::apply::events::{CancelToken, Event};
use crate::apply::{self, ApplyOptions};
use crate::cli::settings::{definition_dir, lock_timeout, Output};
use crate::cli::ApplyArgs;
use crate::config::LoadOptions;
use crate::views::{self, Style};

pub async fn run(chdir: Option<&Path>, args: ApplyArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let opts = &args.options;
    let timeout = lock_timeout(&opts.lock.lock_timeout).map_err(anyhow::Error::msg)?;
    let options = LoadOptions::from_env(opts.vars.vars.clone(), opts.vars.var_files.clone());
    let prepared = prepare::prepare(&dir, &options)?;
    super::print_warnings(&prepared.warnings, output);
    let def_dir = prepared.project.def_dir.clone();
    let backend = prepare::backend_for(&def_dir);
    let lock = super::lock(&backend, "apply", timeout)?;
    let states = prepare::load_states(&backend, &prepared)?;
    let plan = prepare::make_plan(
        &prepared,
        &backend,
        &states,
        &prepare::PlanRequest {
            replace: &opts.replace,
            targets: &opts.targets,
            refresh: opts.refresh,
        },
    )
    .await?;

    let err_style = Style {
        color: output.color_stderr,
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
                views::json::to_string(
                    &serde_json::json!({"format_version": views::json::JSON_FORMAT_VERSION, "plan": views::json::plan(&plan), "result": {"built": [], "failed": [], "skipped": [], "destroyed": []}})
                )
            );
        }
        return Ok(Status::Ok);
    }
    if !args.auto_approve {
        if !output.stdin_is_tty {
            anyhow::bail!("apply needs confirmation, but stdin is not a terminal\n  hint: review the plan above and run `imgform apply --auto-approve`");
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

    let jobs = prepare::build_jobs(&prepared, &plan);
    let run_id = uuid::Uuid::new_v4().to_string();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let (cancel_tx, cancel) = CancelToken::new();

    // Progress and per-image logs.
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
                let file = logs.entry(slug.clone()).or_insert_with(|| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(log_dir.join(format!("{slug}.log")))
                        .unwrap_or_else(|_| tempfile_sink())
                });
                let _ = writeln!(file, "{line}");
            }
        }
    });

    // Ctrl-C: first stops new work, second exits at once.
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

    let result = apply::apply(
        &plan,
        jobs,
        &backend,
        states,
        &ApplyOptions {
            parallelism: args.parallelism,
            def_dir: def_dir.clone(),
            run_id,
        },
        events_tx,
        cancel,
    )
    .await;
    signals.abort();
    let _ = printer.await;
    drop(lock);
    let outcome = result?;
    eprint!("{}", views::progress::summary(&outcome, err_style));
    if args.json {
        let pairs = |v: &Vec<(crate::addr::ImageAddr, String)>, key: &str| {
            v.iter()
                .map(|(a, s)| serde_json::json!({"address": a.to_string(), key: s}))
                .collect::<Vec<_>>()
        };
        print!(
            "{}",
            views::json::to_string(&serde_json::json!({
                "format_version": views::json::JSON_FORMAT_VERSION,
                "plan": views::json::plan(&plan),
                "result": {
                    "built": pairs(&outcome.built, "artifact_id"),
                    "failed": pairs(&outcome.failed, "message"),
                    "skipped": outcome.skipped.iter().map(|(a, b)| serde_json::json!({"address": a.to_string(), "because": b.to_string()})).collect::<Vec<_>>(),
                    "destroyed": pairs(&outcome.destroyed, "artifact_id"),
                    "interrupted": outcome.interrupted,
                }
            }))
        );
    }
    Ok(if outcome.ok() {
        Status::Ok
    } else {
        Status::Failed
    })
}

fn event_addr(event: &Event) -> Option<&crate::addr::ImageAddr> {
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

fn tempfile_sink() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null")
}
