//! Recorded state: what was built for each target, and where that record is
//! kept.
//!
//! [`model`] is the on-disk document (`StateFile` and its records, format
//! version 1); [`store`] is how it is stored: the [`StateBackend`] trait, the
//! local filesystem backend, the content-addressed object store for manifests
//! and small text inputs, and the state lock; [`s3`] keeps the same layout
//! in an S3 bucket (cargo feature `aws`). The file format is described for
//! humans in `state/README.md` at the repository root, with a JSON Schema per
//! version in `state/schema/`.
//!
//! Callers go through a `StateBackend` only: never read or write files under a
//! `state/` directory directly, never set `serial` (the backend bumps it when
//! contents change), and hold the lock ([`acquire`]) around every
//! load → change → save.

pub mod journal;
pub mod model;
#[cfg(feature = "aws")]
pub mod s3;
pub mod store;

pub use model::*;
#[cfg(feature = "aws")]
pub use s3::{S3Backend, S3Settings};
pub use store::*;
