//! The build of one image, as builders and provisioners see it: what they
//! are given ([`BuildContext`]), how they report ([`events`]), how they are
//! stopped ([`events::CancelToken`]) and how they fail ([`BuildError`]).
//!
//! This module sits below `drivers`, `provision` and `apply` so that none of
//! them has to import another for these shared types. It knows nothing of
//! plans, state files or the terminal.

pub mod events;

use std::future::Future;
use std::pin::Pin;

use crate::spec::ImageSpec;
use events::{CancelToken, EventSink};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A step of the build failed; `hint` says what to do about it. The one
    /// place a build error's hint is rendered: `message`, then on its own
    /// line `  hint: {hint}`.
    #[error("{message}{}", hint_line(.hint.as_deref()))]
    Failed {
        message: String,
        /// Boxed: a `BuildError` travels in every build `Result`, and a
        /// `String` here would make it a word larger.
        hint: Option<Box<str>>,
    },
    #[error("provisioner \"{kind}\" failed: {message}")]
    Provisioner { kind: String, message: String },
    #[error("cancelled")]
    Cancelled,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// A failed build step, without a hint (add one with [`Self::with_hint`]).
    pub fn failed(message: impl Into<String>) -> BuildError {
        BuildError::Failed {
            message: message.into(),
            hint: None,
        }
    }

    /// Adds what to do about a [`BuildError::Failed`]; other variants carry
    /// no hint and are returned unchanged.
    #[must_use]
    pub fn with_hint(self, hint: impl Into<String>) -> BuildError {
        match self {
            BuildError::Failed { message, .. } => BuildError::Failed {
                message,
                hint: Some(hint.into().into_boxed_str()),
            },
            other => other,
        }
    }
}

/// A hint on its own line after the message, or nothing: how every error
/// that carries a hint as data renders it.
pub(crate) fn hint_line(hint: Option<&str>) -> String {
    hint.map(|h| format!("\n  hint: {h}")).unwrap_or_default()
}

/// What a builder needs to build one image.
pub struct BuildContext<'a> {
    pub spec: &'a ImageSpec,
    pub content_address: &'a str,
    /// Identifies this apply run (tags, temporary names).
    pub run_id: &'a str,
    pub events: EventSink,
    pub cancel: CancelToken,
    /// `--keep-failed`: keep an artifact whose tests failed (not recorded).
    pub keep_failed: bool,
    /// `--on-error=abort`: on failure keep the temporary resources (instance,
    /// key pair, security group) for debugging and say what was kept.
    pub keep_on_error: bool,
    /// The image's packages, read at the end of its build stage (see
    /// `provision::inventory`); `apply` records them as its SBOM.
    pub inventory: &'a InventorySlot,
}

/// Where a build leaves the packages it found.
pub type InventorySlot = std::sync::Mutex<Option<crate::sbom::Inventory>>;

/// Runs futures concurrently on the current task and returns their outputs
/// in order (refresh asks the cloud about many artifacts at once).
pub async fn join_all<'a, T>(futures: Vec<BoxFuture<'a, T>>) -> Vec<T> {
    let mut futures: Vec<Option<BoxFuture<'a, T>>> = futures.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_is_rendered_on_its_own_line() {
        assert_eq!(BuildError::failed("no base").to_string(), "no base");
        assert_eq!(
            BuildError::failed("no base")
                .with_hint("set base")
                .to_string(),
            "no base\n  hint: set base"
        );
    }
}
