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
    let states = all_states(&*prepare::backend_for_dir(
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

pub fn show(chdir: Option<&Path>, args: StateAddrArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let states = all_states(&*prepare::backend_for_dir(
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
    anyhow::bail!(
        "{} is not in the state\n  hint: `imgform state list` shows the recorded images",
        args.address
    )
}

pub fn rm(chdir: Option<&Path>, args: StateAddrArgs) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let backend = prepare::backend_for_dir(&dir, &args.backend.backend_config)?;
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
    let backend = prepare::backend_for_dir(&dir, &args.backend.backend_config)?;
    backend.force_unlock(&args.lock_id)?;
    println!("Lock {} removed. The state is unlocked.", args.lock_id);
    Ok(Status::Ok)
}

/// Artifacts of defined images that the state lacks and that were built
/// from exactly the current definitions.
async fn adoptable(
    prepared: &prepare::Prepared,
    states: &std::collections::BTreeMap<crate::addr::TargetAddr, StateFile>,
) -> Result<Vec<(crate::addr::ImageAddr, crate::state::Artifact)>> {
    let mut out = Vec::new();
    for (addr, image) in &prepared.images {
        let Some(builder) = crate::drivers::builder_for(&image.spec.builder) else {
            continue;
        };
        let recorded = states
            .get(&image.spec.target)
            .and_then(|s| s.images.get(&addr.to_string()));
        if recorded.is_some_and(|r| r.content_address == image.manifest.content_address) {
            continue;
        }
        for id in builder
            .list_artifacts(&image.spec)
            .await
            .with_context(|| format!("listing artifacts of {addr}"))?
        {
            if let Some(artifact) = builder
                .adopt(&image.spec, &image.manifest.content_address, &id)
                .await
                .with_context(|| format!("inspecting {id}"))?
            {
                out.push((addr.clone(), artifact));
            }
        }
    }
    Ok(out)
}

pub async fn recover(
    chdir: Option<&Path>,
    args: crate::cli::StateRecoverArgs,
    output: Output,
) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let options =
        crate::config::LoadOptions::from_env(args.vars.vars.clone(), args.vars.var_files.clone());
    let prepared = prepare::prepare(
        &dir,
        &options,
        &prepare::Resolve::Refresh(tokio::runtime::Handle::current()),
    )?;
    let backend = prepare::backend_for(
        &prepared.project.def_dir,
        prepared.project.backend.as_ref(),
        &args.backend.backend_config,
    )?;
    let timeout = lock_timeout(&args.lock.lock_timeout).map_err(anyhow::Error::msg)?;
    let _lock = super::lock(&backend, "state recover", timeout)?;
    let mut states = prepare::load_states(&backend, &prepared)?;
    let found = adoptable(&prepared, &states).await?;
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
    let jobs = prepare::build_jobs_for(&prepared, found.iter().map(|(a, _)| a.clone()));
    for (addr, artifact) in &found {
        let job = jobs.get(addr).expect("job for a defined image");
        crate::apply::adopt(job, artifact, &mut states, &backend)?;
        let state = states.get_mut(&job.spec.target).expect("state");
        backend.save(state)?;
        println!("Adopted {addr}: {}", artifact.id);
    }
    Ok(Status::Ok)
}

pub async fn import(chdir: Option<&Path>, args: crate::cli::StateImportArgs) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let addr: crate::addr::ImageAddr = args.address.parse().map_err(anyhow::Error::msg)?;
    let options =
        crate::config::LoadOptions::from_env(args.vars.vars.clone(), args.vars.var_files.clone());
    let prepared = prepare::prepare(
        &dir,
        &options,
        &prepare::Resolve::Refresh(tokio::runtime::Handle::current()),
    )?;
    let Some(image) = prepared.images.get(&addr) else {
        anyhow::bail!("{addr} is not defined\n  hint: `imgform validate` lists the defined images");
    };
    let builder = crate::drivers::builder_for(&image.spec.builder)
        .ok_or_else(|| anyhow::anyhow!("no builder for `{}` yet", image.spec.builder))?;
    let Some(artifact) = builder
        .adopt(&image.spec, &image.manifest.content_address, &args.id)
        .await?
    else {
        anyhow::bail!(
            "{} is not an artifact of {addr} built from its current definitions (content {})\n  hint: imgform only adopts artifacts whose tags or name carry the image's current content address; run `imgform apply` to build it",
            args.id,
            crate::views::short_address(&image.manifest.content_address)
        );
    };
    let backend = prepare::backend_for(
        &prepared.project.def_dir,
        prepared.project.backend.as_ref(),
        &args.backend.backend_config,
    )?;
    let timeout = lock_timeout(&args.lock.lock_timeout).map_err(anyhow::Error::msg)?;
    let _lock = super::lock(&backend, "state import", timeout)?;
    let mut states = prepare::load_states(&backend, &prepared)?;
    let jobs = prepare::build_jobs_for(&prepared, std::iter::once(addr.clone()));
    let job = jobs.get(&addr).expect("job");
    crate::apply::adopt(job, &artifact, &mut states, &backend)?;
    backend.save(states.get_mut(&job.spec.target).expect("state"))?;
    println!("Imported {addr}: {}", artifact.id);
    Ok(Status::Ok)
}
