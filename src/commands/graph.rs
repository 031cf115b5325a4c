//! `imgform graph`: the dependency graph as DOT.

use std::path::Path;

use anyhow::Result;

use super::{prepare, Status};
use crate::cli::settings::definition_dir;
use crate::cli::GraphArgs;
use crate::config::LoadOptions;

pub fn run(chdir: Option<&Path>, args: GraphArgs) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    let options = LoadOptions::from_env(args.vars.vars, args.vars.var_files);
    let prepared = prepare::prepare(&dir, &options, &prepare::Resolve::Skip)?;
    print!("{}", prepared.graph.to_dot());
    Ok(Status::Ok)
}
