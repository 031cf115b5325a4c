//! What a builder kind is: its description ([`BuilderKind`]) and its
//! implementation (the [`Builder`] trait).
//!
//! A description is plain data and functions of the evaluated spec, always
//! compiled in, so a template loads, validates and plans even when its
//! builder's implementation is left out of this build of imgform (cargo
//! features). Everything the rest of imgform knows about a builder kind comes
//! from here: nothing outside the kind's own module matches on its name.

use std::path::Path;

use serde_json::Value;

use crate::addr::TargetAddr;
use crate::build::{BoxFuture, BuildContext, BuildError};
use crate::diag::Diagnostic;
use crate::schema::{self, setting, AttrSpec, FileRef, Schema};
use crate::spec::{Attrs, ImageSpec};
use crate::state::{Artifact, ArtifactChange};

/// One builder kind, as the registry ([`super::KINDS`]) lists it.
pub struct BuilderKind {
    /// Name, attributes (role, type, files read) and nested blocks.
    pub schema: Schema,
    /// Where images of this kind live, from the source's settings.
    pub target: fn(&Attrs) -> TargetAddr,
    /// Plan-time checks of an evaluated image: what this kind needs, and
    /// warnings about settings it does not act on.
    pub validate: fn(&ImageSpec) -> Vec<Diagnostic>,
    /// The implementation, or `None` when it is left out of this build.
    pub builder: Option<&'static dyn Builder>,
    /// The cargo feature that compiles the implementation in, if any.
    pub feature: Option<&'static str>,
}

impl BuilderKind {
    pub fn name(&self) -> &'static str {
        self.schema.kind
    }

    /// The local files an image of this kind reads through its source
    /// attributes (their bytes are inputs): the attributes the schema marks.
    /// A location written as a URL counts when it is a `file://` one (Packer's
    /// `iso_url = "file:///…"`); a remote URL names no local file (its
    /// checksum, an input, stands for its bytes).
    pub fn files(&self, spec: &ImageSpec) -> Vec<FileRef> {
        schema::files_named_by(&self.schema, &spec.inputs)
            .into_iter()
            .filter_map(|f| {
                let path = crate::paths::local_path_of(&f.path)?.to_owned();
                Some(FileRef { path, ..f })
            })
            .collect()
    }

    /// The implementation, or why there is none.
    pub fn implementation(&self) -> Result<&'static dyn Builder, MissingBuilder> {
        self.builder.ok_or(MissingBuilder {
            kind: self.name(),
            feature: self.feature,
        })
    }
}

/// A builder kind whose implementation is not compiled in.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "this imgform was built without the `{kind}` builder{}",
    feature.map(|f| format!(" (cargo feature `{f}`); build it with the default features")).unwrap_or_default()
)]
pub struct MissingBuilder {
    pub kind: &'static str,
    pub feature: Option<&'static str>,
}

/// Where images of kinds that build on this machine live.
pub fn local_target(_settings: &Attrs) -> TargetAddr {
    TargetAddr::local()
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

/// How an image asks for its base image by a filter, for the resolve stage.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseQuery {
    /// The attribute or block that holds the filter (for messages).
    pub attr: &'static str,
    /// Equal for equal queries: the target and the filter.
    pub query: Value,
}

/// A builder's implementation. A builder never sees a plan: `apply` hands
/// it one evaluated [`ImageSpec`] (image references already replaced by real
/// artifact ids) and gets an [`Artifact`] back. Builders own their temporary
/// resources and must release them on success, failure and cancellation
/// alike.
pub trait Builder: Send + Sync {
    /// The **resolve** stage: when `spec` asks for its base image by a filter
    /// (`source_ami_filter`, `source_image_filter`), that query — `None`
    /// when the base is given by id or the builder has no base.
    fn base_query(&self, _spec: &ImageSpec) -> Option<BaseQuery> {
        None
    }
    /// Whether [`Builder::base_query`] can be `Some` for any spec: only then
    /// does `--refresh=false` read the state for recorded resolutions
    /// before planning.
    fn has_base_filter(&self) -> bool {
        false
    }
    /// Asks the cloud which image the filter of `spec` selects now.
    fn resolve_base<'a>(
        &'a self,
        _spec: &'a ImageSpec,
    ) -> BoxFuture<'a, Result<String, BuildError>> {
        Box::pin(async { Err(BuildError::failed("this builder has no base image filter")) })
    }
    fn build<'a>(&'a self, ctx: BuildContext<'a>) -> BoxFuture<'a, Result<Artifact, BuildError>>;
    /// Whether a recorded artifact still exists (refresh).
    fn exists<'a>(
        &'a self,
        at: Recorded<'a>,
        artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<bool, BuildError>>;
    /// Refresh, for a recorded artifact that exists: how its bytes differ
    /// from what its build recorded (a local image edited or damaged
    /// since), when the builder can tell; `None` otherwise.
    fn changed<'a>(
        &'a self,
        _at: Recorded<'a>,
        _artifact: &'a Artifact,
    ) -> BoxFuture<'a, Result<Option<ArtifactChange>, BuildError>> {
        Box::pin(async { Ok(None) })
    }
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

