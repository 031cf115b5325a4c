//! Filters and network resolution of the `amazon-ebs` builder: Packer's
//! filter blocks (`source_ami_filter`, `vpc_filter`, `subnet_filter`,
//! `security_group_filter`) as EC2 filters, the VPC, subnet and security
//! groups they select for the build instance, and the one AMI
//! `source_ami_filter` selects (at plan time only: the build launches the id
//! the plan recorded).

use aws_sdk_ec2::types::{Filter, Image, ImageState};
use serde_json::Value;

use super::client::{aws_error, Ec2};
use crate::build::BuildError;
use crate::drivers::cloud::{failed, scalar};
use crate::spec::ImageSpec;

/// The filter of `source_ami_filter` as EC2 filters, its owners,
/// `most_recent` and `include_deprecated` (EC2 leaves deprecated AMIs out
/// unless asked).
pub(super) struct AmiFilter {
    pub(super) filters: Vec<(String, Vec<String>)>,
    pub(super) owners: Vec<String>,
    pub(super) most_recent: bool,
    pub(super) include_deprecated: bool,
}

pub(super) fn ami_filter(spec: &ImageSpec) -> Option<AmiFilter> {
    let block = spec.inputs.get("source_ami_filter")?;
    let block = match block {
        Value::Array(items) => items.first()?,
        other => other,
    };
    let filters = filter_pairs(block);
    let owners = block.get("owners").map(value_list).unwrap_or_default();
    let flag = |name: &str| block.get(name).and_then(Value::as_bool).unwrap_or(false);
    Some(AmiFilter {
        filters,
        owners,
        most_recent: flag("most_recent"),
        include_deprecated: flag("include_deprecated"),
    })
}

/// A value that may be one string or a list of them, as strings.
fn value_list(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => vec![scalar(other)],
    }
}

/// The filters of a filter block (`source_ami_filter`, `subnet_filter`,
/// ...): its `filters = { name = value(s) }` map and its newer
/// `filter { name = .. values = [..] }` blocks.
fn filter_pairs(block: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if let Some(Value::Object(map)) = block.get("filters") {
        for (k, v) in map {
            out.push((k.clone(), value_list(v)));
        }
    }
    let blocks = match block.get("filter") {
        Some(Value::Array(items)) => items.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    };
    for b in blocks {
        if let Some(name) = b.get("name").map(scalar) {
            out.push((name, b.get("values").map(value_list).unwrap_or_default()));
        }
    }
    out
}

pub(super) fn ec2_filters(list: &[(String, Vec<String>)]) -> Vec<Filter> {
    list.iter()
        .map(|(name, values)| {
            Filter::builder()
                .name(name)
                .set_values(Some(values.clone()))
                .build()
        })
        .collect()
}

/// A filter block (`subnet_filter`, `vpc_filter`, `security_group_filter`)
/// as EC2 filters.
fn block_filters(block: &Value) -> Vec<Filter> {
    ec2_filters(&filter_pairs(block))
}

/// Where the build instance goes: VPC and subnet, from ids or Packer's
/// `vpc_filter` / `subnet_filter` (`most_free`, `random`).
#[derive(Debug, Default, Clone)]
pub(super) struct Network {
    pub(super) vpc_id: Option<String>,
    pub(super) subnet_id: Option<String>,
}

