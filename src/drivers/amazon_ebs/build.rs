//! The `amazon-ebs` build steps ([`run_build`] and the [`Build`] methods):
//! launch an instance from the source AMI, provision it, stop it, make the
//! AMI, tag and share it, test it, copy it; with Packer's template data
//! ([`TemplateData`]) and the tags, names and launch requests built from the
//! source.
//!
//! Every step that creates something records it in the build's
//! temporaries as soon as it exists; callers must run the build through
//! `cloud::run_then_clean_up` so that those are deleted afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, IamInstanceProfileSpecification, Image, Instance,
    InstanceStateName, InstanceType, IpPermission, IpRange, LaunchPermission,
    LaunchPermissionModifications, ResourceType, ShutdownBehavior, Tag, TagSpecification,
    VolumeType,
};
use serde_json::{json, Value};

use super::cleanup::Shared;
use super::client::{aws_error, connect, where_attributes, Ec2};
use super::filters::{filtered_groups, resolve_network, Network};
use super::queries::{
    delete_image, deregister_image, describe_image, polling_limit, snapshots_of,
    wait_image_available, wait_instance,
};
use crate::build::{BuildContext, BuildError};
use crate::drivers::cloud::{self, communicator, failed, note, scalar, short_run};
use crate::provision::{self, Stage};
use crate::spec::{ImageRef, ImageSpec};
use crate::state::Artifact;

/// Tag keys imgform puts on what it creates.
use super::{TAG_ADDRESS, TAG_BUILD, TAG_CONTENT};

/// Packer's build template data for the amazon builders, substituted in
/// `ami_name`, `ami_description` and tag values: `{{ .BuildRegion }}`,
/// `{{ .SourceAMI }}`, `{{ .SourceAMIName }}`, `{{ .SourceAMIOwner }}`,
/// `{{ .SourceAMIOwnerName }}`, `{{ .SourceAMICreationDate }}`, and
/// `{{ .SourceAMITags.KEY }}` (the source AMI's tag KEY). Any other field is
/// refused when the image is planned (`unknown_template_fields`).
#[derive(Debug, Default)]
struct TemplateData(BTreeMap<String, String>);

impl TemplateData {
    async fn load(ec2: &Ec2, source_ami: &str) -> Result<TemplateData, BuildError> {
        let mut data = BTreeMap::new();
        data.insert("BuildRegion".to_owned(), ec2.region.clone());
        data.insert("SourceAMI".to_owned(), source_ami.to_owned());
        if let Some(image) = describe_image(ec2, source_ami).await? {
            let mut put = |k: &str, v: Option<&str>| {
                data.insert(k.to_owned(), v.unwrap_or_default().to_owned());
            };
            put("SourceAMIName", image.name());
            put("SourceAMIOwner", image.owner_id());
            put("SourceAMIOwnerName", image.image_owner_alias());
            put("SourceAMICreationDate", image.creation_date());
            for tag in image.tags() {
                if let Some(key) = tag.key() {
                    put(&format!("SourceAMITags.{key}"), tag.value());
                }
            }
        }
        Ok(TemplateData(data))
    }

    /// Replaces the known `{{ .Name }}`s; anything else is left as written.
    fn render(&self, text: &str) -> String {
        static FIELD: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(r"\{\{-?\s*\.([\w.]+)\s*-?\}\}").expect("regex")
        });
        FIELD
            .replace_all(text, |c: &regex::Captures<'_>| {
                // A tag the source AMI lacks is empty, as in Packer.
                self.0.get(&c[1]).cloned().unwrap_or_else(|| {
                    if c[1].starts_with("SourceAMITags.") {
                        String::new()
                    } else {
                        c[0].to_owned()
                    }
                })
            })
            .into_owned()
    }

    fn render_pairs(&self, pairs: Vec<(String, String)>) -> Vec<(String, String)> {
        pairs
            .into_iter()
            .map(|(k, v)| (k, self.render(&v)))
            .collect()
    }
}

/// Tags as key/value pairs.
type TagPairs = Vec<(String, String)>;

