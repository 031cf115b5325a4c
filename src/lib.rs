//! imgform: `terraform plan/apply` for golden machine images.
//!
//! Data flows one way: `config` (load + evaluate HCL) → `spec` (evaluated
//! images, no HCL types) → resolve (base image filters, through the
//! builders) → `fingerprint` (typed manifest, content address, reasons) →
//! `graph` (petgraph DAG) → `plan` (pure diff against `state`) → `views`
//! (human / json / markdown) or `apply` (tokio DAG walk over `drivers` and
//! `provision`). `pipeline` runs those stages in order; `commands` only
//! parses arguments, calls it and picks a view; only `main` knows about the
//! terminal and exit codes.
//!
//! Layers, lowest first (no module imports one above it): `addr`, `diag`,
//! `paths`, `watch`, `interrupt`, `sensitive`, `fault`, `schema`, `sbom`, `spec`, `aws` (SDK
//! configuration), `state` · `build` (events, build context) · `provision` ·
//! `drivers`, `data` · `config`, `fingerprint`, `graph`, `plan`, `drift` · `apply` ·
//! `pipeline` · `views` · `cli`, `commands`.
//! Every builder, provisioner and data source kind is described once, in its
//! own module, and listed in `drivers::KINDS`, `provision::KINDS` or
//! `data::KINDS`.

pub mod addr;
pub mod apply;
#[cfg(feature = "aws")]
pub mod aws;
pub mod build;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod diag;
pub mod drift;
pub mod drivers;
pub mod fault;
pub mod fingerprint;
pub mod graph;
pub mod interrupt;
pub mod paths;
pub mod pipeline;
pub mod plan;
pub mod postprocess;
pub mod provision;
pub mod sbom;
pub mod schema;
pub mod sensitive;
pub mod spec;
pub mod state;
#[cfg(test)]
mod testing;
pub mod views;
pub mod watch;

/// How many threads a parallel loop uses: one per core, at most `max`
/// (and at least one).
pub fn threads(max: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(max)
        .max(1)
}
