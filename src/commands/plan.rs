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
    let prepared = prepare::prepare(&dir, &options)?;
    super::print_warnings(&prepared.warnings, output);
    let backend = prepare::backend_for(&prepared.project.def_dir);
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
    if args.json {
        print!("{}", views::json::to_string(&views::json::plan(&plan)));
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
    Ok(if args.detailed_exitcode && plan.has_changes() {
        Status::Changes
    } else {
        Status::Ok
    })
}
