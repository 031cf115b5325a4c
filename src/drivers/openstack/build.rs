//! The `openstack` builder's implementation: see the parent module for
//! what it does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;

use super::api::{self, Api, Settings};
use super::{is_upload, non_empty, unsupported, PROP_ADDRESS, PROP_BUILD, PROP_CONTENT, TAG};
use crate::build::events::EventSink;
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::drivers::cloud::{self, communicator, failed, note, scalar, short_run};
use crate::drivers::kind::{BaseQuery, Builder, Recorded};
use crate::provision::{self, NoCommunicator, Stage};
use crate::spec::{ImageRef, ImageSpec};
use crate::state::Artifact;

pub struct OpenStackBuilder;

/// The first wait between polls of Nova and Glance (doubling to 5 s).
const POLL_FIRST: Duration = Duration::from_millis(250);

/// A map attribute (`metadata = {...}`) as string pairs.
fn string_map(spec: &ImageSpec, name: &str) -> BTreeMap<String, String> {
    match spec.attr(name) {
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        _ => BTreeMap::new(),
    }
}

/// A block that may have been evaluated as one object or a list of them.
fn first_block(v: &Value) -> Option<&Value> {
    match v {
        Value::Array(items) => items.first(),
        Value::Object(_) => Some(v),
        _ => None,
    }
}

fn mode(spec: &ImageSpec) -> &'static str {
    if is_upload(spec) {
        "upload"
    } else {
        "snapshot"
    }
}

fn settings_from_spec(spec: &ImageSpec) -> Settings {
    let get = |k: &str| non_empty(spec, k);
    let domain = get("domain_name");
    Settings {
        cloud: get("cloud"),
        auth_url: get("identity_endpoint").or_else(|| get("auth_url")),
        username: get("username"),
        user_id: get("user_id"),
        password: get("password"),
        token: get("token"),
        application_credential_id: get("application_credential_id"),
        application_credential_name: get("application_credential_name"),
        application_credential_secret: get("application_credential_secret"),
        user_domain_name: get("user_domain_name").or_else(|| domain.clone()),
        project_name: get("project_name").or_else(|| get("tenant_name")),
        project_id: get("project_id").or_else(|| get("tenant_id")),
        project_domain_name: domain,
        project_domain_id: get("domain_id"),
        region: get("region"),
        cacert: get("cacert").map(|c| spec.def_dir.join(c).display().to_string()),
        interface: get("endpoint_type").map(|t| t.trim_end_matches("URL").to_owned()),
    }
}

/// How to reach a recorded image: the source's settings while the image is
/// still defined (its credentials; the state holds none), else the cloud,
/// identity endpoint and region recorded with it and the ambient
/// credentials (clouds.yaml, `OS_*`). The recorded region and endpoint win:
/// they are where the image is.
fn settings_for(at: Recorded<'_>, artifact: &Artifact) -> Settings {
    let get = |k: &str| {
        artifact
            .attributes
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let base = at.spec.map(settings_from_spec).unwrap_or_default();
    Settings {
        cloud: get("cloud").or(base.cloud.clone()),
        auth_url: get("auth_url").or(base.auth_url.clone()),
        region: get("region").or(base.region.clone()),
        ..base
    }
}

/// `source_image_filter` as Glance list filters and `most_recent`.
struct ImageFilter {
    filters: Vec<(String, String)>,
    most_recent: bool,
}

fn image_filter(spec: &ImageSpec) -> Option<ImageFilter> {
    let mut filters = vec![("status".to_owned(), "active".to_owned())];
    let mut most_recent = false;
    if let Some(block) = spec.inputs.get("source_image_filter").and_then(first_block) {
        most_recent = block
            .get("most_recent")
            .and_then(|v| v.as_bool().or_else(|| scalar(v).parse().ok()))
            .unwrap_or(false);
        if let Some(f) = block.get("filters").and_then(first_block) {
            for key in ["name", "visibility", "owner"] {
                if let Some(v) = f.get(key).map(scalar).filter(|s| !s.is_empty()) {
                    filters.push((key.to_owned(), v));
                }
            }
            match f.get("tags") {
                Some(Value::Array(tags)) => {
                    filters.extend(tags.iter().map(|t| ("tag".to_owned(), scalar(t))));
                }
                Some(Value::String(t)) => filters.push(("tag".to_owned(), t.clone())),
                _ => {}
            }
            if let Some(Value::Object(props)) = f.get("properties").and_then(first_block) {
                for (k, v) in props {
                    filters.push((k.clone(), scalar(v)));
                }
            }
        }
    } else if let Some(name) = non_empty(spec, "source_image_name") {
        filters.push(("name".to_owned(), name));
    } else {
        return None;
    }
    Some(ImageFilter {
        filters,
        most_recent,
    })
}

/// Whether an image has every property and tag the filters ask for
/// (Glance filters on them too; this guards against a cloud that ignores a
/// filter it does not know).
fn matches_filters(image: &Value, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "tag" => image
            .get("tags")
            .and_then(Value::as_array)
            .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(v))),
        "owner" | "visibility" | "status" => true,
        _ => image.get(k).map(scalar).as_deref() == Some(v.as_str()),
    })
}

