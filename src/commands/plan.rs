//! `imgform plan`.

use std::path::Path;

use anyhow::{Context, Result};

use super::Status;
use crate::cli::settings::Output;
use crate::cli::PlanArgs;
use crate::config::LoadOptions;
use crate::pipeline::{self, backend, memo, refresh, Resolve};
use crate::plan::Plan;
use crate::views::{self, Style};

pub async fn run(args: PlanArgs, output: Output) -> Result<Status> {
    let dir = super::definition_dir(&args.dir)?;
    let opts = &args.options;
    let memo_request = memo_request(&dir, opts);
    // The plan cache answers when nothing the last plan read has changed
    // (never for a saved plan, a remote state or with --no-cache).
    let cacheable = args.out.is_none() && cacheable(opts);
    if cacheable {
        if let Some(plan) = cached_plan(&memo_request, opts)? {
            return Ok(show(&args, &plan, output));
        }
        crate::watch::start();
    }
    let mut options = LoadOptions::from_env(opts.vars.vars.clone(), opts.vars.var_files.clone());
    options.file_cache = !opts.no_cache;
    let flags = &opts.backend.backend_config;
    let resolve = Resolve::for_plan(opts.refresh, flags);
    let prepared = pipeline::prepare(&dir, &options, &resolve)?;
    super::print_warnings(&prepared.warnings, output);
    let project = &prepared.project;
    let backend = backend::backend_for(&project.template_dir, project.backend.as_ref(), flags)?;
    let _lock = super::lock(&*backend, "plan", &opts.lock.lock_timeout)?;
    let states = refresh::load_states(&*backend, &prepared)?;
    let plan = pipeline::plan::make_plan(&prepared, &*backend, &states, &request(opts)).await?;
    prepared.save_file_cache();
    if let Some(watched) = crate::watch::finish() {
        memo::save(&memo_request, &prepared, &*backend, &states, &plan, watched);
    }
    if let Some(out) = &args.out {
        let saved = backend::saved_backend(project.backend.as_ref(), flags)?;
        let mut file = pipeline::saved::plan_file(&prepared, &plan, saved);
        file.templates = (dir != std::path::Path::new(".")).then(|| dir.clone());
        let bytes = file.to_bytes(&project.sensitive_values())?;
        write_atomically(out, &bytes)?;
        eprintln!(
            "Saved the plan to {}. Apply exactly this plan with: imgform apply {}",
            out.display(),
            out.display()
        );
    }
    let status = show(&args, &plan, output);
    // The process ends next: freeing thousands of manifests costs more than
    // it is worth (as compilers do, leave that to the OS).
    std::mem::forget(prepared);
    std::mem::forget(states);
    Ok(status)
}

/// The plan cache's request for the templates at `dir`.
pub fn memo_request<'a>(dir: &'a Path, opts: &'a crate::cli::PlanOptions) -> memo::Request<'a> {
    memo::Request {
        template: dir,
        vars: &opts.vars.vars,
        var_files: &opts.vars.var_files,
        replace: &opts.replace,
        selected: &opts.selected,
        refresh: opts.refresh,
    }
}

/// Whether the plan cache may answer: not with `--no-cache`, nor with
/// `--backend-config` (a remote state).
pub fn cacheable(opts: &crate::cli::PlanOptions) -> bool {
    !opts.no_cache && opts.backend.backend_config.is_empty()
}

/// The cached plan of `request`, if its inputs and (checked under the
/// lock) its state are unchanged. The lock is a plan's, even for `apply`:
/// this only reads, and a writer's lock would sweep the object store's
/// folders for what killed writers left, costing more than the answer.
pub fn cached_plan(
    request: &memo::Request,
    opts: &crate::cli::PlanOptions,
) -> Result<Option<Plan>> {
    let Some(hit) = memo::lookup(request) else {
        return Ok(None);
    };
    let backend = backend::backend_for(hit.template_dir(), None, &[])?;
    let _lock = super::lock(&*backend, "plan", &opts.lock.lock_timeout)?;
    Ok(hit.state_unchanged(&*backend))
}

/// Prints `plan` in the view asked for; the exit status it makes.
fn show(args: &PlanArgs, plan: &Plan, output: Output) -> Status {
    if args.json {
        print!("{}", views::json::to_string(&views::json::plan(plan)));
    } else if args.markdown {
        print!("{}", views::markdown::plan(plan));
    } else {
        let style = Style {
            color: output.color_stdout,
        };
        print!("{}", views::plan::render(plan, style));
    }
    if args.detailed_exitcode && plan.has_changes() {
        Status::Changes
    } else {
        Status::Ok
    }
}

/// The plan request of `plan` and `apply`.
pub fn request(opts: &crate::cli::PlanOptions) -> pipeline::plan::PlanRequest<'_> {
    pipeline::plan::PlanRequest {
        replace: &opts.replace,
        selected: &opts.selected,
        refresh: opts.refresh,
    }
}

/// A plan file is whole or absent.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::paths::write_atomically(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}
