//! `imgform drift`: which recorded images are stale, missing or untracked.

use anyhow::Result;

use super::Status;
use crate::cli::settings::Output;
use crate::cli::DriftArgs;
use crate::config::LoadOptions;
use crate::pipeline::{self, backend, refresh, Resolve};
use crate::views::{self, Style};

pub async fn run(args: DriftArgs, output: Output) -> Result<Status> {
    let dir = super::definition_dir(&args.dir)?;
    let mut options = LoadOptions::from_env(args.vars.vars.clone(), args.vars.var_files.clone());
    options.file_cache = !args.no_cache;
    let resolve = Resolve::Refresh(tokio::runtime::Handle::current());
    let prepared = pipeline::prepare(&dir, &options, &resolve)?;
    super::print_warnings(&prepared.warnings, output);
    let project = &prepared.project;
    let backend = backend::backend_for(
        &project.template_dir,
        project.backend.as_ref(),
        &args.backend.backend_config,
    )?;
    let states = refresh::load_states(&*backend, &prepared)?;
    let report = pipeline::drift::report(&prepared, &*backend, &states).await?;
    prepared.save_file_cache();
    if args.json {
        print!(
            "{}",
            views::json::to_string(&serde_json::to_value(&report).unwrap_or_default())
        );
    } else if args.markdown {
        print!("{}", views::drift::markdown(&report));
    } else if args.html {
        print!("{}", views::drift_html::page(&report, chrono::Utc::now()));
    } else {
        let style = Style {
            color: output.color_stdout,
        };
        print!("{}", views::drift::human(&report, style));
    }
    Ok(if report.has_drift() {
        Status::Changes
    } else {
        Status::Ok
    })
}
