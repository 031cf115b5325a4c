//! The `amazon-ebs` builder (aws-sdk-ec2), as Packer's: launch an instance
//! from the source AMI, provision it over SSH, stop it, create an AMI from
//! it, tag the AMI and its snapshots, copy it to `ami_regions`, then delete
//! everything temporary.
//!
//! Invariants:
//! - Every temporary resource (key pair, security group, instances, an AMI
//!   whose build did not finish) is recorded in [`Temporaries`] the moment
//!   it exists, and deleted after the build — on success, failure and
//!   Ctrl-C alike — unless `--on-error=abort` asks to keep them after a
//!   failure (then they are listed).
//! - Everything imgform launches is tagged `imgform:build=<run id>`; every
//!   AMI and snapshot it keeps is tagged `imgform:address` and
//!   `imgform:content`, which is how `state recover`, `state import` and
//!   `drift` (untracked) find them.
//! - `source_ami_filter` is resolved at plan time ([`Builder::resolve_base`]);
//!   the build launches exactly the id the plan recorded.
//!
//! Credentials, region and endpoint come from the standard AWS chain
//! (environment, profiles, `AWS_ENDPOINT_URL`), with the source's `profile`,
//! `access_key`/`secret_key`/`token`, `region` and `custom_endpoint_ec2` on
//! top.
//!
//! This module is the kind's description (schema, target, plan-time checks),
//! always compiled in; the implementation is behind the cargo feature `aws`:
//! the EC2 client (`client.rs`), filters and network resolution
//! (`filters.rs`), AMI and instance queries and waits (`queries.rs`), the
//! build steps (`build.rs`), cleanup of temporaries (`cleanup.rs`) and the
//! [`Builder`](crate::drivers::Builder) implementation (`builder.rs`).

#[cfg(feature = "aws")]
mod build;
#[cfg(feature = "aws")]
mod builder;
#[cfg(feature = "aws")]
mod cleanup;
#[cfg(feature = "aws")]
mod client;
#[cfg(feature = "aws")]
mod filters;
#[cfg(feature = "aws")]
mod queries;

use serde_json::Value;

use crate::addr::TargetAddr;
use crate::diag::Diagnostic;
use crate::drivers::cloud;
use crate::drivers::kind::{loc_of, BuilderKind, COMMUNICATOR, IMGFORM};
use crate::schema::{block, blocks, filter_block, input, secret, setting, AttrSpec, Role, Schema};
use crate::spec::{Attrs, ImageSpec};

/// The tags every AMI and snapshot imgform keeps carries, and every
/// temporary resource it launches (`imgform:build`).
pub const TAG_BUILD: &str = "imgform:build";
pub const TAG_ADDRESS: &str = "imgform:address";
pub const TAG_CONTENT: &str = "imgform:content";

/// `amazon-ebs`: inputs are what ends up on the AMI's disks — the source AMI
/// (or its filter, resolved to an id), block device mappings, user data and
/// boot features. Everything about where and how the instance runs and how
/// the AMI is named, tagged, shared and copied is a setting.
pub static KIND: BuilderKind = BuilderKind {
    schema: Schema {
        kind: "amazon-ebs",
        attrs: &[ATTRS, COMMUNICATOR, IMGFORM],
        blocks: &[
            filter_block("source_ami_filter", Role::Input),
            blocks("launch_block_device_mappings", Role::Input),
            blocks("ami_block_device_mappings", Role::Input),
            block("metadata_options", Role::Input),
            filter_block("subnet_filter", Role::Setting),
            filter_block("vpc_filter", Role::Setting),
            filter_block("security_group_filter", Role::Setting),
            block("assume_role", Role::Setting),
            block("aws_polling", Role::Setting),
            block("placement", Role::Setting),
            blocks("run_tag", Role::Setting),
            blocks("tag", Role::Setting),
            blocks("snapshot_tag", Role::Setting),
            block(
                "temporary_iam_instance_profile_policy_document",
                Role::Setting,
            ),
        ],
    },
    target,
    validate,
    builder: IMPLEMENTATION,
    feature: Some("aws"),
};

