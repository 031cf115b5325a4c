//! `imgform show [PLANFILE|DIR]`: a saved plan, or the recorded state of
//! every target.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{CommandError, Status};
use crate::cli::settings::Output;
use crate::cli::ShowArgs;
use crate::pipeline::backend;
use crate::plan::file::PlanFile;
use crate::state::StateBackend;
use crate::views::{self, Style};

pub fn run(args: ShowArgs, output: Output) -> Result<Status> {
    let style = Style {
        color: output.color_stdout,
    };
    let saved_plan = args
        .plan_or_dir
        .as_ref()
        .filter(|t| t.is_file() && !crate::config::is_template_file(t));
    if let Some(path) = saved_plan {
        let file = PlanFile::read(path)?;
        if args.json {
            print!("{}", views::json::to_string(&views::json::plan(&file.plan)));
        } else if args.markdown {
            print!("{}", views::markdown::plan(&file.plan));
        } else {
            println!(
                "Saved plan {} (made {} by imgform {})\n",
                path.display(),
                file.created_at,
                file.imgform_version
            );
            print!("{}", views::plan::render(&file.plan, style));
        }
        return Ok(Status::Ok);
    }
    if args.markdown {
        return Err(CommandError::MarkdownNeedsPlan.into());
    }
    let dir: PathBuf = args
        .plan_or_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    crate::pipeline::definition_dir_exists(&dir)?;
    let backend = backend::backend_for_dir(&dir, &args.backend.backend_config)?;
    let mut states = Vec::new();
    for target in backend.targets().context("listing state targets")? {
        states.push(backend.load(&target)?);
    }
    if args.json {
        print!(
            "{}",
            views::json::to_string(
                &serde_json::json!({"format_version": views::json::JSON_FORMAT_VERSION, "states": states})
            )
        );
    } else {
        print!("{}", views::state::summary(&states, style));
    }
    Ok(Status::Ok)
}
