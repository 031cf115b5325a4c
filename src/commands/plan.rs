//! `imgform plan`.

use std::path::Path;

use anyhow::Result;

use super::{prepare, Status};
use crate::cli::settings::{definition_dir, lock_timeout, Output};
use crate::cli::PlanArgs;
use crate::config::LoadOptions;
use crate::views::{self, Style};

pub async fn run(chdir: Option<&Path>, args: PlanArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let opts = &args.options;
    let timeout = lock_timeout(&opts.lock.lock_timeout).map_err(anyhow::Error::msg)?;
    let options = LoadOptions::from_env(opts.vars.vars.clone(), opts.vars.var_files.clone());
    let prepared = prepare::prepare(
        &dir,
        &options,
        &prepare::resolve_for(&dir, opts.refresh, &opts.backend.backend_config)?,
    )?;
    super::print_warnings(&prepared.warnings, output);
    let backend = prepare::backend_for(
        &prepared.project.def_dir,
        prepared.project.backend.as_ref(),
        &opts.backend.backend_config,
    )?;
    let _lock = super::lock(&backend, "plan", timeout)?;
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
    if let Some(out) = &args.out {
        let mut file = prepare::plan_file(&prepared, &plan);
        file.backend = prepare::saved_backend(
            prepared.project.backend.as_ref(),
            &opts.backend.backend_config,
        )?;
        let bytes = file.to_bytes(&prepared.project.sensitive_values())?;
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

/// Temp file next to `path`, then rename: a plan file is whole or absent.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use anyhow::Context;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
