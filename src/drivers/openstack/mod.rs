//! The `openstack` builder, as Packer's, in two modes:
//!
//! - **snapshot** (default): create a server from the source image with a
//!   temporary key pair, provision it over SSH, stop it, `createImage`, wait
//!   for the image to be `active` in Glance, tag it, then delete the server
//!   and the key pair.
//! - **upload** (`upload_from = image.<ADDR>.id` of a `chroot` or `qemu`
//!   image): upload that locally built disk to Glance (diskimage-builder's
//!   flow) as the format its bytes are (a qcow2 overlay flattened first). No
//!   server, no SSH; only `shell-local` provisioners run (on this machine,
//!   first).
//!
//! Invariants:
//! - Every temporary resource (key pair, servers, an image whose build did
//!   not finish) is recorded in [`Temporaries`] the moment it exists and
//!   deleted after the build — on success, failure and Ctrl-C alike —
//!   unless `--on-error=abort` asks to keep them after a failure (then they
//!   are listed).
//! - Every image imgform keeps carries the properties `imgform_address`
//!   and `imgform_content` and the tag `imgform`: that is how `state
//!   recover`, `state import` and `drift` (untracked) find them. Glance
//!   property keys are plain identifiers, hence `_` where EC2 tags use `:`.
//! - `source_image_filter` and `source_image_name` are resolved at plan
//!   time ([`Builder::resolve_base`]); the build boots exactly the id the
//!   plan recorded.
//!
//! - Packer attributes this builder does not implement ([`UNSUPPORTED`],
//!   and `insecure`) are warnings at validate, so Packer templates load and
//!   plan; building such an image fails before anything is created.
//!
//! Credentials come from the source's attributes on top of `clouds.yaml`
//! (`cloud`, or `OS_CLOUD`; `OS_CLIENT_CONFIG_FILE` names the file) or the
//! `OS_*` variables; the raw calls are in the `api` module
//! (`openstack_api.rs`). Refresh and `keep_previous` deletions reach a
//! recorded image with its source's settings while the image is defined
//! (state holds no secret), else with the recorded cloud, identity endpoint
//! and region and the credentials of clouds.yaml or the environment.
//!
//! This module is the kind's description (schema, target, plan-time checks),
//! always compiled in; the implementation is in `build.rs` and `api.rs`,
//! behind the cargo feature `openstack`.

#[cfg(feature = "openstack")]
mod api;
#[cfg(feature = "openstack")]
mod build;

use serde_json::Value;

use crate::addr::TargetAddr;
use crate::diag::Diagnostic;
use crate::drivers::cloud::{self, scalar};
use crate::drivers::kind::{loc_of, BuilderKind, COMMUNICATOR, IMGFORM};
use crate::provision;
use crate::schema::{blocks, filter_block, input, secret, setting, AttrSpec, Role, Schema};
use crate::spec::{Attrs, ImageRef, ImageSpec};

/// Glance properties imgform puts on what it keeps.
pub const PROP_ADDRESS: &str = "imgform_address";
pub const PROP_CONTENT: &str = "imgform_content";
pub const PROP_BUILD: &str = "imgform_build";
/// The Glance tag on every image imgform made.
pub const TAG: &str = "imgform";

/// `openstack`: inputs are the source image (or its filter, resolved to an
/// id), the volume layout, user data and config drive, and — in upload mode —
/// the local image uploaded. Credentials, placement, networking, naming and
/// image metadata are settings.
pub static KIND: BuilderKind = BuilderKind {
    schema: Schema {
        kind: "openstack",
        attrs: &[ATTRS, COMMUNICATOR, IMGFORM],
        blocks: &[
            filter_block("source_image_filter", Role::Input),
            blocks("network", Role::Setting),
        ],
    },
    target,
    validate,
    builder: IMPLEMENTATION,
    feature: Some("openstack"),
};

#[cfg(feature = "openstack")]
const IMPLEMENTATION: Option<&'static dyn crate::drivers::Builder> = Some(&build::OpenStackBuilder);
#[cfg(not(feature = "openstack"))]
const IMPLEMENTATION: Option<&'static dyn crate::drivers::Builder> = None;

