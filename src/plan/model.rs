//! The plan as data: what will happen to each image and why.
//!
//! A [`Plan`] is produced by the pure planner, rendered by `views`, saved by
//! `plan --out`, and executed as-is by `apply`. Every action other than
//! no-op carries at least one [`RebuildReason`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::addr::{ContentAddress, ImageAddr, TargetAddr};
pub use crate::fingerprint::RebuildReason;
use crate::state::Artifact;

pub const PLAN_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "build")]
    Build,
    #[serde(rename = "rebuild")]
    Rebuild,
    #[serde(rename = "no-op")]
    NoOp,
    #[serde(rename = "destroy")]
    Destroy,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Build => "build",
            Action::Rebuild => "rebuild",
            Action::NoOp => "no-op",
            Action::Destroy => "destroy",
        }
    }

    /// Whether apply has work to do for this action.
    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp)
    }

    /// Whether apply builds a new artifact.
    pub fn builds(self) -> bool {
        matches!(self, Action::Build | Action::Rebuild)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentChange {
    pub old: Option<ContentAddress>,
    pub new: Option<ContentAddress>,
}

/// Unified diffs for humans: of the manifest and of changed text inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeDiff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
}

impl ChangeDiff {
    pub fn is_empty(&self) -> bool {
        self.manifest.is_none() && self.files.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: ImageAddr,
    pub target: TargetAddr,
    pub builder: String,
    pub action: Action,
    pub reasons: Vec<RebuildReason>,
    pub content: ContentChange,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<ImageAddr>,
    /// The artifact recorded now (what a rebuild replaces or destroy removes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_artifact: Option<Artifact>,
    #[serde(default, skip_serializing_if = "ChangeDiff::is_empty")]
    pub diff: ChangeDiff,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    pub lineage: String,
    pub serial: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub build: usize,
    pub rebuild: usize,
    pub destroy: usize,
    pub unchanged: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    /// In apply order: parents before children, destroys last.
    pub changes: Vec<Change>,
    /// The state each target had when the plan was made.
    pub states: BTreeMap<String, StateRef>,
    pub refresh: bool,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Build => s.build += 1,
                Action::Rebuild => s.rebuild += 1,
                Action::Destroy => s.destroy += 1,
                Action::NoOp => s.unchanged += 1,
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action.is_change())
    }

    pub fn change(&self, addr: &ImageAddr) -> Option<&Change> {
        self.changes.iter().find(|c| &c.address == addr)
    }
}
