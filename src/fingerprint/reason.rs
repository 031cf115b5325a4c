//! Why an image must be (re)built: the one vocabulary plans and drift
//! reports speak. Every view renders these values (no free-form strings),
//! and `Serialize` gives their JSON form (`{"kind": "input_changed", ...}`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an image must be (re)built or destroyed. Rendered by every view from
/// this one value; a new variant must be handled everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RebuildReason {
    /// The image has never been built (no record in the target's state).
    NotInState,
    /// A manifest field changed. `path` is a dotted path into the manifest,
    /// e.g. `inputs.source_ami` or `provisioners[1].config.inline`.
    InputChanged {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new: Option<Value>,
    },
    /// A file the image reads changed, appeared or disappeared.
    FileChanged {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new: Option<String>,
    },
    /// A variable that reaches the image's inputs has another value.
    VariableChanged { name: String },
    /// A parent image is rebuilt in this plan, or was rebuilt since this
    /// image was built from it.
    ParentRebuilt { address: String },
    /// The base image filter now resolves to another upstream image.
    BaseUpdated { old_id: String, new_id: String },
    /// A data source the image's inputs use answers something else now
    /// (`address` is `data.KIND.NAME`; old/new are its summaries, secrets as
    /// keyed digests; absent when the image did not use it then / now).
    DataChanged {
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new: Option<Value>,
    },
    /// The recorded artifact no longer exists (deleted out of band).
    ArtifactMissing { id: String },
    /// The recorded artifact's bytes no longer hash to the sha256 its build
    /// recorded (a local image edited, damaged or replaced since).
    ArtifactChanged {
        id: String,
        recorded: String,
        found: String,
    },
    /// Marked for rebuild with `imgform taint`.
    Tainted,
    /// Asked for with `--replace`.
    Forced,
    /// Recorded, but no longer defined.
    RemovedFromConfig,
    /// The inputs changed, but the previous manifest is not in the object
    /// store (or cannot be read), so the plan cannot say which.
    ContentChanged,
    /// The content addresses differ but no field of the two manifests does
    /// (a manifest stored by another version, or edited by hand): rebuilt to
    /// be sure, never silently kept.
    UnknownChange,
}