const ATTRS: &[AttrSpec] = &[
    input("source_image"),
    input("source_image_name"),
    input("external_source_image_url"),
    input("external_source_image_format").ignored("external_source_image_url is not implemented"),
    input("external_source_image_properties").ignored("external_source_image_url is not implemented"),
    input("user_data"),
    input("user_data_file").file(),
    input("config_drive"),
    input("image_disk_format"),
    input("use_blockstorage_volume"),
    input("volume_size"),
    input("volume_type"),
    input("upload_from"),
    setting("identity_endpoint"),
    setting("auth_url"),
    setting("username"),
    setting("user_id"),
    secret("password"),
    secret("token"),
    setting("application_credential_id"),
    setting("application_credential_name"),
    secret("application_credential_secret"),
    setting("user_domain_name"),
    setting("user_domain_id"),
    setting("tenant_name"),
    setting("tenant_id"),
    setting("project_name"),
    setting("project_id"),
    setting("domain_name"),
    setting("domain_id"),
    setting("cloud"),
    setting("region"),
    setting("insecure"),
    setting("cacert"),
    setting("cert").ignored("client certificates are not implemented: authenticate with a password or an application credential"),
    setting("key"),
    setting("endpoint_type"),
    setting("flavor"),
    setting("networks"),
    setting("ports"),
    setting("floating_ip_network"),
    setting("floating_ip"),
    setting("reuse_ips").ignored("floating IPs are not implemented: use a network reachable from this machine, or ssh_host / ssh_bastion_host"),
    setting("use_floating_ip"),
    setting("security_groups"),
    setting("availability_zone"),
    setting("volume_name").ignored("volume-backed builds are not implemented"),
    setting("volume_availability_zone").ignored("volume-backed builds are not implemented"),
    setting("image_name"),
    setting("image_visibility"),
    setting("image_tags"),
    setting("image_members"),
    setting("image_auto_accept_members").ignored("share the image after the build (openstack image add project)"),
    setting("image_min_disk"),
    setting("metadata"),
    setting("instance_name"),
    setting("instance_metadata"),
    setting("force_delete").ignored("imgform deletes its server with a normal delete"),
    setting("skip_create_image"),
    setting("rackconnect_wait").ignored("RackConnect is not implemented"),
    setting("wait_image_ready_timeout"),
    setting("network_discovery_cidrs").ignored("name the networks with networks or a network block"),
    setting("server_name"),
    setting("floating_ip_pool").ignored(FLOATING_IP),
    setting("instance_floating_ip_net").ignored(FLOATING_IP),
    setting("image_creation_wait")
        .ignored("imgform waits for the image to become active with its own timeout"),
    setting("openstack_provider").ignored(
        "imgform talks to Keystone, Nova and Glance directly; there is no provider to pick",
    ),
];

/// `openstack/<cloud>/<region>`: the source's `cloud` (else `OS_CLOUD`,
/// else `default`) and `region` (else `OS_REGION_NAME`, else `RegionOne`).
fn target(settings: &Attrs) -> TargetAddr {
    let get = |k: &str| settings.get(k).and_then(Value::as_str).map(str::to_owned);
    let cloud = get("cloud")
        .or_else(|| std::env::var("OS_CLOUD").ok())
        .unwrap_or_else(|| "default".to_owned());
    let region = get("region")
        .or_else(|| std::env::var("OS_REGION_NAME").ok())
        .unwrap_or_else(|| "RegionOne".to_owned());
    TargetAddr(format!("openstack/{cloud}/{region}"))
}

pub(crate) fn non_empty(spec: &ImageSpec, name: &str) -> Option<String> {
    spec.attr(name).map(scalar).filter(|s| !s.is_empty())
}

/// Upload mode: a locally built image is uploaded to Glance.
pub(crate) fn is_upload(spec: &ImageSpec) -> bool {
    spec.attr("upload_from").is_some()
}

/// Why floating IP settings are not acted on.
const FLOATING_IP: &str =
    "floating IPs are not implemented: use a network reachable from this machine, or ssh_host / ssh_bastion_host";

