//! `imgform graph`: the dependency graph as DOT.

use anyhow::Result;

use super::Status;
use crate::cli::settings::definition_dir;
use crate::cli::GraphArgs;
use crate::config::LoadOptions;
use crate::pipeline::{self, Resolve};

pub fn run(args: GraphArgs) -> Result<Status> {
    let dir = definition_dir(&args.dir);
    let options = LoadOptions::from_env(args.vars.vars, args.vars.var_files);
    let prepared = pipeline::prepare(&dir, &options, &Resolve::Skip)?;
    print!("{}", prepared.graph.to_dot());
    Ok(Status::Ok)
}