/// Key/value pairs from a map attribute (`tags = {...}`) and repeatable
/// blocks (`tag { key = .. value = .. }`).
fn tag_pairs(spec: &ImageSpec, map_attr: &str, block: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(Value::Object(map)) = spec.attr(map_attr) {
        for (k, v) in map {
            out.push((k.clone(), scalar(v)));
        }
    }
    let blocks = match spec.attr(block) {
        Some(Value::Array(items)) => items.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    };
    for b in blocks {
        let key = b.get("key").or_else(|| b.get("name")).map(scalar);
        if let Some(key) = key {
            out.push((key, b.get("value").map(scalar).unwrap_or_default()));
        }
    }
    out
}

fn tags(pairs: &[(String, String)]) -> Vec<Tag> {
    pairs
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

fn tag_spec(kind: ResourceType, pairs: &[(String, String)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags(pairs)))
        .build()
}

/// Block device mappings from `launch_block_device_mappings` /
/// `ami_block_device_mappings` blocks.
fn block_devices(spec: &ImageSpec, name: &str) -> Vec<BlockDeviceMapping> {
    let items = match spec.attr(name) {
        Some(Value::Array(items)) => items.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => return Vec::new(),
    };
    items
        .iter()
        .map(|m| {
            let s = |k: &str| m.get(k).map(scalar).filter(|s| !s.is_empty());
            let i = |k: &str| {
                m.get(k)
                    .and_then(|v| v.as_i64().or_else(|| scalar(v).parse().ok()))
            };
            let b = |k: &str| {
                m.get(k)
                    .and_then(|v| v.as_bool().or_else(|| scalar(v).parse().ok()))
            };
            let mut builder = BlockDeviceMapping::builder().set_device_name(s("device_name"));
            if b("no_device") == Some(true) {
                builder = builder.no_device("");
            } else if let Some(virtual_name) = s("virtual_name") {
                builder = builder.virtual_name(virtual_name);
            } else {
                let ebs = EbsBlockDevice::builder()
                    .set_volume_size(i("volume_size").and_then(|v| i32::try_from(v).ok()))
                    .set_volume_type(s("volume_type").map(|t| VolumeType::from(t.as_str())))
                    .set_iops(i("iops").and_then(|v| i32::try_from(v).ok()))
                    .set_throughput(i("throughput").and_then(|v| i32::try_from(v).ok()))
                    .set_delete_on_termination(b("delete_on_termination"))
                    .set_encrypted(b("encrypted"))
                    .set_kms_key_id(s("kms_key_id"))
                    .set_snapshot_id(s("snapshot_id"))
                    .build();
                builder = builder.ebs(ebs);
            }
            builder.build()
        })
        .collect()
}

/// The address SSH should use, per `ssh_interface` (Packer's default:
/// the public IP when there is one, else the private IP).
fn instance_host(spec: &ImageSpec, instance: &Instance) -> Option<String> {
    let public_ip = instance.public_ip_address().filter(|s| !s.is_empty());
    let private_ip = instance.private_ip_address().filter(|s| !s.is_empty());
    let public_dns = instance.public_dns_name().filter(|s| !s.is_empty());
    let private_dns = instance.private_dns_name().filter(|s| !s.is_empty());
    match spec.attr_str("ssh_interface").unwrap_or("") {
        "public_ip" => public_ip,
        "private_ip" => private_ip,
        "public_dns" => public_dns,
        "private_dns" => private_dns,
        _ => public_ip.or(private_ip).or(public_dns),
    }
    .map(str::to_owned)
}

/// The address of this machine as seen on the route toward `endpoint_host`
/// (where instances live): the source of SSH connections, for the
/// temporary security group.
fn runner_cidr(endpoint_host: &str) -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect((endpoint_host, 443)).ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(format!("{ip}/32")),
        _ => None,
    }
}

fn temp_key_algorithm(spec: &ImageSpec) -> Result<russh::keys::Algorithm, BuildError> {
    match spec
        .attr_str("temporary_key_pair_type")
        .unwrap_or("ed25519")
    {
        "ed25519" => Ok(russh::keys::Algorithm::Ed25519),
        "rsa" => Ok(russh::keys::Algorithm::Rsa { hash: None }),
        other => Err(failed(format!(
            "temporary_key_pair_type = \"{other}\" is not supported; use \"ed25519\" or \"rsa\""
        ))),
    }
}

/// One build in progress: its context, the EC2 client, the record of
/// temporaries (a resource goes in as soon as it exists;
/// [`cleanup`](super::cleanup::cleanup) deletes them afterwards) and how
/// long to wait for EC2.
struct Build<'a> {
    ctx: &'a BuildContext<'a>,
    ec2: &'a Ec2,
    temps: &'a Shared,
    limit: Duration,
}

