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
pub(crate) use filters::pick_image;
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
            block("assume_role", Role::Setting).ignored(CREDENTIALS),
            block("aws_polling", Role::Setting),
            block("placement", Role::Setting).ignored(PLACEMENT),
            blocks("run_tag", Role::Setting),
            blocks("tag", Role::Setting),
            blocks("snapshot_tag", Role::Setting),
            block(
                "temporary_iam_instance_profile_policy_document",
                Role::Setting,
            )
            .ignored(IAM),
            blocks("run_volume_tag", Role::Setting),
            blocks("spot_tag", Role::Setting).ignored(SPOT),
            blocks("fleet_tag", Role::Setting).ignored(SPOT),
            blocks("license_specifications", Role::Setting).ignored(PLACEMENT),
            block("deregistration_protection", Role::Setting).ignored(SHARING),
            blocks("fast_launch", Role::Setting).ignored(WINDOWS),
            block("vault_aws_engine", Role::Setting).ignored(CREDENTIALS),
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
    input("user_data_file").file(),
    input("ami_virtualization_type").ignored(AMI_FEATURES),
    input("ena_support").ignored(AMI_FEATURES),
    input("sriov_support").ignored(AMI_FEATURES),
    input("boot_mode").ignored(AMI_FEATURES),
    input("imds_support").ignored(AMI_FEATURES),
    input("tpm_support").ignored(AMI_FEATURES),
    input("uefi_data").ignored(AMI_FEATURES),
    input("encrypt_boot").ignored(ENCRYPTION),
    input("kms_key_id").ignored(ENCRYPTION),
    input("ami_architecture").ignored(AMI_FEATURES),
    input("no_ephemeral").ignored(AMI_FEATURES),
    setting("region"),
    setting("instance_type"),
    setting("ami_name"),
    setting("ami_description"),
    setting("tags"),
    setting("run_tags"),
    setting("run_volume_tags"),
    setting("snapshot_tags"),
    setting("spot_tags").ignored(SPOT),
    setting("fleet_tags").ignored(SPOT),
    setting("subnet_id"),
    setting("vpc_id"),
    setting("security_group_id"),
    setting("security_group_ids"),
    setting("associate_public_ip_address"),
    setting("availability_zone"),
    setting("ami_users"),
    setting("ami_groups"),
    setting("ami_org_arns").ignored(SHARING),
    setting("ami_ou_arns").ignored(SHARING),
    setting("ami_regions"),
    setting("ami_product_codes").ignored(SHARING),
    setting("region_kms_key_ids").ignored(ENCRYPTION),
    setting("snapshot_users").ignored(SHARING),
    setting("snapshot_groups").ignored(SHARING),
    setting("skip_create_ami"),
    setting("skip_save_build_region").ignored(REGIONS),
    setting("deprecate_at"),
    setting("shutdown_behavior"),
    setting("disable_stop_instance"),
    setting("iam_instance_profile"),
    setting("spot_price").ignored(SPOT),
    setting("spot_instance_types").ignored(SPOT),
    setting("ebs_optimized"),
    setting("enable_t2_unlimited").ignored(CREDITS),
    setting("enable_unlimited_credits").ignored(CREDITS),
    setting("force_deregister"),
    setting("force_delete_snapshot"),
    setting("tenancy").ignored(PLACEMENT),
    setting("temporary_security_group_source_cidrs"),
    setting("temporary_security_group_source_public_ip").ignored(SECURITY_GROUP),
    setting("session_manager_port").ignored(SSM),
    setting("pause_before_ssm").ignored(SSM),
    setting("profile"),
    secret("access_key"),
    secret("secret_key"),
    secret("token"),
    setting("custom_endpoint_ec2"),
    setting("insecure_skip_tls_verify").ignored(NO_TLS_SKIP),
    setting("decode_authorization_messages").ignored(CREDENTIALS),
    setting("max_retries"),
    setting("skip_region_validation").ignored(NO_REGION_CHECK),
    setting("skip_metadata_api_check").ignored(CREDENTIALS),
    setting("skip_credential_validation").ignored(CREDENTIALS),
    setting("shared_credentials_file").ignored(SHARED_FILE),
    setting("block_duration_minutes").ignored(SPOT),
    setting("spot_allocation_strategy").ignored(SPOT),
    setting("spot_price_auto_product").ignored(SPOT),
    setting("capacity_reservation_preference").ignored(CAPACITY),
    setting("capacity_reservation_id").ignored(CAPACITY),
    setting("capacity_reservation_group_arn").ignored(CAPACITY),
    setting("enable_nitro_enclave").ignored(NITRO),
    setting("mfa_code").ignored(CREDENTIALS),
    setting("skip_profile_validation").ignored(CREDENTIALS),
    setting("skip_ami_run_tags").ignored(TAGS),
    setting("snapshot_copy_duration_minutes").ignored(REGIONS),
    setting("windows_password_timeout").ignored(WINDOWS),
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

// Why a Packer attribute imgform loads is not acted on (the warning's hint).
const SPOT: &str = "imgform launches one on-demand instance of instance_type";
const CAPACITY: &str = "the instance is launched without a capacity reservation";
pub(crate) const CREDENTIALS: &str = "imgform takes credentials from the AWS SDK's chain: environment, profile (`profile`), SSO, instance role";
pub(crate) const NO_TLS_SKIP: &str = "imgform always verifies the endpoint's TLS certificate";
pub(crate) const NO_REGION_CHECK: &str =
    "imgform does not validate region names; a wrong one fails at the first request";
pub(crate) const SHARED_FILE: &str = "set AWS_SHARED_CREDENTIALS_FILE for the AWS SDK instead";
const PLACEMENT: &str =
    "the instance is launched with the account's default placement, tenancy and licences";
const ENCRYPTION: &str =
    "snapshots are encrypted only if the account's EBS encryption by default is on";
const SHARING: &str = "share or protect the AMI after the build (aws ec2 modify-image-attribute)";
const AMI_FEATURES: &str = "the AMI is registered with the source AMI's boot mode and features";
const CREDITS: &str = "the instance runs with its type's default credit specification";
const IAM: &str = "set iam_instance_profile to an existing instance profile";
const SECURITY_GROUP: &str =
    "the temporary security group allows temporary_security_group_source_cidrs (default 0.0.0.0/0)";
const SSM: &str = "imgform connects over SSH; Session Manager tunnels are not implemented";
const REGIONS: &str = "the AMI is kept in the build region and copied to ami_regions";
const NITRO: &str = "the build instance runs without a Nitro Enclave";
const TAGS: &str = "the run tags are not copied onto the AMI unless set in tags";
const WINDOWS: &str = "Windows builds (password retrieval, fast launch) are not implemented";

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
