//! What can go wrong in the pipeline, one variant per failure, each with
//! its hint as data (rendered by `views::error`).

use std::path::PathBuf;

use crate::addr::{ContentAddress, ImageAddr, ParseAddrError};
use crate::build::BuildError;
use crate::config::backend::BackendFlagError;
use crate::diag::Diagnostics;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The definitions cannot be used: every problem, with its place.
    #[error("{0}")]
    Definitions(#[source] Diagnostics),
    #[error("{} does not exist", dir.display())]
    NoDefinitionDir { dir: PathBuf },
    #[error("cannot read or create the key of sensitive values' digests, {}: {source}", path.display())]
    SensitiveKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}")]
    State {
        context: String,
        #[source]
        source: StateError,
    },
    #[error(transparent)]
    BackendFlag(#[from] BackendFlagError),
    #[error("the s3 backend needs a bucket{}", block.as_ref().map(|l| format!(" (backend block at {l})")).unwrap_or_default())]
    BackendNeedsBucket {
        block: Option<crate::diag::SourceLoc>,
    },
    #[error("this imgform was built without S3 support (cargo feature `aws`), so it cannot use the s3 backend")]
    NoS3Support,
    #[error("{flag}: {source}")]
    BadAddress {
        flag: &'static str,
        #[source]
        source: ParseAddrError,
    },
    #[error("{flag} {address}: no such image in the definitions{}", suggestion.as_ref().map(|c| format!(" (did you mean {c}?)")).unwrap_or_default())]
    UnknownImage {
        flag: &'static str,
        address: String,
        suggestion: Option<String>,
    },
    #[error("refreshing {address}")]
    Refresh {
        address: ImageAddr,
        #[source]
        source: BuildError,
    },
    #[error("the plan is for another state of target {target} (lineage {planned}, but the state's is {actual})")]
    OtherLineage {
        target: String,
        planned: String,
        actual: String,
    },
    #[error("stale plan: state serial {actual}, plan was made at {planned} (target {target})")]
    StalePlan {
        target: String,
        planned: u64,
        actual: u64,
    },
    #[error("{address} is no longer defined; the saved plan cannot be applied")]
    NoLongerDefined { address: ImageAddr },
    #[error("the definitions of {address} changed since the plan was made (content {} now, {} in the plan)", now.short(), planned.short())]
    DefinitionsChanged {
        address: ImageAddr,
        now: ContentAddress,
        planned: ContentAddress,
    },
    /// A saved plan whose recorded definition of an image does not give the
    /// content address the plan says it builds.
    #[error("the plan file was modified, or the files it was made from changed since: {address} in the plan is {}, but its recorded definition gives {}", planned.short(), now.short())]
    PlanModified {
        address: ImageAddr,
        now: ContentAddress,
        planned: ContentAddress,
    },
    #[error("inspecting {id}")]
    Inspect {
        id: String,
        #[source]
        source: BuildError,
    },
    #[error("recording {address}")]
    Record {
        address: ImageAddr,
        #[source]
        source: Box<crate::apply::ApplyError>,
    },
    #[error("listing artifacts of {address}")]
    ListArtifacts {
        address: ImageAddr,
        #[source]
        source: BuildError,
    },
}

impl PipelineError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            PipelineError::NoDefinitionDir { .. } => Some(
                "pass the folder (or one file) holding your *.pkr.hcl templates as the last argument, or change to a folder first with -C DIR".to_owned(),
            ),
            PipelineError::BackendFlag(e) => Some(e.hint()),
            PipelineError::BackendNeedsBucket { .. } => Some(
                "set `bucket = \"NAME\"` in the backend \"s3\" block, or pass --backend-config bucket=NAME".to_owned(),
            ),
            PipelineError::NoS3Support => Some("build with the default features".to_owned()),
            PipelineError::SensitiveKey { .. } => Some(
                "set IMGFORM_SENSITIVE_KEY (e.g. from your CI's secrets), or make .imgform/ writable".to_owned(),
            ),
            PipelineError::UnknownImage { .. } => {
                Some("`imgform validate` lists the defined images".to_owned())
            }
            PipelineError::OtherLineage { .. } => {
                Some("make a new plan against this state: imgform plan --out FILE".to_owned())
            }
            PipelineError::StalePlan { .. } => Some("the state changed since the plan was made (another apply, or this plan was already applied); make a new plan: imgform plan --out FILE".to_owned()),
            PipelineError::NoLongerDefined { .. } => Some("make a new plan".to_owned()),
            PipelineError::PlanModified { .. } => Some(
                "apply only plan files imgform wrote, in the checkout they were made in; make a new plan: imgform plan --out FILE"
                    .to_owned(),
            ),
            PipelineError::DefinitionsChanged { .. } => Some(
                "a saved plan is applied exactly; make a new plan: imgform plan --out FILE"
                    .to_owned(),
            ),
            PipelineError::Definitions(_)
            | PipelineError::State { .. }
            | PipelineError::BadAddress { .. }
            | PipelineError::Refresh { .. }
            | PipelineError::ListArtifacts { .. }
            | PipelineError::Inspect { .. }
            | PipelineError::Record { .. } => None,
        }
    }
}

impl From<Diagnostics> for PipelineError {
    fn from(d: Diagnostics) -> Self {
        PipelineError::Definitions(d)
    }
}

/// `StateError` with what imgform was doing.
pub fn state_error(context: impl Into<String>) -> impl FnOnce(StateError) -> PipelineError {
    let context = context.into();
    move |source| PipelineError::State { context, source }
}