/// How the AMIs of a build are named and described (`ami_name` and
/// `ami_description`, with the template data substituted).
struct AmiNaming {
    name: String,
    description: Option<String>,
}

impl AmiNaming {
    fn new(spec: &ImageSpec, template: &TemplateData) -> AmiNaming {
        AmiNaming {
            name: template.render(
                &spec
                    .attr_str("ami_name")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("imgform-{}", spec.addr.slug())),
            ),
            description: spec.attr_str("ami_description").map(|d| template.render(d)),
        }
    }
}

/// How to launch an instance, shared by the build and the test phase.
struct Launch {
    template: TemplateData,
    subnet_id: Option<String>,
    key_name: Option<String>,
    groups: Vec<String>,
    user_data: Option<Vec<u8>>,
    run_tag: Vec<(String, String)>,
}

/// The build, step by step: launch an instance from the source AMI,
/// provision it, stop it, make the AMI, tag and share it, test it, copy it.
pub(super) async fn run_build(
    ctx: &BuildContext<'_>,
    ec2: &Ec2,
    temps: &Shared,
) -> Result<Artifact, BuildError> {
    let spec = ctx.spec;
    let build = Build {
        ctx,
        ec2,
        temps,
        limit: polling_limit(spec),
    };
    let source_ami = source_ami(spec)?;
    let template = TemplateData::load(ec2, &source_ami).await?;
    let naming = AmiNaming::new(spec, &template);
    let skip_create_ami = spec.attr_bool("skip_create_ami").unwrap_or(false);
    if !skip_create_ami {
        build.check_ami_name(&naming.name).await?;
    }

    let run_tag = vec![
        (TAG_BUILD.to_owned(), ctx.run_id.to_owned()),
        (TAG_ADDRESS.to_owned(), spec.addr.to_string()),
    ];
    let (key_name, temporary_key) = build.temporary_key_pair(&run_tag).await?;
    let net = build.network().await?;
    let groups = build.security_groups(&net, &run_tag).await?;
    let launch = Launch {
        template,
        subnet_id: net.subnet_id,
        key_name,
        groups,
        user_data: user_data(spec)?,
        run_tag,
    };
    let instance = build.launch_instance(&source_ami, &launch).await?;
    let instance_id = instance.instance_id().unwrap_or_default().to_owned();
    cloud::provision_launched(
        ctx,
        &format!("instance {instance_id}"),
        instance_host(spec, &instance),
        temporary_key.clone(),
        Stage::Build,
    )
    .await?;
    if !spec.attr_bool("disable_stop_instance").unwrap_or(false) {
        build.stop_instance(&instance_id).await?;
    }

    let mut attributes = where_attributes(ec2);
    attributes.insert("source_ami".to_owned(), json!(source_ami));
    if skip_create_ami {
        ctx.events.step("skip_create_ami: no AMI is created");
        let hex = ctx.content_address.trim_start_matches("sha256:");
        attributes.insert("skipped".to_owned(), json!(true));
        return Ok(Artifact {
            id: format!("none:{}", &hex[..hex.len().min(12)]),
            attributes,
        });
    }
    let (ami, snapshots) = build.create_ami(&instance_id, &naming).await?;
    let ami_tags = build.tag_ami(&launch.template, &ami, &snapshots).await?;
    share_image(ec2, spec, &ami).await?;
    if provision::has_tests(spec) {
        build.test_new_ami(&ami, &launch, temporary_key).await?;
    }
    let copies = build.copy_to_regions(&ami, &naming, &ami_tags).await?;

    attributes.insert("name".to_owned(), json!(naming.name));
    attributes.insert("snapshots".to_owned(), json!(snapshots));
    if !copies.is_empty() {
        attributes.insert("regions".to_owned(), Value::Object(copies));
    }
    // Success: the AMIs are the result now, not temporaries.
    note(temps, |t| t.images.clear());
    Ok(Artifact {
        id: ami,
        attributes,
    })
}

