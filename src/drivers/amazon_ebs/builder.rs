//! The `amazon-ebs` [`Builder`] implementation: `source_ami_filter` resolved
//! at plan time, the build run with its cleanup, and the recorded AMIs —
//! whether they still exist, destroying them (with their copies), adopting a
//! tagged AMI and listing the tagged ones.

use std::sync::Arc;

use aws_sdk_ec2::types::ImageState;
use serde_json::{json, Value};

use super::build::run_build;
use super::cleanup::{cleanup, Shared};
use super::client::{aws_error, connect, where_attributes, ClientSettings};
use super::filters::{ami_filter, ec2_filters, select_image};
use super::queries::{delete_image, describe_image, owned_images, snapshots_of};
use super::{TAG_ADDRESS, TAG_CONTENT};
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::drivers::cloud::{self, failed};
use crate::drivers::kind::{BaseQuery, Builder, Recorded};
use crate::spec::ImageSpec;
use crate::state::Artifact;

pub struct AmazonEbsBuilder;

impl Builder for AmazonEbsBuilder {
    fn has_base_filter(&self) -> bool {
        true
    }
    fn base_query(&self, spec: &ImageSpec) -> Option<BaseQuery> {
        let filter = spec.inputs.get("source_ami_filter")?;
        let settings = ClientSettings::from_spec(spec);
        Some(BaseQuery {
            attr: "source_ami_filter",
            query: json!({
                "target": (super::KIND.target)(&spec.settings).0,
                "endpoint": settings.endpoint,
                "source_ami_filter": filter,
            }),
        })
    }

    fn resolve_base<'a>(
        &'a self,
        spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<String, BuildError>> {
        Box::pin(async move {
            let filter =
                ami_filter(spec).ok_or_else(|| failed("no source_ami_filter to resolve"))?;
            let ec2 = connect(&ClientSettings::from_spec(spec)).await;
            let out = ec2
                .client
                .describe_images()
                .set_owners((!filter.owners.is_empty()).then(|| filter.owners.clone()))
                .set_filters(Some(ec2_filters(&filter.filters)))
                .include_deprecated(filter.include_deprecated)
                .send()
                .await
                .map_err(|e| aws_error("describing AMIs for source_ami_filter", e))?;
            select_image(out.images().to_vec(), filter.most_recent).map_err(failed)
        })
    }

    fn build<'a>(&'a self, ctx: BuildContext<'a>) -> BoxFuture<'a, Result<Artifact, BuildError>> {
        Box::pin(async move {
            let ec2 = connect(&ClientSettings::from_spec(ctx.spec)).await;
            let temps: Shared = Arc::default();
            cloud::run_then_clean_up(&ctx, &temps, run_build(&ctx, &ec2, &temps), |t, _| {
                cleanup(&ec2, t, &ctx.events)
            })
            .await
        })
    }

    fn exists<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<bool, BuildError>> {
        Box::pin(async move {
            if artifact.id.starts_with("none:") {
                return Ok(true);
            }
            let settings = ClientSettings::for_artifact(at, artifact);
            let ec2 = connect(&settings).await;
            let usable = |state: Option<&ImageState>| {
                !matches!(
                    state,
                    Some(ImageState::Deregistered | ImageState::Failed | ImageState::Error)
                )
            };
            if let Some(owned) = owned_images(&ec2, &settings).await?.get(&artifact.id) {
                return Ok(usable(owned.state.as_ref()));
            }
            // Not among the account's own AMIs (shared with it, or gone):
            // ask about this one.
            Ok(describe_image(&ec2, &artifact.id)
                .await?
                .is_some_and(|i| usable(i.state())))
        })
    }

    fn destroy<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            if artifact.id.starts_with("none:") {
                return Ok(());
            }
            let settings = ClientSettings::for_artifact(at, artifact);
            let ec2 = connect(&settings).await;
            delete_image(&ec2, &artifact.id).await?;
            if let Some(Value::Object(copies)) = artifact.attributes.get("regions") {
                for (region, id) in copies {
                    if let Some(id) = id.as_str() {
                        let there = connect(&settings.in_region(region)).await;
                        delete_image(&there, id).await?;
                    }
                }
            }
            Ok(())
        })
    }

    fn adopt<'a>(
        &'a self,
        spec: &'a ImageSpec,
        content_address: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Artifact>, BuildError>> {
        Box::pin(async move {
            let ec2 = connect(&ClientSettings::from_spec(spec)).await;
            let Some(image) = describe_image(&ec2, id).await? else {
                return Ok(None);
            };
            let tag = |k: &str| {
                image
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
            };
            if tag(TAG_CONTENT) != Some(content_address)
                || tag(TAG_ADDRESS) != Some(spec.addr.to_string().as_str())
            {
                return Ok(None);
            }
            let mut attributes = where_attributes(&ec2);
            if let Some(name) = image.name() {
                attributes.insert("name".to_owned(), json!(name));
            }
            attributes.insert("snapshots".to_owned(), json!(snapshots_of(&image)));
            attributes.insert("adopted".to_owned(), json!(true));
            Ok(Some(Artifact {
                id: id.to_owned(),
                attributes,
            }))
        })
    }

    fn list_artifacts<'a>(
        &'a self,
        spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<Vec<String>, BuildError>> {
        Box::pin(async move {
            let settings = ClientSettings::from_spec(spec);
            let ec2 = connect(&settings).await;
            let address = spec.addr.to_string();
            let ids: Vec<String> = owned_images(&ec2, &settings)
                .await?
                .iter()
                .filter(|(_, o)| {
                    o.address.as_deref() == Some(address.as_str())
                        && matches!(
                            o.state,
                            Some(ImageState::Available | ImageState::Pending) | None
                        )
                })
                .map(|(id, _)| id.clone())
                .collect();
            Ok(ids)
        })
    }
}
