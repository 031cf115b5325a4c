//! `data "amazon-ami"`: the AMI a filter selects, as HashiCorp's examples
//! and `packer hcl2_upgrade` pick a base image. Attributes: `filters` (EC2
//! filter name → value or values), `owners`, `most_recent`,
//! `executable_users`, `include_deprecated`, and the AWS access attributes.
//! Outputs: `id`, `name`, `creation_date`, `owner`, `owner_name`, `tags`.
//! More than one match without `most_recent = true` is an error, as in
//! Packer. The id enters content addresses.

#[cfg(feature = "aws")]
use serde_json::Value;

use super::aws_access::{ACCESS, ACCESS_BLOCKS};
use super::{out, DataKind, OutTy, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, setting, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "amazon-ami",
        attrs: &[
            &[
                input("filters"),
                input("owners"),
                input("most_recent"),
                input("executable_users"),
                input("include_deprecated"),
                setting("custom_endpoint_ec2"),
            ],
            ACCESS,
        ],
        blocks: ACCESS_BLOCKS,
    },
    outputs: &[
        out("id", OutTy::String),
        out("name", OutTy::String),
        out("creation_date", OutTy::String),
        out("owner", OutTy::String),
        out("owner_name", OutTy::String),
        out("tags", OutTy::Map),
    ],
    resolve,
    summary: |outputs| super::output(outputs, "id"),
};

/// A value that may be one string or a list of them, as strings.
#[cfg(feature = "aws")]
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().map(crate::spec::scalar).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![crate::spec::scalar(other)],
    }
}

#[cfg(not(feature = "aws"))]
fn resolve(_request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async { Err(super::aws_access::missing()) })
}

#[cfg(feature = "aws")]
fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    use aws_sdk_ec2::types::Filter;

    use super::aws_access::{sdk_error, shared_config};
    use super::{config_bool, config_str, Outputs};

    Box::pin(async move {
        let config = request.config;
        let shared = shared_config(config).await;
        let mut builder = aws_sdk_ec2::config::Builder::from(&shared).region(
            aws_config::Region::new(crate::aws::region_or_default(&shared)),
        );
        if let Some(endpoint) = config_str(config, "custom_endpoint_ec2") {
            builder = builder.endpoint_url(endpoint);
        }
        let ec2 = aws_sdk_ec2::Client::from_conf(builder.build());
        let filters: Vec<Filter> = match config.get("filters") {
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, v)| {
                    Filter::builder()
                        .name(name)
                        .set_values(Some(strings(Some(v))))
                        .build()
                })
                .collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => return Err("`filters` must be a map of filter name = value".to_owned()),
        };
        let owners = strings(config.get("owners"));
        if filters.is_empty() && owners.is_empty() {
            return Err(
                "set `filters` or `owners`: without either every public AMI matches".into(),
            );
        }
        let mut call = ec2
            .describe_images()
            .set_filters(Some(filters))
            .set_owners((!owners.is_empty()).then_some(owners))
            .include_deprecated(config_bool(config, "include_deprecated").unwrap_or(false));
        let users = strings(config.get("executable_users"));
        if !users.is_empty() {
            call = call.set_executable_users(Some(users));
        }
        let answer = call
            .send()
            .await
            .map_err(|e| sdk_error("DescribeImages", e))?;
        let most_recent = config_bool(config, "most_recent").unwrap_or(false);
        let image = crate::drivers::amazon_ebs::pick_image(
            answer.images().to_vec(),
            most_recent,
            "the filters",
        )?;
        let s = |v: Option<&str>| Value::String(v.unwrap_or_default().to_owned());
        let tags: serde_json::Map<String, Value> = image
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), s(t.value()))))
            .collect();
        let mut outputs = Outputs::new();
        outputs.insert("id".into(), s(image.image_id()));
        outputs.insert("name".into(), s(image.name()));
        outputs.insert("creation_date".into(), s(image.creation_date()));
        outputs.insert("owner".into(), s(image.owner_id()));
        outputs.insert("owner_name".into(), s(image.image_owner_alias()));
        outputs.insert("tags".into(), Value::Object(tags));
        Ok(Resolved::public(outputs))
    })
}