/// `source_ami`, or the id `source_ami_filter` was resolved to at plan time.
fn source_ami(spec: &ImageSpec) -> Result<String, BuildError> {
    let source_ami = match (&spec.base, spec.attr_str("source_ami")) {
        (Some(base), _) => base.id.clone(),
        (None, Some(ami)) if !ami.is_empty() => ami.to_owned(),
        _ => {
            return Err(failed(
                "no source AMI: set source_ami or source_ami_filter (resolved at plan time)",
            ))
        }
    };
    if !ImageRef::find(&source_ami).is_empty() {
        return Err(failed(format!(
            "source_ami {source_ami} refers to an image that has not been built"
        )));
    }
    Ok(source_ami)
}

/// `user_data`, or the bytes of `user_data_file`.
fn user_data(spec: &ImageSpec) -> Result<Option<Vec<u8>>, BuildError> {
    Ok(
        match (spec.attr_str("user_data"), spec.attr_str("user_data_file")) {
            (Some(text), _) => Some(text.as_bytes().to_vec()),
            (None, Some(file)) => Some(
                std::fs::read(spec.def_dir.join(file))
                    .map_err(|e| failed(format!("reading user_data_file {file}: {e}")))?,
            ),
            _ => None,
        },
    )
}

impl Build<'_> {
    /// Packer's pre-validation: an AMI name is unique per account and
    /// region. `force_deregister` removes the AMI in the way.
    async fn check_ami_name(&self, ami_name: &str) -> Result<(), BuildError> {
        let ec2 = self.ec2;
        let existing = ec2
            .client
            .describe_images()
            .owners("self")
            .filters(Filter::builder().name("name").values(ami_name).build())
            .send()
            .await
            .map_err(|e| aws_error("checking the AMI name", e))?;
        if let Some(taken) = existing.images().first().and_then(Image::image_id) {
            let spec = self.ctx.spec;
            if spec.attr_bool("force_deregister").unwrap_or(false) {
                // As Packer: its snapshots go too only with force_delete_snapshot.
                let snapshots = spec.attr_bool("force_delete_snapshot").unwrap_or(false);
                self.ctx.events.step(format!(
                    "force_deregister: deregistering {taken} ({ami_name}){}",
                    if snapshots {
                        " and deleting its snapshots"
                    } else {
                        ""
                    }
                ));
                if snapshots {
                    delete_image(ec2, taken).await?;
                } else {
                    deregister_image(ec2, taken).await?;
                }
            } else {
                return Err(failed(format!(
                    "an AMI named \"{ami_name}\" already exists in {} ({taken})",
                    ec2.region
                ))
                .with_hint("make ami_name unique per build, e.g. ami_name = \"app-${formatdate(\"YYYYMMDDhhmmss\", timestamp())}\" (a build setting, so it does not change the content address), or set force_deregister = true"));
            }
        }
        Ok(())
    }

    /// A temporary key pair, unless the user brings one: the key pair name
    /// to launch with (or `ssh_keypair_name`) and the temporary private key.
    async fn temporary_key_pair(
        &self,
        run_tag: &[(String, String)],
    ) -> Result<(Option<String>, Option<Arc<russh::keys::PrivateKey>>), BuildError> {
        let spec = self.ctx.spec;
        let key_name = spec.attr_str("ssh_keypair_name").map(str::to_owned);
        let brings_key = spec.attr_str("ssh_private_key_file").is_some()
            || spec.attr_str("ssh_password").is_some()
            || spec.attr_bool("ssh_agent_auth").unwrap_or(false);
        if communicator(spec) != "ssh" || key_name.is_some() || brings_key {
            return Ok((key_name, None));
        }
        let algorithm = temp_key_algorithm(spec)?;
        let key = russh::keys::PrivateKey::random(&mut rand::rng(), algorithm)
            .map_err(|e| failed(format!("generating a temporary key pair: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| failed(format!("encoding the temporary public key: {e}")))?;
        let name = spec
            .attr_str("temporary_key_pair_name")
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "imgform_{}_{}",
                    short_run(self.ctx.run_id),
                    spec.addr.slug()
                )
            });
        self.ec2
            .client
            .import_key_pair()
            .key_name(&name)
            .public_key_material(Blob::new(public.into_bytes()))
            .tag_specifications(tag_spec(ResourceType::KeyPair, run_tag))
            .send()
            .await
            .map_err(|e| aws_error("importing the temporary key pair", e))?;
        note(self.temps, |t| t.key_pair = Some(name.clone()));
        self.ctx
            .events
            .step(format!("created temporary key pair {name}"));
        Ok((Some(name), Some(Arc::new(key))))
    }

    /// The VPC and subnet the instance goes into (the subnet is said).
    async fn network(&self) -> Result<Network, BuildError> {
        let net = resolve_network(self.ec2, self.ctx.spec).await?;
        if let Some(subnet) = &net.subnet_id {
            self.ctx.events.step(format!(
                "building in subnet {subnet}{}",
                net.vpc_id
                    .as_deref()
                    .map(|v| format!(" of {v}"))
                    .unwrap_or_default()
            ));
        }
        Ok(net)
    }

    /// `security_group_ids`, else the groups `security_group_filter`
    /// selects, else a temporary group.
    async fn security_groups(
        &self,
        net: &Network,
        run_tag: &[(String, String)],
    ) -> Result<Vec<String>, BuildError> {
        let spec = self.ctx.spec;
        let mut groups = spec.attr_strings("security_group_ids");
        groups.extend(spec.attr_strings("security_group_id"));
        if groups.is_empty() {
            groups = filtered_groups(self.ec2, spec, net).await?;
        }
        if groups.is_empty() {
            groups.push(self.temporary_security_group(net, run_tag).await?);
        }
        Ok(groups)
    }

    /// A temporary security group in the build's VPC that lets SSH in from
    /// this machine (or from `temporary_security_group_source_cidrs`).
    async fn temporary_security_group(
        &self,
        net: &Network,
        run_tag: &[(String, String)],
    ) -> Result<String, BuildError> {
        let (ctx, ec2, spec) = (self.ctx, self.ec2, self.ctx.spec);
        let name = format!("imgform_{}_{}", short_run(ctx.run_id), spec.addr.slug());
        let created = ec2
            .client
            .create_security_group()
            .group_name(&name)
            .description(format!(
                "Temporary group for imgform build of {}",
                spec.addr
            ))
            .set_vpc_id(net.vpc_id.clone())
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, run_tag))
            .send()
            .await
            .map_err(|e| aws_error("creating the temporary security group", e))?;
        let group = created
            .group_id()
            .ok_or_else(|| failed("CreateSecurityGroup returned no group id"))?
            .to_owned();
        note(self.temps, |t| t.security_group = Some(group.clone()));
        let port = spec
            .attr("ssh_port")
            .and_then(|v| v.as_i64().or_else(|| scalar(v).parse().ok()))
            .unwrap_or(22);
        let cidrs = self.ssh_source_cidrs();
        if communicator(spec) == "ssh" {
            let ranges: Vec<IpRange> = cidrs
                .iter()
                .map(|c| IpRange::builder().cidr_ip(c).build())
                .collect();
            ec2.client
                .authorize_security_group_ingress()
                .group_id(&group)
                .ip_permissions(
                    IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(port as i32)
                        .to_port(port as i32)
                        .set_ip_ranges(Some(ranges))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_error("allowing SSH in the temporary security group", e))?;
        }
        ctx.events.step(format!(
            "created temporary security group {group} (SSH from {})",
            cidrs.join(", ")
        ));
        Ok(group)
    }

    /// Where SSH connections come from: `temporary_security_group_source_cidrs`,
    /// else this machine's address toward EC2, else anywhere (with a warning).
    fn ssh_source_cidrs(&self) -> Vec<String> {
        let ec2 = self.ec2;
        let mut cidrs = self
            .ctx
            .spec
            .attr_strings("temporary_security_group_source_cidrs");
        if cidrs.is_empty() {
            let host = ec2
                .endpoint_url
                .as_deref()
                .and_then(|e| e.split("://").nth(1))
                .and_then(|rest| rest.split([':', '/']).next())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("ec2.{}.amazonaws.com", ec2.region));
            match runner_cidr(&host) {
                Some(cidr) => cidrs.push(cidr),
                None => {
                    self.ctx.events.step(format!("warning: cannot tell this machine's address toward {host}; the temporary security group allows SSH from anywhere (set temporary_security_group_source_cidrs)"));
                    cidrs.push("0.0.0.0/0".to_owned());
                }
            }
        }
        cidrs
    }

    /// Launches an instance from `ami` and waits for it to run.
    async fn launch_instance(&self, ami: &str, launch: &Launch) -> Result<Instance, BuildError> {
        use base64::Engine;
        let spec = self.ctx.spec;
        let instance_type = spec.attr_str("instance_type").unwrap_or("t3.micro");
        let (instance_tags, volume_tags) = launch_tags(spec, launch);
        let mappings = block_devices(spec, "launch_block_device_mappings");
        let mut request = self
            .ec2
            .client
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::from(instance_type))
            .min_count(1)
            .max_count(1)
            .set_key_name(launch.key_name.clone())
            .set_block_device_mappings((!mappings.is_empty()).then_some(mappings))
            .tag_specifications(tag_spec(ResourceType::Instance, &instance_tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &volume_tags));
        if spec.attr_bool("ebs_optimized").unwrap_or(false) {
            request = request.ebs_optimized(true);
        }
        if let Some(m) = spec.attr("metadata_options").filter(|v| v.is_object()) {
            request = request.metadata_options(metadata_options(m));
        }
        request = with_network(request, spec, launch);
        if let Some(data) = &launch.user_data {
            request = request.user_data(base64::engine::general_purpose::STANDARD.encode(data));
        }
        if let Some(profile) = spec.attr_str("iam_instance_profile") {
            request = request.iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(profile)
                    .build(),
            );
        }
        if let Some(behavior) = spec.attr_str("shutdown_behavior") {
            request =
                request.instance_initiated_shutdown_behavior(ShutdownBehavior::from(behavior));
        }
        if let Some(zone) = spec.attr_str("availability_zone") {
            request = request.placement(
                aws_sdk_ec2::types::Placement::builder()
                    .availability_zone(zone)
                    .build(),
            );
        }
        let out = request
            .send()
            .await
            .map_err(|e| aws_error(&format!("launching an instance from {ami}"), e))?;
        let id = out
            .instances()
            .first()
            .and_then(Instance::instance_id)
            .ok_or_else(|| failed("RunInstances returned no instance"))?
            .to_owned();
        note(self.temps, |t| t.instances.push(id.clone()));
        self.ctx.events.step(format!(
            "launched instance {id} ({instance_type}) from {ami}; waiting for it to run"
        ));
        wait_instance(self.ec2, &id, InstanceStateName::Running, self.limit).await
    }

    /// Stops the provisioned instance before its AMI is made.
    async fn stop_instance(&self, instance_id: &str) -> Result<(), BuildError> {
        self.ctx
            .events
            .step(format!("stopping instance {instance_id}"));
        self.ec2
            .client
            .stop_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| aws_error(&format!("stopping {instance_id}"), e))?;
        wait_instance(
            self.ec2,
            instance_id,
            InstanceStateName::Stopped,
            self.limit,
        )
        .await?;
        Ok(())
    }

    /// Creates the AMI from the instance and waits until it is available:
    /// its id and its snapshots.
    async fn create_ami(
        &self,
        instance_id: &str,
        naming: &AmiNaming,
    ) -> Result<(String, Vec<String>), BuildError> {
        let ec2 = self.ec2;
        self.ctx.events.step(format!(
            "creating AMI \"{}\" from {instance_id}",
            naming.name
        ));
        let mappings = block_devices(self.ctx.spec, "ami_block_device_mappings");
        let created = ec2
            .client
            .create_image()
            .instance_id(instance_id)
            .name(&naming.name)
            .set_description(naming.description.clone())
            .set_block_device_mappings((!mappings.is_empty()).then_some(mappings))
            .send()
            .await
            .map_err(|e| aws_error("creating the AMI", e))?;
        let ami = created
            .image_id()
            .ok_or_else(|| failed("CreateImage returned no image id"))?
            .to_owned();
        note(self.temps, |t| {
            t.images.push((ec2.region.clone(), ami.clone()))
        });
        self.ctx
            .events
            .step(format!("waiting for {ami} to become available"));
        let image = wait_image_available(ec2, &ami, self.limit).await?;
        let snapshots = snapshots_of(&image);
        self.ctx.events.step(format!("AMI {ami} is available"));
        Ok((ami, snapshots))
    }

    /// Tags the AMI (`tags`) and its snapshots (`snapshot_tags`), with
    /// imgform's own tags; returns the AMI's tags, for its copies.
    async fn tag_ami(
        &self,
        template: &TemplateData,
        ami: &str,
        snapshots: &[String],
    ) -> Result<Vec<(String, String)>, BuildError> {
        let (ctx, spec) = (self.ctx, self.ctx.spec);
        let mut ami_tags = template.render_pairs(tag_pairs(spec, "tags", "tag"));
        ami_tags.push((TAG_ADDRESS.to_owned(), spec.addr.to_string()));
        ami_tags.push((TAG_CONTENT.to_owned(), ctx.content_address.to_owned()));
        ami_tags.push((TAG_BUILD.to_owned(), ctx.run_id.to_owned()));
        tag_resources(self.ec2, &[ami.to_owned()], &ami_tags).await?;
        if !snapshots.is_empty() {
            let mut snapshot_tags =
                template.render_pairs(tag_pairs(spec, "snapshot_tags", "snapshot_tag"));
            snapshot_tags.push((TAG_ADDRESS.to_owned(), spec.addr.to_string()));
            snapshot_tags.push((TAG_CONTENT.to_owned(), ctx.content_address.to_owned()));
            tag_resources(self.ec2, snapshots, &snapshot_tags).await?;
        }
        Ok(ami_tags)
    }

    /// The test phase: the tests on a fresh instance from the new AMI. When
    /// they fail the AMI is deregistered, or kept (not recorded) with
    /// `--keep-failed`.
    async fn test_new_ami(
        &self,
        ami: &str,
        launch: &Launch,
        temporary_key: Option<Arc<russh::keys::PrivateKey>>,
    ) -> Result<(), BuildError> {
        let ctx = self.ctx;
        ctx.events.step(format!(
            "test phase: launching an instance from the new AMI {ami}"
        ));
        let tested = async {
            let instance = self.launch_instance(ami, launch).await?;
            cloud::provision_launched(
                ctx,
                &format!("instance {}", instance.instance_id().unwrap_or("?")),
                instance_host(ctx.spec, &instance),
                temporary_key.clone(),
                Stage::Test,
            )
            .await
        }
        .await;
        if let Err(e) = tested {
            if ctx.keep_failed {
                note(self.temps, |t| t.images.retain(|(_, id)| id != ami));
                ctx.events
                    .step(format!("--keep-failed: keeping AMI {ami} (not recorded)"));
            }
            return Err(failed(format!(
                "tests failed: {e}{}",
                if ctx.keep_failed {
                    format!(" (AMI {ami} kept, not recorded)")
                } else {
                    format!(" (AMI {ami} deregistered)")
                }
            )));
        }
        Ok(())
    }

    /// Copies the AMI to `ami_regions`, tagged and shared like it: region →
    /// AMI id of the copy.
    async fn copy_to_regions(
        &self,
        ami: &str,
        naming: &AmiNaming,
        ami_tags: &[(String, String)],
    ) -> Result<serde_json::Map<String, Value>, BuildError> {
        let ec2 = self.ec2;
        let mut copies = serde_json::Map::new();
        for region in self.ctx.spec.attr_strings("ami_regions") {
            if region == ec2.region {
                continue;
            }
            let there = connect(&ec2.settings.in_region(&region)).await;
            self.ctx.events.step(format!("copying {ami} to {region}"));
            let copied = there
                .client
                .copy_image()
                .source_region(&ec2.region)
                .source_image_id(ami)
                .name(&naming.name)
                .set_description(naming.description.clone())
                .send()
                .await
                .map_err(|e| aws_error(&format!("copying {ami} to {region}"), e))?;
            let copy = copied
                .image_id()
                .ok_or_else(|| failed("CopyImage returned no image id"))?
                .to_owned();
            note(self.temps, |t| {
                t.images.push((region.clone(), copy.clone()))
            });
            self.ctx.events.step(format!(
                "waiting for {copy} to become available in {region}"
            ));
            let image = wait_image_available(&there, &copy, self.limit).await?;
            tag_resources(&there, std::slice::from_ref(&copy), ami_tags).await?;
            let copy_snapshots = snapshots_of(&image);
            if !copy_snapshots.is_empty() {
                tag_resources(&there, &copy_snapshots, ami_tags).await?;
            }
            share_image(&there, self.ctx.spec, &copy).await?;
            copies.insert(region, json!(copy));
        }
        Ok(copies)
    }
}

