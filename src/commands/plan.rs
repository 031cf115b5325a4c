//! `imgform plan`.

use std::path::Path;

use anyhow::{Context, Result};

use super::Status;
use crate::cli::settings::Output;
use crate::cli::PlanArgs;
use crate::config::LoadOptions;
use crate::pipeline::{self, backend, refresh, Resolve};
use crate::views::{self, Style};

pub async fn run(args: PlanArgs, output: Output) -> Result<Status> {
    let dir = super::definition_dir(&args.dir)?;
    let opts = &args.options;
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
    if args.json {
        print!("{}", views::json::to_string(&views::json::plan(&plan)));
    } else if args.markdown {
        print!("{}", views::markdown::plan(&plan));
    } else {
        let style = Style {
            color: output.color_stdout,
        };
        print!("{}", views::plan::render(&plan, style));
    }
    // The process ends next: freeing thousands of manifests costs more than
    // it is worth (as compilers do, leave that to the OS).
    std::mem::forget(prepared);
    std::mem::forget(states);
    Ok(if args.detailed_exitcode && plan.has_changes() {
        Status::Changes
    } else {
        Status::Ok
    })
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