/// Picks the image a filter selects from a newest-first list.
fn select_image(images: &[Value], filter: &ImageFilter) -> Result<String, String> {
    let id = |i: &Value| {
        i.get("id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    match images {
        [] => Err(format!(
            "no active image matches {}",
            describe_filters(&filter.filters)
        )),
        [one] => Ok(id(one)),
        [newest, ..] if filter.most_recent => Ok(id(newest)),
        many => Err(format!(
            "{} images match {} ({}{}); set most_recent = true in source_image_filter or narrow the filter",
            many.len(),
            describe_filters(&filter.filters),
            many.iter().take(5).map(id).collect::<Vec<_>>().join(", "),
            if many.len() > 5 { ", ..." } else { "" }
        )),
    }
}

fn describe_filters(filters: &[(String, String)]) -> String {
    filters
        .iter()
        .filter(|(k, _)| k != "status")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a build created and must delete again.
#[derive(Debug, Default)]
struct Temporaries {
    /// Recorded before the import: deleting a key pair that was never made
    /// is harmless, and an import cut short by Ctrl-C may still have
    /// happened.
    key_pair: Option<String>,
    servers: Vec<String>,
    /// Names of servers asked for. A create cut short by Ctrl-C may have
    /// made a server whose id imgform never saw: cleanup looks for them by
    /// name (and this run's id in their metadata).
    server_names: Vec<String>,
    /// Images created by this build that are not (yet) its result.
    /// Cleared once the build succeeds.
    images: Vec<String>,
    /// An image `--keep-failed` keeps: never swept.
    kept_image: Option<String>,
}

impl cloud::Temporaries for Temporaries {
    fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.servers {
            out.push(format!("server {s}"));
        }
        if let Some(k) = &self.key_pair {
            out.push(format!("key pair {k}"));
        }
        for i in &self.images {
            out.push(format!("image {i}"));
        }
        out
    }
}

type Shared = cloud::Shared<Temporaries>;

fn image_timeout(spec: &ImageSpec) -> Duration {
    spec.attr_str("wait_image_ready_timeout")
        .and_then(crate::spec::parse_duration)
        .unwrap_or(Duration::from_secs(3600))
}

const SERVER_TIMEOUT: Duration = Duration::from_secs(1800);

async fn wait_server_status(
    os: &Api,
    id: &str,
    want: &str,
    limit: Duration,
) -> Result<Value, BuildError> {
    cloud::wait_for(
        POLL_FIRST,
        &format!("server {id} to be {want}"),
        limit,
        || async {
            let Some(server) = os.server(id).await? else {
                return Err(failed(format!("server {id} disappeared")));
            };
            let status = server.get("status").and_then(Value::as_str).unwrap_or("");
            if status == want {
                return Ok(Some(server));
            }
            if status == "ERROR" {
                let fault = server
                    .pointer("/fault/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no fault given");
                return Err(failed(format!("server {id} went to ERROR: {fault}")));
            }
            Ok(None)
        },
    )
    .await
}

async fn wait_server_gone(os: &Api, id: &str, limit: Duration) -> Result<(), BuildError> {
    cloud::wait_for(
        POLL_FIRST,
        &format!("server {id} to be deleted"),
        limit,
        || async {
            Ok(match os.server(id).await? {
                None => Some(()),
                Some(s) if s.get("status").and_then(Value::as_str) == Some("DELETED") => Some(()),
                Some(_) => None,
            })
        },
    )
    .await
}

async fn wait_image_active(os: &Api, id: &str, limit: Duration) -> Result<Value, BuildError> {
    cloud::wait_for(
        POLL_FIRST,
        &format!("image {id} to be active"),
        limit,
        || async {
            match os.image(id).await? {
                Some(image) => match image.get("status").and_then(Value::as_str) {
                    Some("active") => Ok(Some(image)),
                    Some(s @ ("killed" | "deactivated")) => {
                        Err(failed(format!("image {id} is {s} instead of active")))
                    }
                    _ => Ok(None),
                },
                None => Err(failed(format!(
                    "image {id} was deleted before it was active"
                ))),
            }
        },
    )
    .await
}

/// The address SSH should use: a floating IP first, else the access IP,
/// else the first fixed address.
fn server_host(server: &Value) -> Option<String> {
    let mut fixed = None;
    if let Some(Value::Object(networks)) = server.get("addresses") {
        for addresses in networks.values() {
            for a in addresses.as_array().into_iter().flatten() {
                let addr = a.get("addr").and_then(Value::as_str).unwrap_or("");
                if addr.is_empty() {
                    continue;
                }
                if a.get("OS-EXT-IPS:type").and_then(Value::as_str) == Some("floating") {
                    return Some(addr.to_owned());
                }
                fixed.get_or_insert_with(|| addr.to_owned());
            }
        }
    }
    ["accessIPv4", "accessIPv6"]
        .iter()
        .find_map(|k| server.get(*k).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or(fixed)
}

fn image_name(spec: &ImageSpec) -> String {
    non_empty(spec, "image_name").unwrap_or_else(|| format!("imgform-{}", spec.addr.slug()))
}

/// The properties every kept image carries, with `metadata` under them.
fn image_properties(ctx: &BuildContext<'_>) -> serde_json::Map<String, Value> {
    let mut props = serde_json::Map::new();
    for (k, v) in string_map(ctx.spec, "metadata") {
        props.insert(k, json!(v));
    }
    props.insert(PROP_ADDRESS.to_owned(), json!(ctx.spec.addr.to_string()));
    props.insert(PROP_CONTENT.to_owned(), json!(ctx.content_address));
    props.insert(PROP_BUILD.to_owned(), json!(ctx.run_id));
    props
}

fn image_tags(spec: &ImageSpec) -> Vec<String> {
    let mut tags = spec.attr_strings("image_tags");
    if !tags.iter().any(|t| t == TAG) {
        tags.push(TAG.to_owned());
    }
    tags
}

fn base_attributes(os: &Api, settings: &Settings, spec: &ImageSpec) -> BTreeMap<String, Value> {
    let mut attributes = BTreeMap::new();
    let mut public = settings.clone();
    if public.auth_url.is_none() {
        public.auth_url = os.auth_url.clone();
    }
    if public.cloud.is_none() {
        public.cloud = std::env::var("OS_CLOUD").ok().filter(|c| !c.is_empty());
    }
    if public.region.is_none() {
        public.region = std::env::var("OS_REGION_NAME")
            .ok()
            .filter(|r| !r.is_empty());
    }
    for (k, v) in public.public_attributes() {
        attributes.insert(k.to_owned(), json!(v));
    }
    attributes.insert("mode".to_owned(), json!(mode(spec)));
    attributes
}

/// Upload mode: the chroot image's file, uploaded as a new Glance image.
async fn run_upload(
    ctx: &BuildContext<'_>,
    os: &Api,
    settings: &Settings,
    temps: &Shared,
) -> Result<Artifact, BuildError> {
    let spec = ctx.spec;
    let events = &ctx.events;
    let from = spec.attr("upload_from").map(scalar).unwrap_or_default();
    if from.is_empty() || !ImageRef::find(&from).is_empty() {
        return Err(failed(format!(
            "upload_from {from} refers to an image that has not been built"
        )));
    }
    // shell-local provisioners run first, on this machine.
    provision::run_all(ctx, &NoCommunicator).await?;

    let recorded = spec.def_dir.join(&from);
    // A qcow2 overlay (a qemu image built with use_backing_file) would be
    // useless alone in Glance: it is flattened into a scratch file first.
    let flat = flatten_overlay(&recorded, events).await?;
    let path = flat.as_ref().map_or(recorded.clone(), |f| f.0.clone());
    let hashed = path.clone();
    let (sha256, size) = tokio::task::spawn_blocking(move || sha256_file(&hashed))
        .await
        .map_err(|e| failed(format!("hashing {from}: {e}")))?
        .map_err(|e| failed(format!("reading {}: {e}", path.display())))?;
    // A local image (chroot, qemu) uploads as what its bytes are.
    let disk_format = non_empty(spec, "image_disk_format")
        .unwrap_or_else(|| crate::drivers::vm::image::disk_format(&path).to_owned());
    let name = image_name(spec);
    let mut body = image_properties(ctx);
    body.insert("name".to_owned(), json!(name));
    body.insert("disk_format".to_owned(), json!(disk_format));
    body.insert("container_format".to_owned(), json!("bare"));
    body.insert("tags".to_owned(), json!(image_tags(spec)));
    if let Some(visibility) = non_empty(spec, "image_visibility") {
        body.insert("visibility".to_owned(), json!(visibility));
    }
    if let Some(min_disk) = spec
        .attr("image_min_disk")
        .and_then(|v| v.as_u64().or_else(|| scalar(v).parse().ok()))
    {
        body.insert("min_disk".to_owned(), json!(min_disk));
    }
    let created = os.create_image(&Value::Object(body)).await?;
    let id = created
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| failed("Glance created an image without an id"))?
        .to_owned();
    note(temps, |t| t.images.push(id.clone()));
    events.step(format!(
        "created image {id} (\"{name}\", {disk_format}); uploading {from} ({size} bytes)"
    ));
    os.upload_image(&id, &path).await?;
    wait_image_active(os, &id, image_timeout(spec)).await?;
    events.step(format!("image {id} is active"));

    let mut attributes = base_attributes(os, settings, spec);
    attributes.insert("name".to_owned(), json!(name));
    attributes.insert("upload_from".to_owned(), json!(from));
    attributes.insert("sha256".to_owned(), json!(sha256));
    attributes.insert("disk_format".to_owned(), json!(disk_format));
    note(temps, |t| t.images.clear());
    Ok(Artifact { id, attributes })
}

/// A scratch file, removed when dropped.
struct ScratchFile(std::path::PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A scratch file holding `path` without its backing file, when `path` is
/// a qcow2 overlay (next to it, so that it is on the same disk).
async fn flatten_overlay(
    path: &Path,
    events: &crate::build::events::EventSink,
) -> Result<Option<ScratchFile>, BuildError> {
    let Some(backing) = crate::drivers::vm::image::backing_file(path) else {
        return Ok(None);
    };
    events.step(format!(
        "{} is an overlay on {backing}: flattening it for the upload",
        path.display()
    ));
    let dir = path.parent().unwrap_or(Path::new("."));
    let flat = ScratchFile(dir.join(format!(
        ".imgform-flat-{}.qcow2",
        uuid::Uuid::new_v4().simple()
    )));
    let out = tokio::process::Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(path)
        .arg(&flat.0)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| failed(format!("qemu-img: cannot start: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "flattening {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(Some(flat))
}

/// SHA-256 (hex) and size of a file, read in chunks.
fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// How to launch a server, shared by the build and the test phase.
struct Launch {
    flavor: String,
    key_name: Option<String>,
    /// Nova's `networks` entries (`{"uuid"}`, `{"port"}`, `{"fixed_ip"}`).
    networks: Vec<Value>,
    user_data: Option<String>,
}

/// One snapshot build in progress: its context, the OpenStack session and
/// the record of temporaries (a resource goes in as soon as it exists;
/// [`cleanup`] deletes them afterwards).
struct Build<'a> {
    ctx: &'a BuildContext<'a>,
    os: &'a Api,
    temps: &'a Shared,
}

/// Snapshot mode, step by step: create a server from the source image,
/// provision it, stop it, make the image, test it.
async fn run_snapshot(
    ctx: &BuildContext<'_>,
    os: &Api,
    settings: &Settings,
    temps: &Shared,
) -> Result<Artifact, BuildError> {
    let spec = ctx.spec;
    let build = Build { ctx, os, temps };
    let source_image = source_image(spec)?;
    let flavor_name =
        non_empty(spec, "flavor").ok_or_else(|| failed("the openstack builder needs a flavor"))?;
    let flavor = os.flavor_id(&flavor_name).await?;
    let networks = networks(os, spec).await?;
    let user_data = user_data(spec)?;
    let (key_name, temporary_key) = build.temporary_key_pair().await?;
    let launch = Launch {
        flavor,
        key_name,
        networks,
        user_data,
    };
    let server = build.launch_server(&source_image, &launch).await?;
    let server_id = server
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    cloud::provision_launched(
        ctx,
        &format!("server {server_id}"),
        server_host(&server),
        temporary_key.clone(),
        Stage::Build,
    )
    .await?;
    build.stop_server(&server_id).await?;
    let name = image_name(spec);
    let image = build.create_image(&server_id, &name).await?;
    if provision::has_tests(spec) {
        build.test_new_image(&image, &launch, temporary_key).await?;
    }

    let mut attributes = base_attributes(os, settings, spec);
    attributes.insert("name".to_owned(), json!(name));
    attributes.insert("source_image".to_owned(), json!(source_image));
    note(temps, |t| t.images.clear());
    Ok(Artifact {
        id: image,
        attributes,
    })
}

/// `source_image`, or the id `source_image_name` / `source_image_filter`
/// was resolved to at plan time.
fn source_image(spec: &ImageSpec) -> Result<String, BuildError> {
    let source_image = match (&spec.base, non_empty(spec, "source_image")) {
        (_, Some(id)) => id,
        (Some(base), None) => base.id.clone(),
        (None, None) => {
            return Err(failed(
                "no source image: set source_image, source_image_name or source_image_filter",
            ))
        }
    };
    if !ImageRef::find(&source_image).is_empty() {
        return Err(failed(format!(
            "source_image {source_image} refers to an image that has not been built"
        )));
    }
    Ok(source_image)
}

/// Nova's `networks` entries: `networks` (names or ids), then the
/// `network { uuid | name, port, fixed_ip }` blocks.
async fn networks(os: &Api, spec: &ImageSpec) -> Result<Vec<Value>, BuildError> {
    let mut networks = Vec::new();
    for n in spec.attr_strings("networks") {
        networks.push(json!({ "uuid": os.network_id(&n).await? }));
    }
    let blocks = match spec.attr("network") {
        Some(Value::Array(items)) => items.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    };
    for b in blocks {
        let field = |k: &str| b.get(k).map(scalar).filter(|s| !s.is_empty());
        let mut entry = serde_json::Map::new();
        if let Some(net) = field("uuid").or_else(|| field("name")) {
            entry.insert("uuid".into(), json!(os.network_id(&net).await?));
        }
        if let Some(port) = field("port") {
            entry.insert("port".into(), json!(port));
        }
        if let Some(ip) = field("fixed_ip") {
            entry.insert("fixed_ip".into(), json!(ip));
        }
        if !entry.is_empty() {
            networks.push(Value::Object(entry));
        }
    }
    Ok(networks)
}

/// `user_data`, or the contents of `user_data_file`, base64-encoded.
fn user_data(spec: &ImageSpec) -> Result<Option<String>, BuildError> {
    Ok(match (
        non_empty(spec, "user_data"),
        non_empty(spec, "user_data_file"),
    ) {
        (Some(text), _) => Some(text.into_bytes()),
        (None, Some(file)) => Some(
            std::fs::read(spec.def_dir.join(&file))
                .map_err(|e| failed(format!("reading user_data_file {file}: {e}")))?,
        ),
        _ => None,
    }
    .map(|bytes| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }))
}

impl Build<'_> {
    /// A temporary key pair, unless the user brings one: the key pair name
    /// to launch with (or `ssh_keypair_name`) and the temporary private key.
    async fn temporary_key_pair(
        &self,
    ) -> Result<(Option<String>, Option<Arc<russh::keys::PrivateKey>>), BuildError> {
        let spec = self.ctx.spec;
        let key_name = non_empty(spec, "ssh_keypair_name");
        let brings_key = spec.attr_str("ssh_private_key_file").is_some()
            || spec.attr_str("ssh_password").is_some()
            || spec.attr_bool("ssh_agent_auth") == Some(true);
        if communicator(spec) != "ssh" || key_name.is_some() || brings_key {
            return Ok((key_name, None));
        }
        let key =
            russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
                .map_err(|e| failed(format!("generating a temporary key pair: {e}")))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| failed(format!("encoding the temporary public key: {e}")))?;
        let name = non_empty(spec, "temporary_key_pair_name").unwrap_or_else(|| {
            format!(
                "imgform_{}_{}",
                short_run(self.ctx.run_id),
                spec.addr.slug()
            )
        });
        note(self.temps, |t| t.key_pair = Some(name.clone()));
        self.os.create_keypair(&name, &public).await?;
        self.ctx
            .events
            .step(format!("created temporary key pair {name}"));
        Ok((Some(name), Some(Arc::new(key))))
    }

    /// Creates a server from `image` and waits for it to be ACTIVE.
    async fn launch_server(&self, image: &str, launch: &Launch) -> Result<Value, BuildError> {
        let (ctx, spec) = (self.ctx, self.ctx.spec);
        let name = non_empty(spec, "instance_name")
            .or_else(|| non_empty(spec, "server_name"))
            .unwrap_or_else(|| format!("imgform-{}-{}", short_run(ctx.run_id), spec.addr.slug()));
        let mut metadata = serde_json::Map::new();
        for (k, v) in string_map(spec, "instance_metadata") {
            metadata.insert(k, json!(v));
        }
        metadata.insert(PROP_BUILD.to_owned(), json!(ctx.run_id));
        metadata.insert(PROP_ADDRESS.to_owned(), json!(spec.addr.to_string()));
        let mut server = serde_json::Map::new();
        server.insert("name".into(), json!(name));
        server.insert("imageRef".into(), json!(image));
        server.insert("flavorRef".into(), json!(launch.flavor));
        server.insert("metadata".into(), Value::Object(metadata));
        if let Some(key) = &launch.key_name {
            server.insert("key_name".into(), json!(key));
        }
        if !launch.networks.is_empty() {
            server.insert("networks".into(), Value::Array(launch.networks.clone()));
        }
        let groups: Vec<Value> = spec
            .attr_strings("security_groups")
            .iter()
            .map(|g| json!({ "name": g }))
            .collect();
        if !groups.is_empty() {
            server.insert("security_groups".into(), Value::Array(groups));
        }
        if let Some(zone) = non_empty(spec, "availability_zone") {
            server.insert("availability_zone".into(), json!(zone));
        }
        if let Some(data) = &launch.user_data {
            server.insert("user_data".into(), json!(data));
        }
        if let Some(drive) = spec.attr_bool("config_drive") {
            server.insert("config_drive".into(), json!(drive));
        }
        note(self.temps, |t| t.server_names.push(name.clone()));
        let id = self
            .os
            .create_server(&json!({ "server": Value::Object(server) }))
            .await?;
        note(self.temps, |t| t.servers.push(id.clone()));
        ctx.events.step(format!(
            "created server {id} (\"{name}\") from image {image}; waiting for it to be ACTIVE"
        ));
        wait_server_status(self.os, &id, "ACTIVE", SERVER_TIMEOUT).await
    }

    /// Stops the provisioned server before its image is made.
    async fn stop_server(&self, server_id: &str) -> Result<(), BuildError> {
        self.ctx.events.step(format!("stopping server {server_id}"));
        self.os
            .server_action(server_id, &json!({ "os-stop": null }))
            .await?;
        wait_server_status(self.os, server_id, "SHUTOFF", SERVER_TIMEOUT).await?;
        Ok(())
    }

    /// Creates the image `name` from the server, waits until it is active,
    /// then tags it and sets its visibility: its id.
    async fn create_image(&self, server_id: &str, name: &str) -> Result<String, BuildError> {
        let (ctx, os, spec) = (self.ctx, self.os, self.ctx.spec);
        ctx.events
            .step(format!("creating image \"{name}\" from server {server_id}"));
        let image = os
            .create_server_image(server_id, name, &image_properties(ctx))
            .await?;
        note(self.temps, |t| t.images.push(image.clone()));
        wait_image_active(os, &image, image_timeout(spec)).await?;
        ctx.events.step(format!("image {image} is active"));
        for tag in image_tags(spec) {
            os.add_image_tag(&image, &tag).await?;
        }
        if let Some(visibility) = non_empty(spec, "image_visibility") {
            os.patch_image(
                &image,
                &json!([{ "op": "replace", "path": "/visibility", "value": visibility }]),
            )
            .await?;
        }
        Ok(image)
    }

    /// The test phase: the tests on a fresh server from the new image. When
    /// they fail the image is deleted, or kept (not recorded) with
    /// `--keep-failed`.
    async fn test_new_image(
        &self,
        image: &str,
        launch: &Launch,
        temporary_key: Option<Arc<russh::keys::PrivateKey>>,
    ) -> Result<(), BuildError> {
        let ctx = self.ctx;
        ctx.events.step(format!(
            "test phase: creating a server from the new image {image}"
        ));
        let tested = async {
            let server = self.launch_server(image, launch).await?;
            cloud::provision_launched(
                ctx,
                &format!(
                    "server {}",
                    server.get("id").and_then(Value::as_str).unwrap_or("?")
                ),
                server_host(&server),
                temporary_key.clone(),
                Stage::Test,
            )
            .await
        }
        .await;
        if let Err(e) = tested {
            if ctx.keep_failed {
                note(self.temps, |t| {
                    t.images.retain(|id| id != image);
                    t.kept_image = Some(image.to_owned());
                });
                ctx.events.step(format!(
                    "--keep-failed: keeping image {image} (not recorded)"
                ));
            }
            return Err(failed(format!(
                "tests failed: {e}{}",
                if ctx.keep_failed {
                    format!(" (image {image} kept, not recorded)")
                } else {
                    format!(" (image {image} deleted)")
                }
            )));
        }
        Ok(())
    }
}

/// Deletes every temporary resource, reporting each step; keeps going past
/// errors and returns them all. After a failure (or Ctrl-C) it also sweeps
/// what a call cut short may have made: servers by name and images by this
/// run's `imgform_build` property.
async fn cleanup(
    os: &Api,
    mut temps: Temporaries,
    run_id: &str,
    failed_build: bool,
    events: &EventSink,
) -> Vec<String> {
    let mut errors = Vec::new();
    for name in &temps.server_names {
        match os.servers_named(name).await {
            Ok(found) => {
                for server in found {
                    let ours =
                        server.pointer(&format!("/metadata/{PROP_BUILD}")) == Some(&json!(run_id));
                    let id = server.get("id").and_then(Value::as_str).unwrap_or("");
                    if ours && !id.is_empty() && !temps.servers.iter().any(|s| s == id) {
                        temps.servers.push(id.to_owned());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if failed_build {
        match os
            .images(&[(PROP_BUILD.to_owned(), run_id.to_owned())])
            .await
        {
            Ok(found) => {
                // Checked here too: the sweep must never trust a server-side
                // filter with deleting someone else's image.
                for image in found
                    .iter()
                    .filter(|i| image_property(i, PROP_BUILD) == Some(run_id))
                {
                    let id = image_property(image, "id").unwrap_or("").to_owned();
                    let listed = temps.images.contains(&id);
                    if !id.is_empty() && !listed && temps.kept_image.as_deref() != Some(&id) {
                        temps.images.push(id);
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    for id in &temps.servers {
        match os.delete_server(id).await {
            Ok(()) => {
                events.step(format!("deleting server {id}"));
                if let Err(e) = wait_server_gone(os, id, Duration::from_secs(600)).await {
                    errors.push(e.to_string());
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if let Some(name) = &temps.key_pair {
        match os.delete_keypair(name).await {
            Ok(()) => events.step(format!("deleted temporary key pair {name}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for id in &temps.images {
        match os.delete_image(id).await {
            Ok(()) => events.step(format!("deleted unfinished image {id}")),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

fn image_property<'v>(image: &'v Value, key: &str) -> Option<&'v str> {
    image.get(key).and_then(Value::as_str)
}

impl Builder for OpenStackBuilder {
    fn has_base_filter(&self) -> bool {
        true
    }
    fn base_query(&self, spec: &ImageSpec) -> Option<BaseQuery> {
        if is_upload(spec) || non_empty(spec, "source_image").is_some() {
            return None;
        }
        let filter = image_filter(spec)?;
        let settings = settings_from_spec(spec);
        Some(BaseQuery {
            attr: if spec.attr("source_image_filter").is_some() {
                "source_image_filter"
            } else {
                "source_image_name"
            },
            query: json!({
                "target": (super::KIND.target)(&spec.settings).0,
                "auth_url": settings.auth_url,
                "filters": filter.filters,
                "most_recent": filter.most_recent,
            }),
        })
    }

    fn resolve_base<'a>(
        &'a self,
        spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<String, BuildError>> {
        Box::pin(async move {
            let filter = image_filter(spec)
                .ok_or_else(|| failed("no source_image_filter or source_image_name to resolve"))?;
            let os = api::connect(&settings_from_spec(spec)).await?;
            let mut images = os.images(&filter.filters).await?;
            images.retain(|i| matches_filters(i, &filter.filters));
            select_image(&images, &filter).map_err(failed)
        })
    }

    fn build<'a>(&'a self, ctx: BuildContext<'a>) -> BoxFuture<'a, Result<Artifact, BuildError>> {
        Box::pin(async move {
            if let Some((name, hint)) = unsupported(ctx.spec).first() {
                return Err(failed(format!(
                    "{name} is not supported by imgform's openstack builder"
                ))
                .with_hint(*hint));
            }
            let settings = settings_from_spec(ctx.spec);
            let os = api::connect(&settings).await?;
            let temps: Shared = Arc::default();
            let run = async {
                if is_upload(ctx.spec) {
                    run_upload(&ctx, &os, &settings, &temps).await
                } else {
                    run_snapshot(&ctx, &os, &settings, &temps).await
                }
            };
            cloud::run_then_clean_up(&ctx, &temps, run, |t, failed| {
                cleanup(&os, t, ctx.run_id, failed, &ctx.events)
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
            let os = api::connect(&settings_for(at, artifact)).await?;
            Ok(os.image(&artifact.id).await?.is_some_and(|i| {
                !matches!(
                    image_property(&i, "status"),
                    Some("killed" | "deleted" | "pending_delete")
                )
            }))
        })
    }

    fn destroy<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<(), BuildError>> {
        Box::pin(async move {
            let os = api::connect(&settings_for(at, artifact)).await?;
            os.delete_image(&artifact.id).await
        })
    }

    fn adopt<'a>(
        &'a self,
        spec: &'a ImageSpec,
        content_address: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Artifact>, BuildError>> {
        Box::pin(async move {
            let settings = settings_from_spec(spec);
            let os = api::connect(&settings).await?;
            let Some(image) = os.image(id).await? else {
                return Ok(None);
            };
            if image_property(&image, PROP_CONTENT) != Some(content_address)
                || image_property(&image, PROP_ADDRESS) != Some(spec.addr.to_string().as_str())
                || image_property(&image, "status") != Some("active")
            {
                return Ok(None);
            }
            let mut attributes = base_attributes(&os, &settings, spec);
            if let Some(name) = image_property(&image, "name") {
                attributes.insert("name".to_owned(), json!(name));
            }
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
            let os = api::connect(&settings_from_spec(spec)).await?;
            let images = os
                .images(&[
                    ("tag".to_owned(), TAG.to_owned()),
                    (PROP_ADDRESS.to_owned(), spec.addr.to_string()),
                ])
                .await?;
            let mut ids: Vec<String> = images
                .iter()
                .filter(|i| {
                    matches!(
                        image_property(i, "status"),
                        Some("active" | "queued" | "saving" | "importing")
                    )
                })
                .filter(|i| image_property(i, PROP_ADDRESS) == Some(spec.addr.to_string().as_str()))
                .filter_map(|i| image_property(i, "id").map(str::to_owned))
                .collect();
            ids.sort();
            Ok(ids)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefers_floating_then_access_then_fixed() {
        let server = json!({
            "accessIPv4": "",
            "addresses": {"private": [
                {"addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed"},
                {"addr": "203.0.113.7", "OS-EXT-IPS:type": "floating"}
            ]}
        });
        assert_eq!(server_host(&server).as_deref(), Some("203.0.113.7"));
        let server =
            json!({"accessIPv4": "192.0.2.1", "addresses": {"private": [{"addr": "10.0.0.5"}]}});
        assert_eq!(server_host(&server).as_deref(), Some("192.0.2.1"));
        let server = json!({"addresses": {"private": [{"addr": "10.0.0.5"}]}});
        assert_eq!(server_host(&server).as_deref(), Some("10.0.0.5"));
        assert_eq!(server_host(&json!({})), None);
    }

    #[test]
    fn filters_are_checked_on_properties_and_tags() {
        let image =
            json!({"id": "a", "os_distro": "ubuntu", "tags": ["lts", "x"], "visibility": "public"});
        let f = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(matches_filters(
            &image,
            &f(&[
                ("os_distro", "ubuntu"),
                ("tag", "lts"),
                ("visibility", "public")
            ])
        ));
        assert!(!matches_filters(&image, &f(&[("os_distro", "debian")])));
        assert!(!matches_filters(&image, &f(&[("tag", "edge")])));
        assert!(!matches_filters(&image, &f(&[("hw_disk_bus", "scsi")])));
    }

    #[test]
    fn selection_needs_most_recent_for_several_matches() {
        let filter = |most_recent| ImageFilter {
            filters: vec![("name".into(), "base".into())],
            most_recent,
        };
        let images = vec![json!({"id": "new"}), json!({"id": "old"})];
        assert_eq!(select_image(&images, &filter(true)).unwrap(), "new");
        let err = select_image(&images, &filter(false)).unwrap_err();
        assert!(err.contains("2 images match name=base"), "{err}");
        assert!(select_image(&[], &filter(true))
            .unwrap_err()
            .contains("no active image matches name=base"));
    }
}