/// Packer attributes this builder does not implement: an error (with what
/// to do instead) rather than a build that silently differs.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("use_blockstorage_volume", "boot from the image (the default); volume-backed builds are not implemented"),
    ("volume_size", "volume-backed builds are not implemented; the flavor's disk is used"),
    ("external_source_image_url", "upload the base with a chroot image and upload_from, or create it in Glance first"),
    ("floating_ip", "floating IPs are not implemented: use a network reachable from this machine, or ssh_host / ssh_bastion_host"),
    ("floating_ip_network", "floating IPs are not implemented: use a network reachable from this machine, or ssh_host / ssh_bastion_host"),
    ("use_floating_ip", "floating IPs are not implemented: use a network reachable from this machine, or ssh_host / ssh_bastion_host"),
    ("ports", "use a network { port = \"...\" } block"),
    ("skip_create_image", "remove it: an imgform build always produces an image"),
    ("image_members", "share the image after the build (openstack image add project)"),
    ("user_domain_id", "use user_domain_name (or domain_name)"),
];

/// The [`UNSUPPORTED`] attributes `spec` sets, with their hints.
pub(crate) fn unsupported(spec: &ImageSpec) -> Vec<(&'static str, &'static str)> {
    UNSUPPORTED
        .iter()
        .copied()
        .filter(|(name, _)| match spec.attr(name) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::String(v)) => !v.is_empty() && v != "false",
            Some(Value::Array(v)) => !v.is_empty(),
            Some(_) => true,
        })
        .collect()
}

fn validate(spec: &ImageSpec) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let at = |name: &str| loc_of(spec, name);
    if spec.attr_bool("insecure") == Some(true) {
        diags.push(
            Diagnostic::warning(format!(
                "{}: insecure = true is ignored: imgform always verifies the cloud's TLS certificate",
                spec.addr
            ))
            .at(at("insecure"))
            .hint("if the cloud uses a private CA, give it with cacert = \"path/to/ca.pem\" (or cacert in clouds.yaml)"),
        );
    }
    // A warning here, so that Packer templates load and plan; the build
    // refuses them before creating anything.
    for (name, hint) in unsupported(spec) {
        diags.push(
            Diagnostic::warning(format!(
                "{}: {name} is not supported by imgform's openstack builder; building this image will fail",
                spec.addr
            ))
            .at(at(name))
            .hint(hint),
        );
    }
    if is_upload(spec) {
        let from = spec.attr("upload_from").map(scalar).unwrap_or_default();
        if ImageRef::find(&from).is_empty() {
            diags.push(
                Diagnostic::error(format!(
                    "{}: upload_from must name a locally built image",
                    spec.addr
                ))
                .at(at("upload_from"))
                .hint("upload_from = image.<ADDR>.id, where <ADDR> is a chroot or qemu image (e.g. image.golden.chroot.base.id)"),
            );
        }
        for p in spec.provisioners.iter().chain(&spec.tests) {
            if !provision::runs_on_host(&p.kind) {
                diags.push(
                    Diagnostic::error(format!(
                        "provisioner \"{}\" needs a running machine, but {} uploads a local image (upload_from)",
                        p.kind, spec.addr
                    ))
                    .at(Some(p.loc.clone()))
                    .hint("provision the chroot or qemu image that upload_from names instead; only shell-local runs in upload mode"),
                );
            }
        }
        return diags;
    }
    let has_source = non_empty(spec, "source_image").is_some()
        || non_empty(spec, "source_image_name").is_some()
        || spec.inputs.contains_key("source_image_filter");
    if !has_source {
        diags.push(
            Diagnostic::error(format!("{}: openstack needs a source image", spec.addr))
                .at(at("source_image"))
                .hint("set source_image = \"<glance id>\", source_image_name, a source_image_filter block, or upload_from = image.<ADDR>.id to upload a chroot or qemu image"),
        );
    }
    if non_empty(spec, "flavor").is_none() {
        diags.push(
            Diagnostic::error(format!("{}: openstack needs a flavor", spec.addr))
                .at(at("flavor"))
                .hint("the size of the build server, e.g. flavor = \"m1.small\""),
        );
    }
    diags.extend(cloud::validate_communicator(
        spec,
        "server",
        "ssh_username = \"ubuntu\"",
    ));
    diags
}
