//! `imgform validate`.

use anyhow::Result;

use super::Status;
use crate::cli::settings::{definition_dir, Output};
use crate::cli::ValidateArgs;
use crate::config::LoadOptions;
use crate::pipeline::{self, PipelineError, Resolve};
use crate::views::{self, Style};

pub fn run(args: ValidateArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(&args.dir);
    let options = LoadOptions::from_env(args.vars.vars, args.vars.var_files);
    match pipeline::prepare(&dir, &options, &Resolve::Skip) {
        Ok(prepared) => {
            if args.json {
                print!(
                    "{}",
                    views::json::to_string(&views::json::diagnostics(true, &prepared.warnings))
                );
            } else {
                super::print_warnings(&prepared.warnings, output);
                let style = Style {
                    color: output.color_stdout,
                };
                println!(
                    "{} {} image(s) defined: {}",
                    style.green("The definitions are valid."),
                    prepared.images.len(),
                    prepared
                        .order
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(Status::Ok)
        }
        Err(PipelineError::Definitions(diags)) if args.json => {
            print!(
                "{}",
                views::json::to_string(&views::json::diagnostics(false, &diags.0))
            );
            Ok(Status::Failed)
        }
        Err(e) => Err(e.into()),
    }
}
