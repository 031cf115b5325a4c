//! `imgform state list|show|rm` and `imgform force-unlock`.

use std::path::Path;

use anyhow::{Context, Result};

use super::{prepare, Status};
use crate::cli::settings::{definition_dir, lock_timeout, Output};
use crate::cli::{ForceUnlockArgs, StateAddrArgs, StateListArgs};
use crate::state::{StateBackend, StateFile};
use crate::views::{self, Style};

fn all_states(backend: &dyn StateBackend) -> Result<Vec<StateFile>> {
    let mut states = Vec::new();
    for target in backend.targets().context("listing state targets")? {
        states.push(backend.load(&target)?);
    }
    Ok(states)
}

pub fn list(chdir: Option<&Path>, args: StateListArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let states = all_states(&prepare::backend_for(&dir))?;
    if args.json {
        let images: Vec<_> = states
            .iter()
            .flat_map(|s| s.images.iter().map(move |(a, r)| serde_json::json!({"address": a, "target": s.target, "artifact_id": r.artifact.id, "content_address": r.content_address, "built_at": r.built_at})))
            .collect();
        print!(
            "{}",
            views::json::to_string(
                &serde_json::json!({"format_version": views::json::JSON_FORMAT_VERSION, "images": images})
            )
        );
    } else {
        print!(
            "{}",
            views::state::list(
                &states,
                Style {
                    color: output.color_stdout
                }
            )
        );
    }
    Ok(Status::Ok)
}

pub fn show(chdir: Option<&Path>, args: StateAddrArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let states = all_states(&prepare::backend_for(&dir))?;
    for state in &states {
        if let Some(record) = state.images.get(&args.address) {
            if args.json {
                print!(
                    "{}",
                    views::json::to_string(
                        &serde_json::json!({"format_version": views::json::JSON_FORMAT_VERSION, "address": args.address, "target": state.target, "record": record})
                    )
                );
            } else {
                print!(
                    "{}",
                    views::state::show(
                        &args.address,
                        &state.target,
                        record,
                        Style {
                            color: output.color_stdout
                        }
                    )
                );
            }
            return Ok(Status::Ok);
        }
    }
    anyhow::bail!(
        "{} is not in the state\n  hint: `imgform state list` shows the recorded images",
        args.address
    )
}

pub fn rm(chdir: Option<&Path>, args: StateAddrArgs) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let backend = prepare::backend_for(&dir);
    let timeout = lock_timeout(&args.lock.lock_timeout).map_err(anyhow::Error::msg)?;
    let _lock = super::lock(&backend, "state rm", timeout)?;
    for mut state in all_states(&backend)? {
        if let Some(record) = state.images.remove(&args.address) {
            backend.save(&mut state)?;
            println!(
                "Removed {} from the state of {} (artifact {} was left in place).",
                args.address, state.target, record.artifact.id
            );
            return Ok(Status::Ok);
        }
    }
    anyhow::bail!(
        "{} is not in the state\n  hint: `imgform state list` shows the recorded images",
        args.address
    )
}

pub fn force_unlock(chdir: Option<&Path>, args: ForceUnlockArgs) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let backend = prepare::backend_for(&dir);
    backend.force_unlock(&args.lock_id)?;
    println!("Lock {} removed. The state is unlocked.", args.lock_id);
    Ok(Status::Ok)
}