/// Communicator attributes shared by every builder that connects to a
/// machine. All settings: how to reach the machine does not change what is
/// built. `ssh_clear_authorized_keys` is the exception: it edits the image.
pub const COMMUNICATOR: &[AttrSpec] = &[
    setting("communicator"),
    setting("pause_before_connecting"),
    setting("ssh_host"),
    setting("ssh_port"),
    setting("ssh_username"),
    schema::secret("ssh_password"),
    setting("ssh_private_key_file"),
    setting("ssh_keypair_name"),
    setting("ssh_agent_auth"),
    setting("ssh_timeout"),
    setting("ssh_wait_timeout"),
    setting("ssh_handshake_attempts").ignored("imgform retries the connection until ssh_timeout"),
    setting("ssh_bastion_host"),
    setting("ssh_bastion_port"),
    setting("ssh_bastion_username"),
    schema::secret("ssh_bastion_password"),
    setting("ssh_bastion_private_key_file"),
    setting("ssh_bastion_agent_auth").ignored("imgform authenticates to the bastion with ssh_bastion_private_key_file or ssh_bastion_password"),
    setting("ssh_bastion_certificate_file")
        .ignored("imgform authenticates to the bastion with its key or password, not a certificate"),
    setting("ssh_bastion_interactive")
        .ignored("keyboard-interactive login to the bastion is not implemented: use a key or ssh_bastion_password"),
    setting("ssh_known_hosts_file"),
    setting("ssh_host_key_fingerprint"),
    setting("ssh_interface"),
    setting("ssh_ip_version")
        .ignored("imgform connects to the first address ssh_host resolves to; write an IPv4 or IPv6 address to pick one"),
    setting("ssh_keep_alive_interval").ignored("imgform keeps russh's default keep-alive and timeouts"),
    setting("ssh_read_write_timeout").ignored("imgform keeps russh's default keep-alive and timeouts"),
    setting("ssh_pty").ignored("commands run without a pseudo-terminal"),
    setting("ssh_file_transfer_method").ignored("imgform copies files over SFTP"),
    setting("ssh_disable_agent_forwarding").ignored("imgform never forwards an SSH agent"),
    setting("ssh_certificate_file").ignored("imgform authenticates with the private key itself, not an SSH certificate"),
    setting("ssh_proxy_host").ignored("SOCKS proxies are not implemented: use ssh_bastion_host"),
    setting("ssh_proxy_port").ignored("SOCKS proxies are not implemented: use ssh_bastion_host"),
    setting("ssh_proxy_username").ignored("SOCKS proxies are not implemented: use ssh_bastion_host"),
    schema::secret("ssh_proxy_password").ignored("SOCKS proxies are not implemented: use ssh_bastion_host"),
    setting("ssh_local_tunnels").ignored("SSH tunnels are not implemented"),
    setting("ssh_remote_tunnels").ignored("SSH tunnels are not implemented"),
    setting("ssh_ciphers").ignored("imgform negotiates russh's default algorithms"),
    setting("ssh_key_exchange_algorithms").ignored("imgform negotiates russh's default algorithms"),
    schema::input("ssh_clear_authorized_keys").ignored(
        "the temporary key stays in authorized_keys: remove it in a last shell provisioner",
    ),
    setting("temporary_key_pair_type"),
    setting("temporary_key_pair_bits").ignored("a temporary RSA key has its type's default size"),
    setting("temporary_key_pair_name"),
    setting("winrm_host").ignored("WinRM is not implemented: imgform connects over SSH"),
    setting("winrm_port").ignored("WinRM is not implemented: imgform connects over SSH"),
    setting("winrm_username").ignored("WinRM is not implemented: imgform connects over SSH"),
    schema::secret("winrm_password").ignored("WinRM is not implemented: imgform connects over SSH"),
    setting("winrm_timeout").ignored("WinRM is not implemented: imgform connects over SSH"),
    setting("winrm_use_ssl").ignored("WinRM is not implemented: imgform connects over SSH"),
    setting("winrm_insecure").ignored("WinRM is not implemented: imgform connects over SSH"),
    setting("winrm_use_ntlm").ignored("WinRM is not implemented: imgform connects over SSH"),
    setting("winrm_no_proxy").ignored("WinRM is not implemented: imgform connects over SSH"),
];

/// imgform's own per-source settings: retention and drift age.
pub const IMGFORM: &[AttrSpec] = &[setting("keep_previous"), setting("max_age")];

/// Where attribute `name` of `spec` was written (the source block if not).
pub fn loc_of(spec: &ImageSpec, name: &str) -> Option<crate::diag::SourceLoc> {
    Some(
        spec.attr_locs
            .get(name)
            .cloned()
            .unwrap_or_else(|| spec.loc.clone()),
    )
}
