//! `imgform drift`: which recorded images are stale, missing or untracked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};

use super::{prepare, Status};
use crate::addr::{ImageAddr, TargetAddr};
use crate::cli::settings::{definition_dir, Output};
use crate::cli::DriftArgs;
use crate::config::LoadOptions;
use crate::drift::{self, CurrentImage, DriftInput};
use crate::drivers;
use crate::state::StateBackend;
use crate::views::{self, Style};

pub async fn run(chdir: Option<&Path>, args: DriftArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(chdir, &args.dir);
    super::def_dir_exists(&dir)?;
    let options = LoadOptions::from_env(args.vars.vars.clone(), args.vars.var_files.clone());
    let prepared = prepare::prepare(
        &dir,
        &options,
        &prepare::Resolve::Refresh(tokio::runtime::Handle::current()),
    )?;
    super::print_warnings(&prepared.warnings, output);
    let def_dir = &prepared.project.def_dir;
    let backend = prepare::backend_for(
        def_dir,
        prepared.project.backend.as_ref(),
        &args.backend.backend_config,
    )?;
    let states = prepare::load_states(&backend, &prepared)?;

    // Refresh: is every recorded artifact still there? Which artifacts of
    // defined images does no state know?
    let missing = prepare::missing_artifacts(&prepared, &states, None).await?;
    let mut known: BTreeSet<(String, String)> = BTreeSet::new();
    for state in states.values() {
        for (addr, record) in &state.images {
            known.insert((addr.clone(), record.artifact.id.clone()));
            for previous in &record.previous {
                known.insert((addr.clone(), previous.id.clone()));
            }
        }
    }
    // Every defined image's artifacts at its target, asked at once.
    let builders: Vec<(
        &ImageAddr,
        &crate::spec::ImageSpec,
        Box<dyn drivers::Builder>,
    )> = prepared
        .images
        .iter()
        .filter_map(|(addr, image)| {
            drivers::builder_for(&image.spec.builder).map(|b| (addr, &image.spec, b))
        })
        .collect();
    let limit = tokio::sync::Semaphore::new(16);
    let listings = drivers::join_all(
        builders
            .iter()
            .map(|(addr, spec, builder)| {
                let limit = &limit;
                Box::pin(async move {
                    let _permit = limit.acquire().await.expect("semaphore open");
                    builder
                        .list_artifacts(spec)
                        .await
                        .with_context(|| format!("listing artifacts of {addr}"))
                }) as drivers::BoxFuture<'_, Result<Vec<String>>>
            })
            .collect(),
    )
    .await;
    let mut untracked: Vec<(ImageAddr, TargetAddr, String)> = Vec::new();
    for ((addr, spec, _), listed) in builders.iter().zip(listings) {
        for id in listed? {
            if !known.contains(&(addr.to_string(), id.clone())) {
                untracked.push(((*addr).clone(), spec.target.clone(), id));
            }
        }
    }

    let mut old_manifests = BTreeMap::new();
    for state in states.values() {
        for (addr, record) in &state.images {
            let current = addr
                .parse::<ImageAddr>()
                .ok()
                .and_then(|a| prepared.images.get(&a));
            if current.is_some_and(|c| c.manifest.content_address != record.content_address) {
                let hex = record.content_address.trim_start_matches("sha256:");
                if let Some(v) = backend
                    .get_object(hex)
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                {
                    old_manifests.insert(record.content_address.clone(), v);
                }
            }
        }
    }
    let durations: BTreeMap<&ImageAddr, std::time::Duration> = prepared
        .images
        .iter()
        .filter_map(|(a, i)| {
            i.spec
                .max_age
                .as_deref()
                .and_then(crate::spec::parse_duration)
                .map(|d| (a, d))
        })
        .collect();
    let images: BTreeMap<ImageAddr, CurrentImage> = prepared
        .images
        .iter()
        .map(|(a, i)| {
            (
                a.clone(),
                CurrentImage {
                    target: &i.spec.target,
                    content_address: &i.manifest.content_address,
                    manifest: &i.manifest.json,
                    max_age: i.spec.max_age.as_deref().zip(durations.get(a).copied()),
                },
            )
        })
        .collect();
    let report = drift::drift(DriftInput {
        states: &states,
        images: &images,
        old_manifests: &old_manifests,
        missing: &missing,
        untracked: &untracked,
        now: chrono::Utc::now(),
    });
    if args.json {
        print!(
            "{}",
            views::json::to_string(&serde_json::to_value(&report).unwrap_or_default())
        );
    } else if args.markdown {
        print!("{}", views::drift::markdown(&report));
    } else {
        print!(
            "{}",
            views::drift::human(
                &report,
                Style {
                    color: output.color_stdout
                }
            )
        );
    }
    Ok(if report.has_drift() {
        Status::Changes
    } else {
        Status::Ok
    })
}
