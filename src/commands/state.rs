//! `imgform state list|show|rm|recover|import`, `imgform taint|untaint` and
//! `imgform force-unlock`.

use std::path::Path;

use anyhow::{Context, Result};

use super::{definition_dir, CommandError, Status};
use crate::addr::ImageAddr;
use crate::cli::settings::Output;
use crate::cli::{ForceUnlockArgs, StateAddrArgs, StateListArgs, TaintArgs};
use crate::config::LoadOptions;
use crate::pipeline::{self, backend, recover, refresh, Prepared, Resolve};
use crate::state::{StateBackend, StateFile};
use crate::views::{self, Style};

fn all_states(backend: &dyn StateBackend) -> Result<Vec<StateFile>> {
    let mut states = Vec::new();
    for target in backend.targets().context("listing state targets")? {
        states.push(backend.load(&target)?);
    }
    Ok(states)
}

pub fn list(args: StateListArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let states = all_states(&*backend::backend_for_dir(
        &dir,
        &args.backend.backend_config,
    )?)?;
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

pub fn show(args: StateAddrArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let states = all_states(&*backend::backend_for_dir(
        &dir,
        &args.backend.backend_config,
    )?)?;
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
    Err(CommandError::NotInState {
        address: args.address,
    }
    .into())
}

pub fn rm(args: StateAddrArgs) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let backend = backend::backend_for_dir(&dir, &args.backend.backend_config)?;
    let _lock = super::lock(&*backend, "state rm", &args.lock.lock_timeout)?;
    for mut state in all_states(&*backend)? {
        if let Some(record) = state.images.remove(&args.address) {
            backend.save(&mut state)?;
            println!(
                "Removed {} from the state of {} (artifact {} was left in place).",
                args.address, state.target, record.artifact.id
            );
            return Ok(Status::Ok);
        }
    }
    Err(CommandError::NotInState {
        address: args.address,
    }
    .into())
}

/// `imgform taint ADDR` (`tainted = true`) and `untaint ADDR`: the mark
/// makes the next plan rebuild the image with the reason `tainted`.
pub fn taint(args: TaintArgs, tainted: bool) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let backend = backend::backend_for_dir(&dir, &args.backend.backend_config)?;
    let operation = if tainted { "taint" } else { "untaint" };
    let _lock = super::lock(&*backend, operation, &args.lock.lock_timeout)?;
    for mut state in all_states(&*backend)? {
        let Some(record) = state.images.get_mut(&args.address) else {
            continue;
        };
        if record.tainted == tainted {
            println!(
                "{} is {}already marked for rebuild.",
                args.address,
                if tainted { "" } else { "not " }
            );
            return Ok(Status::Ok);
        }
        record.tainted = tainted;
        backend.save(&mut state)?;
        if tainted {
            println!(
                "{} is marked for rebuild: the next apply rebuilds it (and what is built from it).",
                args.address
            );
        } else {
            println!("{} is no longer marked for rebuild.", args.address);
        }
        return Ok(Status::Ok);
    }
    Err(CommandError::NotInState {
        address: args.address,
    }
    .into())
}

pub fn force_unlock(args: ForceUnlockArgs) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let backend = backend::backend_for_dir(&dir, &args.backend.backend_config)?;
    backend.force_unlock(&args.lock_id)?;
    println!("Lock {} removed. The state is unlocked.", args.lock_id);
    Ok(Status::Ok)
}

/// The definitions, evaluated and fingerprinted with fresh base lookups, as
/// `state recover` and `state import` compare artifacts against them.
fn prepare(dir: &Path, vars: &crate::cli::VarArgs) -> Result<Prepared> {
    let options = LoadOptions::from_env(vars.vars.clone(), vars.var_files.clone());
    let resolve = Resolve::Refresh(tokio::runtime::Handle::current());
    Ok(pipeline::prepare(dir, &options, &resolve)?)
}

pub async fn recover(args: crate::cli::StateRecoverArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let prepared = prepare(&dir, &args.vars)?;
    let project = &prepared.project;
    let backend = backend::backend_for(
        &project.template_dir,
        project.backend.as_ref(),
        &args.backend.backend_config,
    )?;
    let _lock = super::lock(&*backend, "state recover", &args.lock.lock_timeout)?;
    let mut states = refresh::load_states(&*backend, &prepared)?;
    let found = recover::adoptable(&prepared, &states).await?;
    let style = Style {
        color: output.color_stdout,
    };
    if found.is_empty() {
        println!(
            "Nothing to recover: every artifact built from the current definitions is recorded."
        );
        return Ok(Status::Ok);
    }
    println!(
        "{}",
        style.bold("Artifacts the state lacks, built from the current definitions:")
    );
    for (addr, artifact) in &found {
        println!("  + {addr}  {}", artifact.id);
    }
    if !args.auto_approve {
        println!("\nRun `imgform state recover --auto-approve` to adopt them.");
        return Ok(Status::Ok);
    }
    for (addr, artifact) in &found {
        recover::adopt(&prepared, addr, artifact, &mut states, &*backend)?;
        println!("Adopted {addr}: {}", artifact.id);
    }
    Ok(Status::Ok)
}

pub async fn import(args: crate::cli::StateImportArgs) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let addr: ImageAddr = args.address.parse()?;
    let prepared = prepare(&dir, &args.vars)?;
    let Some(image) = prepared.images.get(&addr) else {
        return Err(CommandError::NotDefined { address: addr }.into());
    };
    let builder = crate::drivers::kind_of(&image.spec.builder)
        .expect("a defined image's builder is known")
        .implementation()?;
    let content = &image.fingerprint.content_address;
    let Some(artifact) = builder.adopt(&image.spec, content, &args.id).await? else {
        return Err(CommandError::NotAdoptable {
            id: args.id,
            address: addr,
            content: content.clone(),
        }
        .into());
    };
    let project = &prepared.project;
    let backend = backend::backend_for(
        &project.template_dir,
        project.backend.as_ref(),
        &args.backend.backend_config,
    )?;
    let _lock = super::lock(&*backend, "state import", &args.lock.lock_timeout)?;
    let mut states = refresh::load_states(&*backend, &prepared)?;
    recover::adopt(&prepared, &addr, &artifact, &mut states, &*backend)?;
    println!("Imported {addr}: {}", artifact.id);
    Ok(Status::Ok)
}