/// The tags of a build instance (`run_tags`, a `Name` unless given) and of
/// its volumes (`run_volume_tags`), each with the run's own tags.
fn launch_tags(spec: &ImageSpec, launch: &Launch) -> (TagPairs, TagPairs) {
    let mut instance_tags = launch
        .template
        .render_pairs(tag_pairs(spec, "run_tags", "run_tag"));
    if !instance_tags.iter().any(|(k, _)| k == "Name") {
        instance_tags.push(("Name".to_owned(), format!("imgform builder {}", spec.addr)));
    }
    instance_tags.extend(launch.run_tag.iter().cloned());
    let mut volume_tags =
        launch
            .template
            .render_pairs(tag_pairs(spec, "run_volume_tags", "run_volume_tag"));
    volume_tags.extend(launch.run_tag.iter().cloned());
    (instance_tags, volume_tags)
}

/// The `metadata_options` block (IMDS settings of the build instance).
fn metadata_options(m: &Value) -> aws_sdk_ec2::types::InstanceMetadataOptionsRequest {
    let s = |k: &str| m.get(k).map(scalar).filter(|s| !s.is_empty());
    aws_sdk_ec2::types::InstanceMetadataOptionsRequest::builder()
        .set_http_endpoint(
            s("http_endpoint")
                .map(|v| aws_sdk_ec2::types::InstanceMetadataEndpointState::from(v.as_str())),
        )
        .set_http_tokens(
            s("http_tokens").map(|v| aws_sdk_ec2::types::HttpTokensState::from(v.as_str())),
        )
        .set_http_put_response_hop_limit(
            s("http_put_response_hop_limit").and_then(|v| v.parse().ok()),
        )
        .set_instance_metadata_tags(
            s("instance_metadata_tags")
                .map(|v| aws_sdk_ec2::types::InstanceMetadataTagsState::from(v.as_str())),
        )
        .build()
}

