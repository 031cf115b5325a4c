//! `imgform show`: the recorded state of every target.

use std::path::Path;

use anyhow::{Context, Result};

use super::{prepare, Status};
use crate::cli::settings::{definition_dir, Output};
use crate::cli::ShowArgs;
use crate::state::StateBackend;
use crate::views::{self, Style};

pub fn run(chdir: Option<&Path>, args: ShowArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let backend = prepare::backend_for(&dir);
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
        print!(
            "{}",
            views::state::summary(
                &states,
                Style {
                    color: output.color_stdout
                }
            )
        );
    }
    Ok(Status::Ok)
}
