//! Saved plans (`imgform plan --out FILE`): everything `apply FILE` needs to
//! do exactly what was reviewed, without evaluating changed definitions.
//!
//! The file holds the plan (with each target's lineage and serial when it
//! was made), and for every image it builds the evaluated spec, the
//! manifest bytes and the text inputs. Secrets are never written: specs
//! drop secret attributes, and a plan whose data would contain the value of
//! a sensitive variable is refused. When a plan needs secrets, `apply FILE`
//! evaluates the definitions once more only to take the secrets, and
//! refuses if any image's content address differs from the plan's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Plan;
use crate::addr::ContentAddress;
use crate::spec::ImageSpec;

pub const PLAN_FILE_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    pub format_version: u32,
    pub imgform_version: String,
    pub created_at: String,
    pub plan: Plan,
    pub builds: Vec<PlannedBuild>,
    /// Some image has secret attributes or sensitive values: apply must
    /// evaluate the definitions again to get them (and check addresses).
    pub needs_secrets: bool,
    /// The state backend the plan was made against (`backend` block and
    /// `--backend-config`), so `apply FILE` uses the same one without the
    /// definitions. None: the local `state/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<SavedBackend>,
    /// The template folder or file the plan was made of, as given (relative
    /// to the directory `plan` ran in): `apply FILE` there finds the same
    /// state and definitions. None: the current directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<std::path::PathBuf>,
}

/// A backend's type and settings (bucket, key prefix, region, endpoint,
/// profile: never credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBackend {
    pub kind: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedBuild {
    pub spec: ImageSpec,
    pub content_address: ContentAddress,
    /// The canonical manifest, as text (it is canonical JSON).
    pub manifest: String,
    /// Text inputs: path → contents (for the object store).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub text_inputs: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("cannot read plan file {path}: {message}")]
    Read { path: String, message: String },
    #[error("{path} is a plan file of format {found}; this imgform reads format {PLAN_FILE_FORMAT_VERSION}. Make the plan again with this version.")]
    Version { path: String, found: u32 },
    #[error("refusing to write a plan file: it would contain the value of a sensitive variable (in `{field}` of {image}). Keep secrets in secret attributes (password, secret_key, ...) or pass them at apply time.")]
    Sensitive { image: String, field: String },
}

impl PlanFile {
    pub fn to_bytes(&self, sensitive: &[String]) -> Result<Vec<u8>, PlanFileError> {
        for build in &self.builds {
            let text = serde_json::to_string(&build.spec).unwrap_or_default();
            for secret in sensitive.iter().filter(|s| s.len() >= 3) {
                if text.contains(secret.as_str()) {
                    let field = build
                        .spec
                        .settings
                        .iter()
                        .chain(&build.spec.inputs)
                        .find(|(_, v)| v.to_string().contains(secret.as_str()))
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| "a provisioner".to_owned());
                    return Err(PlanFileError::Sensitive {
                        image: build.spec.addr.to_string(),
                        field,
                    });
                }
            }
        }
        let mut bytes = serde_json::to_vec_pretty(self).expect("plan file serializes");
        bytes.push(b'\n');
        Ok(bytes)
    }

    pub fn read(path: &std::path::Path) -> Result<PlanFile, PlanFileError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| PlanFileError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let probe: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| PlanFileError::Read {
                path: shown.clone(),
                message: format!("not a plan file ({e})"),
            })?;
        let found = probe
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as u32;
        if found != PLAN_FILE_FORMAT_VERSION {
            return Err(PlanFileError::Version { path: shown, found });
        }
        serde_json::from_value(probe).map_err(|e| PlanFileError::Read {
            path: shown,
            message: format!("damaged plan file ({e})"),
        })
    }
}
