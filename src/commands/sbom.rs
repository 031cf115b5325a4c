//! `imgform sbom ADDR` and `imgform diff ADDR`: the recorded packages of an
//! image, and what changed since its previous build.

use anyhow::{Context, Result};

use super::{definition_dir, CommandError, Status};
use crate::addr::ImageAddr;
use crate::cli::settings::Output;
use crate::cli::{DiffArgs, SbomArgs};
use crate::pipeline::backend;
use crate::sbom::{self, Inventory, Subject};
use crate::state::{ImageRecord, StateBackend};
use crate::views::{self, Style};

pub fn sbom(args: SbomArgs) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let backend = backend::backend_for_dir(&dir, &args.backend.backend_config)?;
    let record = recorded(&*backend, &args.address)?;
    let hex = if args.previous {
        record.previous_sbom.as_deref()
    } else {
        record.sbom.as_deref()
    };
    let bytes = object(&*backend, &args.address, hex, args.previous)?;
    if args.format == "cyclonedx" {
        print!("{}", String::from_utf8_lossy(&bytes));
        return Ok(Status::Ok);
    }
    let inventory = sbom::from_cyclonedx(&bytes)?;
    let (address, content_address, built_at) = subject_of(&bytes, &args.address, &record);
    let subject = Subject {
        address: &address,
        content_address: &content_address,
        built_at: &built_at,
    };
    print!(
        "{}",
        String::from_utf8_lossy(&sbom::to_spdx(&subject, &inventory))
    );
    Ok(Status::Ok)
}

pub fn diff(args: DiffArgs, output: Output) -> Result<Status> {
    let dir = definition_dir(&args.dir)?;
    let backend = backend::backend_for_dir(&dir, &args.backend.backend_config)?;
    let record = recorded(&*backend, &args.address)?;
    let new = inventory(&*backend, &args.address, record.sbom.as_deref(), false)?;
    let old = inventory(
        &*backend,
        &args.address,
        record.previous_sbom.as_deref(),
        true,
    )?;
    let changes = sbom::changes(&old, &new);
    if args.json {
        print!(
            "{}",
            views::json::to_string(&serde_json::json!({
                "format_version": views::json::JSON_FORMAT_VERSION,
                "address": args.address,
                "packages": changes,
            }))
        );
    } else {
        let style = Style {
            color: output.color_stdout,
        };
        print!("{}", views::packages::diff(&args.address, &changes, style));
    }
    Ok(Status::Ok)
}

/// The record of `address`, in whichever target's state holds it.
fn recorded(backend: &dyn StateBackend, address: &ImageAddr) -> Result<ImageRecord> {
    for target in backend.targets().context("listing state targets")? {
        if let Some(record) = backend.load(&target)?.images.remove(address) {
            return Ok(record);
        }
    }
    Err(CommandError::NotInState {
        address: address.clone(),
    }
    .into())
}

fn object(
    backend: &dyn StateBackend,
    address: &ImageAddr,
    hex: Option<&str>,
    previous: bool,
) -> Result<Vec<u8>> {
    let which = if previous { "previous " } else { "" };
    let hex = hex.ok_or_else(|| CommandError::NoSbom {
        address: address.clone(),
        which,
    })?;
    backend.get_object(hex)?.ok_or_else(|| {
        CommandError::SbomObjectMissing {
            address: address.clone(),
            hex: hex.to_owned(),
        }
        .into()
    })
}

fn inventory(
    backend: &dyn StateBackend,
    address: &ImageAddr,
    hex: Option<&str>,
    previous: bool,
) -> Result<Inventory> {
    let bytes = object(backend, address, hex, previous)?;
    Ok(sbom::from_cyclonedx(&bytes)?)
}

/// The image an SBOM document describes, from its own metadata (so that the
/// SPDX of a previous build names that build), else from the record.
fn subject_of(bytes: &[u8], address: &ImageAddr, record: &ImageRecord) -> (String, String, String) {
    let doc: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let meta = &doc["metadata"];
    let text = |v: &serde_json::Value, fallback: &str| v.as_str().unwrap_or(fallback).to_owned();
    (
        text(&meta["component"]["name"], &address.to_string()),
        text(
            &meta["component"]["version"],
            record.content_address.as_str(),
        ),
        text(&meta["timestamp"], &record.built_at),
    )
}