pub(super) async fn resolve_network(ec2: &Ec2, spec: &ImageSpec) -> Result<Network, BuildError> {
    let mut net = Network {
        vpc_id: spec.attr_str("vpc_id").map(str::to_owned),
        subnet_id: spec.attr_str("subnet_id").map(str::to_owned),
    };
    if net.vpc_id.is_none() {
        if let Some(block) = spec.attr("vpc_filter").filter(|v| v.is_object()) {
            let out = ec2
                .client
                .describe_vpcs()
                .set_filters(Some(block_filters(block)))
                .send()
                .await
                .map_err(|e| aws_error("describing VPCs for vpc_filter", e))?;
            let ids: Vec<&str> = out.vpcs().iter().filter_map(|v| v.vpc_id()).collect();
            match ids.as_slice() {
                [one] => net.vpc_id = Some((*one).to_owned()),
                [] => return Err(failed("no VPC matches vpc_filter")),
                many => {
                    return Err(failed(format!(
                        "vpc_filter matches {} VPCs ({}); narrow the filter",
                        many.len(),
                        many.join(", ")
                    )))
                }
            }
        }
    }
    if net.subnet_id.is_none() {
        if let Some(block) = spec.attr("subnet_filter").filter(|v| v.is_object()) {
            let mut filters = block_filters(block);
            if let Some(vpc) = &net.vpc_id {
                filters.push(Filter::builder().name("vpc-id").values(vpc).build());
            }
            let out = ec2
                .client
                .describe_subnets()
                .set_filters(Some(filters))
                .send()
                .await
                .map_err(|e| aws_error("describing subnets for subnet_filter", e))?;
            let mut subnets = out.subnets().to_vec();
            let flag = |k: &str| block.get(k).and_then(Value::as_bool).unwrap_or(false);
            let chosen = if subnets.is_empty() {
                return Err(failed("no subnet matches subnet_filter"));
            } else if flag("most_free") {
                subnets.sort_by_key(|s| {
                    (
                        std::cmp::Reverse(s.available_ip_address_count().unwrap_or(0)),
                        s.subnet_id().unwrap_or_default().to_owned(),
                    )
                });
                subnets.swap_remove(0)
            } else if flag("random") {
                let i = rand::random_range(0..subnets.len());
                subnets.swap_remove(i)
            } else if subnets.len() == 1 {
                subnets.swap_remove(0)
            } else {
                return Err(failed(format!(
                    "subnet_filter matches {} subnets; set most_free = true or random = true, or narrow the filter",
                    subnets.len()
                )));
            };
            if net.vpc_id.is_none() {
                net.vpc_id = chosen.vpc_id().map(str::to_owned);
            }
            net.subnet_id = chosen.subnet_id().map(str::to_owned);
        }
    }
    Ok(net)
}

/// Security groups from `security_group_filter`, in the build's VPC.
pub(super) async fn filtered_groups(
    ec2: &Ec2,
    spec: &ImageSpec,
    net: &Network,
) -> Result<Vec<String>, BuildError> {
    let Some(block) = spec.attr("security_group_filter").filter(|v| v.is_object()) else {
        return Ok(Vec::new());
    };
    let mut filters = block_filters(block);
    if let Some(vpc) = &net.vpc_id {
        filters.push(Filter::builder().name("vpc-id").values(vpc).build());
    }
    let out = ec2
        .client
        .describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| aws_error("describing security groups for security_group_filter", e))?;
    let ids: Vec<String> = out
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    if ids.is_empty() {
        return Err(failed("no security group matches security_group_filter"));
    }
    Ok(ids)
}

/// Picks the image a filter selects: the newest with `most_recent`, else
/// exactly one.
pub(super) fn select_image(images: Vec<Image>, most_recent: bool) -> Result<String, String> {
    pick_image(images, most_recent, "source_ami_filter")?
        .image_id()
        .map(str::to_owned)
        .ok_or_else(|| "the matching AMI has no id".to_owned())
}

/// The one available (or pending) image of `images` that `what` (a filter,
/// for messages) selects: the newest (by creation date, then id) with
/// `most_recent`, else exactly one. Shared by `source_ami_filter` and the
/// `amazon-ami` data source.
pub(crate) fn pick_image(
    mut images: Vec<Image>,
    most_recent: bool,
    what: &str,
) -> Result<Image, String> {
    images.retain(|i| {
        i.state()
            .is_none_or(|s| matches!(s, ImageState::Available | ImageState::Pending))
    });
    if images.is_empty() {
        return Err(format!(
            "no AMI matches {what} (check the filters and owners)"
        ));
    }
    if images.len() > 1 && !most_recent {
        let ids: Vec<&str> = images.iter().filter_map(Image::image_id).take(5).collect();
        return Err(format!(
            "{} AMIs match {what} ({}{}); set most_recent = true or narrow the filter",
            images.len(),
            ids.join(", "),
            if images.len() > 5 { ", ..." } else { "" }
        ));
    }
    images.sort_by(|a, b| {
        a.creation_date()
            .unwrap_or("")
            .cmp(b.creation_date().unwrap_or(""))
            .then_with(|| a.image_id().cmp(&b.image_id()))
    });
    Ok(images.pop().expect("one image at least"))
}
