//! Builders: how an image is produced, checked and removed.
//!
//! A [`Builder`] never sees a plan: `apply` hands it one evaluated
//! [`ImageSpec`] (image references already replaced by real artifact ids)
//! and gets an [`Artifact`] back. Builders own their temporary resources and
//! must release them on success, failure and cancellation alike.

#[cfg(feature = "aws")]
pub mod amazon_ebs;
pub mod chroot;
#[cfg(any(feature = "aws", feature = "openstack"))]
pub mod cloud;
pub mod null;
#[cfg(feature = "openstack")]
pub mod openstack;
pub mod schema;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde_json::Value;

use crate::addr::TargetAddr;
use crate::apply::events::{CancelToken, EventSink};
use crate::diag::Diagnostic;
use crate::spec::{Attrs, ImageSpec};
use crate::state::Artifact;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Failed(String),
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
}

/// How to reach a recorded artifact: the definition dir (local artifact ids
/// are relative to it) and, while the image is still defined, its evaluated
/// spec — the credentials, endpoint and cloud it was built with (the state
/// holds no secret, so a removed image has only the ambient credentials).
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub def_dir: &'a Path,
    pub spec: Option<&'a ImageSpec>,
}

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

pub trait Builder: Send + Sync {
    /// Static checks that need the evaluated spec (run at plan time).
    fn validate(&self, spec: &ImageSpec) -> Vec<Diagnostic>;
    /// The **resolve** stage: when `spec` asks for its base image by a filter
    /// (`source_ami_filter`, `source_image_filter`), a stable description of
    /// that query (its target and filter) — `None` when the base is given
    /// by id or the builder has no base.
    fn base_query(&self, _spec: &ImageSpec) -> Option<String> {
        None
    }
    /// Asks the cloud which image the filter of `spec` selects now.
    fn resolve_base<'a>(
        &'a self,
        _spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<String, BuildError>> {
        Box::pin(async {
            Err(BuildError::Failed(
                "this builder has no base image filter".to_owned(),
            ))
        })
    }
    fn build<'a>(&'a self, ctx: BuildContext<'a>) -> BoxFuture<'a, Result<Artifact, BuildError>>;
    /// Whether a recorded artifact still exists (refresh).
    fn exists<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<bool, BuildError>>;
    fn destroy<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<(), BuildError>>;
    /// The artifact `id` if it exists and was built from exactly
    /// `content_address` (tags, or a name carrying the address), for `state
    /// recover` and `state import`.
    fn adopt<'a>(
        &'a self,
        _spec: &'a ImageSpec,
        _content_address: &'a str,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Artifact>, BuildError>> {
        Box::pin(async { Ok(None) })
    }
    /// Artifacts of `spec`'s image that exist at its target (tagged AMIs,
    /// files named after the image), for `drift` to find untracked ones.
    fn list_artifacts<'a>(
        &'a self,
        _spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<Vec<String>, BuildError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The builder for a source type, if imgform can build it.
pub fn builder_for(kind: &str) -> Option<Box<dyn Builder>> {
    match kind {
        "null" => Some(Box::new(null::NullBuilder)),
        "chroot" => Some(Box::new(chroot::ChrootBuilder)),
        #[cfg(feature = "aws")]
        "amazon-ebs" => Some(Box::new(amazon_ebs::AmazonEbsBuilder)),
        #[cfg(feature = "openstack")]
        "openstack" => Some(Box::new(openstack::OpenStackBuilder)),
        _ => None,
    }
}

/// Where images of this builder live, from its settings.
pub fn target_for(kind: &str, settings: &Attrs) -> TargetAddr {
    let get = |k: &str| settings.get(k).and_then(Value::as_str).map(str::to_owned);
    match kind {
        "amazon-ebs" => {
            let region = get("region")
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".to_owned());
            TargetAddr(format!("aws/{region}"))
        }
        "openstack" => {
            let cloud = get("cloud")
                .or_else(|| std::env::var("OS_CLOUD").ok())
                .unwrap_or_else(|| "default".to_owned());
            let region = get("region")
                .or_else(|| std::env::var("OS_REGION_NAME").ok())
                .unwrap_or_else(|| "RegionOne".to_owned());
            TargetAddr(format!("openstack/{cloud}/{region}"))
        }
        _ => TargetAddr::local(),
    }
}