/// The subnet and security groups of a launch request.
fn with_network(
    request: aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder,
    spec: &ImageSpec,
    launch: &Launch,
) -> aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder {
    let subnet = launch.subnet_id.clone();
    match spec.attr("associate_public_ip_address") {
        // Asking for (or refusing) a public IP takes a network interface
        // spec, which then carries the subnet and groups.
        Some(v) if !v.is_null() => request.network_interfaces(
            aws_sdk_ec2::types::InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .associate_public_ip_address(v.as_bool().unwrap_or(scalar(v) == "true"))
                .delete_on_termination(true)
                .set_subnet_id(subnet)
                .set_groups(Some(launch.groups.clone()))
                .build(),
        ),
        _ => request
            .set_security_group_ids(Some(launch.groups.clone()))
            .set_subnet_id(subnet),
    }
}

async fn tag_resources(
    ec2: &Ec2,
    ids: &[String],
    pairs: &[(String, String)],
) -> Result<(), BuildError> {
    ec2.client
        .create_tags()
        .set_resources(Some(ids.to_vec()))
        .set_tags(Some(tags(pairs)))
        .send()
        .await
        .map_err(|e| aws_error(&format!("tagging {}", ids.join(", ")), e))?;
    Ok(())
}

/// `ami_users`, `ami_groups` and `deprecate_at`.
async fn share_image(ec2: &Ec2, spec: &ImageSpec, ami: &str) -> Result<(), BuildError> {
    let mut adds: Vec<LaunchPermission> = spec
        .attr_strings("ami_users")
        .iter()
        .map(|u| LaunchPermission::builder().user_id(u).build())
        .collect();
    for group in spec.attr_strings("ami_groups") {
        adds.push(
            LaunchPermission::builder()
                .group(aws_sdk_ec2::types::PermissionGroup::from(group.as_str()))
                .build(),
        );
    }
    if !adds.is_empty() {
        ec2.client
            .modify_image_attribute()
            .image_id(ami)
            .launch_permission(
                LaunchPermissionModifications::builder()
                    .set_add(Some(adds))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error(&format!("sharing {ami}"), e))?;
    }
    if let Some(at) = spec.attr_str("deprecate_at") {
        let when = chrono::DateTime::parse_from_rfc3339(at).map_err(|e| {
            failed(format!(
                "deprecate_at \"{at}\" is not an RFC 3339 time: {e}"
            ))
        })?;
        ec2.client
            .enable_image_deprecation()
            .image_id(ami)
            .deprecate_at(aws_sdk_ec2::primitives::DateTime::from_secs(
                when.timestamp(),
            ))
            .send()
            .await
            .map_err(|e| aws_error(&format!("setting deprecate_at on {ami}"), e))?;
    }
    Ok(())
}