#[cfg(feature = "aws")]
const IMPLEMENTATION: Option<&'static dyn crate::drivers::Builder> =
    Some(&builder::AmazonEbsBuilder);
#[cfg(not(feature = "aws"))]
const IMPLEMENTATION: Option<&'static dyn crate::drivers::Builder> = None;

const ATTRS: &[AttrSpec] = &[
    input("source_ami"),
    input("user_data"),
    input("user_data_file").files(),
    input("ami_virtualization_type"),
    input("ena_support"),
    input("sriov_support"),
    input("boot_mode"),
    input("imds_support"),
    input("tpm_support"),
    input("uefi_data"),
    input("encrypt_boot"),
    input("kms_key_id"),
    input("ami_architecture"),
    input("no_ephemeral"),
    setting("region"),
    setting("instance_type"),
    setting("ami_name"),
    setting("ami_description"),
    setting("tags"),
    setting("run_tags"),
    setting("run_volume_tags"),
    setting("snapshot_tags"),
    setting("spot_tags"),
    setting("fleet_tags"),
    setting("subnet_id"),
    setting("vpc_id"),
    setting("security_group_id"),
    setting("security_group_ids"),
    setting("associate_public_ip_address"),
    setting("availability_zone"),
    setting("ami_users"),
    setting("ami_groups"),
    setting("ami_org_arns"),
    setting("ami_ou_arns"),
    setting("ami_regions"),
    setting("ami_product_codes"),
    setting("region_kms_key_ids"),
    setting("snapshot_users"),
    setting("snapshot_groups"),
    setting("skip_create_ami"),
    setting("skip_save_build_region"),
    setting("deprecate_at"),
    setting("shutdown_behavior"),
    setting("disable_stop_instance"),
    setting("iam_instance_profile"),
    setting("spot_price"),
    setting("spot_instance_types"),
    setting("ebs_optimized"),
    setting("enable_t2_unlimited"),
    setting("enable_unlimited_credits"),
    setting("force_deregister"),
    setting("force_delete_snapshot"),
    setting("tenancy"),
    setting("temporary_security_group_source_cidrs"),
    setting("temporary_security_group_source_public_ip"),
    setting("session_manager_port"),
    setting("pause_before_ssm"),
    setting("profile"),
    secret("access_key"),
    secret("secret_key"),
    secret("token"),
    setting("custom_endpoint_ec2"),
    setting("insecure_skip_tls_verify"),
    setting("decode_authorization_messages"),
    setting("max_retries"),
    setting("skip_region_validation"),
    setting("skip_metadata_api_check"),
    setting("skip_credential_validation"),
    setting("shared_credentials_file"),
];

/// `aws/<region>`: the source's `region`, else `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, else `us-east-1` (as the AWS SDKs default).
fn target(settings: &Attrs) -> TargetAddr {
    let region = settings
        .get("region")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_owned());
    TargetAddr(format!("aws/{region}"))
}

/// Packer attributes imgform accepts but does not act on yet (a warning).
const NOT_YET: &[&str] = &[
    "spot_price",
    "spot_instance_types",
    "spot_tags",
    "fleet_tags",
    "assume_role",
    "placement",
    "tenancy",
    "encrypt_boot",
    "kms_key_id",
    "region_kms_key_ids",
    "snapshot_users",
    "snapshot_groups",
    "ami_org_arns",
    "ami_ou_arns",
    "ami_product_codes",
    "ena_support",
    "sriov_support",
    "imds_support",
    "tpm_support",
    "boot_mode",
    "uefi_data",
    "enable_t2_unlimited",
    "enable_unlimited_credits",
    "temporary_iam_instance_profile_policy_document",
    "temporary_security_group_source_public_ip",
    "session_manager_port",
    "pause_before_ssm",
    "ssh_agent_auth",
    "skip_save_build_region",
];

fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let at = |name: &str| loc_of(spec, name);
    let has_source = spec.attr_str("source_ami").is_some_and(|s| !s.is_empty())
        || spec.inputs.contains_key("source_ami_filter");
    if !has_source {
        diags.push(
            Diagnostic::error(format!("{}: amazon-ebs needs a source AMI", spec.addr))
                .at(at("source_ami"))
                .hint("set source_ami = \"ami-...\", source_ami = image.<ADDR>.id (a parent image), or a source_ami_filter block"),
        );
    }
    diags.extend(cloud::validate_communicator(
        spec,
        "instance",
        "ssh_username = \"ubuntu\", \"ec2-user\" or \"admin\"",
    ));
    if let Some(interface) = spec.attr_str("ssh_interface") {
        if !matches!(
            interface,
            "public_ip" | "private_ip" | "public_dns" | "private_dns"
        ) {
            diags.push(
                Diagnostic::error(format!(
                    "ssh_interface = \"{interface}\" is not supported by imgform"
                ))
                .at(at("ssh_interface"))
                .hint("use public_ip, private_ip, public_dns or private_dns (Session Manager tunnels are not supported)"),
            );
        }
    }
    diags.extend(unknown_template_fields(spec));
    // Packer settings imgform loads but does not act on yet: say so
    // rather than build something else than asked silently.
    for name in NOT_YET {
        if spec.attr(name).is_some_and(|v| !v.is_null()) {
            diags.push(
                Diagnostic::warning(format!(
                    "{}: amazon-ebs `{name}` is not supported by imgform yet and is ignored",
                    spec.addr
                ))
                .at(at(name)),
            );
        }
    }
    if let Some(kind) = spec.attr_str("temporary_key_pair_type") {
        if !matches!(kind, "ed25519" | "rsa") {
            diags.push(
                Diagnostic::error(format!(
                    "temporary_key_pair_type = \"{kind}\" is not supported"
                ))
                .at(at("temporary_key_pair_type"))
                .hint("use \"ed25519\" (imgform's default) or \"rsa\""),
            );
        }
    }
    diags
}

/// The build's template data (`{{ .SourceAMI }}`...) the builder fills in
/// `ami_name`, `ami_description` and tag values; `SourceAMITags.KEY` is the
/// source AMI's tag KEY.
pub(crate) const TEMPLATE_FIELDS: &[&str] = &[
    "BuildRegion",
    "SourceAMI",
    "SourceAMIName",
    "SourceAMIOwner",
    "SourceAMIOwnerName",
    "SourceAMICreationDate",
];

/// The settings rendered with the build's template data.
const TEMPLATED: &[&str] = &[
    "ami_name",
    "ami_description",
    "tags",
    "tag",
    "snapshot_tags",
    "snapshot_tag",
    "run_tags",
    "run_tag",
    "run_volume_tags",
    "run_volume_tag",
];

/// A `{{ .Field }}` the builder would not fill: an error now rather than a
/// literal `{{ .Field }}` in an AMI's name or tags later.
fn unknown_template_fields(spec: &ImageSpec) -> Vec<Diagnostic> {
    static FIELD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\{\{-?\s*\.([\w.]+)\s*-?\}\}").expect("regex")
    });
    fn strings<'v>(value: &'v serde_json::Value, out: &mut Vec<&'v str>) {
        match value {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut diags = Vec::new();
    for name in TEMPLATED {
        let Some(value) = spec.attr(name) else {
            continue;
        };
        let mut texts = Vec::new();
        strings(value, &mut texts);
        for text in texts {
            for c in FIELD.captures_iter(text) {
                let field = &c[1];
                let known = TEMPLATE_FIELDS.contains(&field)
                    || field
                        .strip_prefix("SourceAMITags.")
                        .is_some_and(|k| !k.is_empty());
                if !known {
                    diags.push(
                        Diagnostic::error(format!(
                            "{}: `{}` in `{name}` is not template data of amazon-ebs",
                            spec.addr, &c[0]
                        ))
                        .at(loc_of(spec, name))
                        .hint(format!(
                            "amazon-ebs fills {}, and SourceAMITags.KEY",
                            TEMPLATE_FIELDS
                                .iter()
                                .map(|f| format!("{{{{ .{f} }}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
            }
        }
    }
    diags
}
