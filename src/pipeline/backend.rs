//! Which state backend a run uses: the definitions' `backend` block with
//! `--backend-config` flags on top, the one a saved plan recorded, or the
//! local `state/` folder beside the definitions.

use std::path::{Path, PathBuf};

use super::error::PipelineError;
use crate::config::{self, BackendConfig, BackendKind};
use crate::plan::file::SavedBackend;
use crate::state::{LocalBackend, StateBackend};

/// Where the local backend keeps the state of the definitions in `def_dir`.
pub fn state_dir(def_dir: &Path) -> PathBuf {
    def_dir.join("state")
}

/// The state backend of the definitions in `def_dir`: their `backend` block
/// (`block`, as loaded with the project) with `--backend-config` `flags`
/// applied; `state/` in the definition dir when there is neither.
pub fn backend_for(
    def_dir: &Path,
    block: Option<&BackendConfig>,
    flags: &[String],
) -> Result<Box<dyn StateBackend>, PipelineError> {
    match config::backend::with_flags(block.cloned(), flags)? {
        Some(c) if c.kind != BackendKind::Local => s3_backend(&c),
        _ => Ok(Box::new(LocalBackend::new(state_dir(def_dir)))),
    }
}

/// [`backend_for`] for commands that do not load the definitions: only the
/// `backend` block is read from the files in `dir`.
pub fn backend_for_dir(
    dir: &Path,
    flags: &[String],
) -> Result<Box<dyn StateBackend>, PipelineError> {
    let block = config::load_backend(dir)?;
    backend_for(&config::template_folder(dir), block.as_ref(), flags)
}

/// The backend for `apply PLANFILE`: the one the plan recorded (with
/// `--backend-config` flags on top), or, for a plan made against local state
/// or by an older imgform, the definitions' block. That must work even when
/// the definitions no longer parse: then only flags can choose S3, and
/// `warn` says so. The saved plan's lineage check still refuses a state the
/// plan was not made against.
pub fn backend_for_saved_plan(
    dir: &Path,
    saved: Option<&SavedBackend>,
    flags: &[String],
    warn: impl FnOnce(String),
) -> Result<Box<dyn StateBackend>, PipelineError> {
    if let Some(saved) = saved {
        let block = BackendConfig {
            kind: match saved.kind.as_str() {
                "s3" => BackendKind::S3,
                _ => BackendKind::Local,
            },
            settings: saved.settings.clone(),
            loc: None,
        };
        return backend_for(dir, Some(&block), flags);
    }
    match config::load_backend(dir) {
        Ok(block) => backend_for(dir, block.as_ref(), flags),
        Err(diags) => {
            warn(format!(
                "the definitions in {} do not parse ({}), so no backend block can be read; using {}\n  hint: pass --backend-config to choose the backend explicitly",
                dir.display(),
                diags,
                if flags.is_empty() {
                    "the local state in state/"
                } else {
                    "the --backend-config settings"
                }
            ));
            backend_for(dir, None, flags)
        }
    }
}

/// The backend a plan is made against, for its plan file (`None`: local).
pub fn saved_backend(
    block: Option<&BackendConfig>,
    flags: &[String],
) -> Result<Option<SavedBackend>, PipelineError> {
    Ok(config::backend::with_flags(block.cloned(), flags)?
        .filter(|c| c.kind != BackendKind::Local)
        .map(|c| SavedBackend {
            kind: "s3".to_owned(),
            settings: c.settings.clone(),
        }))
}

#[cfg(feature = "aws")]
fn s3_backend(c: &BackendConfig) -> Result<Box<dyn StateBackend>, PipelineError> {
    let setting = |name: &str| c.get(name).map(str::to_owned).filter(|v| !v.is_empty());
    let Some(bucket) = setting("bucket") else {
        return Err(PipelineError::BackendNeedsBucket {
            block: c.loc.clone(),
        });
    };
    let settings = crate::state::S3Settings {
        bucket,
        key_prefix: c
            .get("key_prefix")
            .unwrap_or(crate::state::s3::DEFAULT_KEY_PREFIX)
            .to_owned(),
        region: setting("region"),
        endpoint: setting("endpoint"),
        profile: setting("profile"),
    };
    let backend = crate::state::S3Backend::new(settings)
        .map_err(super::error::state_error("opening the s3 backend"))?;
    Ok(Box::new(backend))
}

#[cfg(not(feature = "aws"))]
fn s3_backend(_: &BackendConfig) -> Result<Box<dyn StateBackend>, PipelineError> {
    Err(PipelineError::NoS3Support)
}
