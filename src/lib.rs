//! imgform: `terraform plan/apply` for golden machine images.
//!
//! Data flows one way: `config` (load + evaluate HCL) → `spec` (evaluated
//! images, no HCL types) → `fingerprint` (canonical manifest, content
//! address) → `graph` (petgraph DAG) → `plan` (pure diff against `state`) →
//! `views` (human / json / markdown) or `apply` (tokio DAG walk over
//! `drivers` and `provision`). Only `commands` wires these together and only
//! `main` knows about the terminal and exit codes.

pub mod addr;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diag;
pub mod drift;
pub mod drivers;
pub mod fingerprint;
pub mod graph;
pub mod plan;
pub mod provision;
pub mod spec;
pub mod state;
pub mod views;
