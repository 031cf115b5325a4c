//! The OpenStack calls of the `openstack` builder: one authenticated
//! session (osauth, the session rust-openstack is built on) shared by the
//! crate's typed calls and the raw ones below.
//!
//! rust-openstack 0.6 covers key pairs, flavors and networks; it has no
//! Glance writes (create, upload, tag, patch, delete), cannot pass
//! `security_groups` to a new server, and discards the image id that
//! `createImage` returns from compute microversion 2.45 on. Those calls are
//! made here, through the same session (same token, catalog and endpoint
//! discovery), and nowhere else.
//!
//! Callers must not build a second HTTP client: every request goes through
//! [`Api::session`].

use std::path::Path;
use std::time::Duration;

use osauth::services::{COMPUTE, IMAGE};
use osauth::{ApiVersion, CloudConfig, ErrorKind, Session};
use serde_json::{json, Value};

use crate::build::BuildError;
use crate::drivers::cloud::failed;

/// Where and as whom to call OpenStack: the source's attributes on top of
/// `clouds.yaml` (`cloud`, or `OS_CLOUD`) or the `OS_*` variables.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub cloud: Option<String>,
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub application_credential_id: Option<String>,
    pub application_credential_name: Option<String>,
    pub application_credential_secret: Option<String>,
    pub user_domain_name: Option<String>,
    pub project_name: Option<String>,
    pub project_id: Option<String>,
    pub project_domain_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub region: Option<String>,
    pub cacert: Option<String>,
    pub interface: Option<String>,
}

impl Settings {
    /// The non-secret parts, for a recorded artifact (refresh and destroy
    /// take credentials from `clouds.yaml` or the environment again).
    pub fn public_attributes(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (key, value) in [
            ("cloud", &self.cloud),
            ("auth_url", &self.auth_url),
            ("region", &self.region),
        ] {
            if let Some(v) = value {
                out.push((key, v.clone()));
            }
        }
        out
    }

    /// The `clouds.yaml` entry (or `OS_*` variables) these settings start
    /// from, with the explicit attributes on top.
    fn cloud_config(&self) -> Result<CloudConfig, String> {
        let cloud = self
            .cloud
            .clone()
            .or_else(|| std::env::var("OS_CLOUD").ok().filter(|c| !c.is_empty()));
        let base = match &cloud {
            Some(name) => match std::env::var_os("OS_CLIENT_CONFIG_FILE") {
                Some(file) if !file.is_empty() => cloud_from_file(Path::new(&file), name)?,
                _ => CloudConfig::from_config(name)
                    .map_err(|e| format!("reading cloud \"{name}\" from clouds.yaml: {e}"))?,
            },
            None if std::env::var_os("OS_AUTH_URL").is_some() => {
                CloudConfig::from_env().map_err(|e| format!("reading the OS_* variables: {e}"))?
            }
            None => CloudConfig::default(),
        };
        let mut config = serde_json::to_value(&base).map_err(|e| e.to_string())?;
        if !config.is_object() {
            config = json!({});
        }
        if !config.get("auth").is_some_and(Value::is_object) {
            config["auth"] = json!({});
        }
        let auth_fields = [
            ("auth_url", &self.auth_url),
            ("username", &self.username),
            ("user_id", &self.user_id),
            ("password", &self.password),
            ("token", &self.token),
            ("application_credential_id", &self.application_credential_id),
            (
                "application_credential_name",
                &self.application_credential_name,
            ),
            (
                "application_credential_secret",
                &self.application_credential_secret,
            ),
            ("user_domain_name", &self.user_domain_name),
            ("project_name", &self.project_name),
            ("project_id", &self.project_id),
            ("project_domain_name", &self.project_domain_name),
            ("project_domain_id", &self.project_domain_id),
        ];
        for (key, value) in auth_fields {
            if let Some(v) = value {
                config["auth"][key] = json!(v);
            }
        }
        if self.application_credential_secret.is_some() {
            config["auth_type"] = json!("v3applicationcredential");
        } else if self.token.is_some() && self.password.is_none() {
            config["auth_type"] = json!("v3token");
        }
        if let Some(region) = &self.region {
            config["region_name"] = json!(region);
        }
        if let Some(cacert) = &self.cacert {
            config["cacert"] = json!(cacert);
        }
        if let Some(interface) = &self.interface {
            config["interface"] = json!(interface);
        }
        serde_json::from_value(config).map_err(|e| format!("the OpenStack settings: {e}"))
    }
}

/// The entry `name` of the clouds.yaml at `file` (`OS_CLIENT_CONFIG_FILE`,
/// which osauth does not read: it looks in `.`, `~/.config/openstack` and
/// `/etc/openstack`).
fn cloud_from_file(file: &Path, name: &str) -> Result<CloudConfig, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("reading OS_CLIENT_CONFIG_FILE {}: {e}", file.display()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{} is not YAML: {e}", file.display()))?;
    let entry = doc
        .get("clouds")
        .and_then(|c| c.get(name))
        .ok_or_else(|| format!("{} has no cloud \"{name}\"", file.display()))?;
    serde_yaml::from_value(entry.clone())
        .map_err(|e| format!("cloud \"{name}\" in {}: {e}", file.display()))
}

/// An authenticated session and rust-openstack's view of it.
pub struct Api {
    pub session: Session,
    pub cloud: openstack::Cloud,
    /// The identity endpoint in use, for the artifact's attributes.
    pub auth_url: Option<String>,
}

/// An osauth/rust-openstack error as one line, with what was being done.
pub fn os_error(what: &str, err: &osauth::Error) -> BuildError {
    let error = failed(format!("{what}: {err}"));
    if matches!(
        err.kind(),
        ErrorKind::AuthenticationFailed | ErrorKind::InvalidConfig
    ) {
        return error.with_hint("imgform reads credentials from the source (identity_endpoint, username, password, project_name, ...), from clouds.yaml (cloud = \"NAME\" or OS_CLOUD; OS_CLIENT_CONFIG_FILE names the file) and from the OS_* variables");
    }
    error
}

fn not_found(err: &osauth::Error) -> bool {
    err.kind() == ErrorKind::ResourceNotFound
}

/// Opens a session (authenticates and reads the catalog).
pub async fn connect(settings: &Settings) -> Result<Api, BuildError> {
    let config = settings.cloud_config().map_err(|e| {
        failed(e).with_hint(
            "set cloud = \"NAME\" (clouds.yaml), the OS_* variables, or identity_endpoint/username/password/project_name on the source",
        )
    })?;
    let auth_url = serde_json::to_value(&config).ok().and_then(|v| {
        v.pointer("/auth/auth_url")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let session = config
        .create_session()
        .await
        .map_err(|e| os_error("authenticating to OpenStack", &e))?;
    Ok(Api {
        cloud: openstack::Cloud::from(session.clone()),
        session,
        auth_url,
    })
}

impl Api {
    // ---- compute (Nova) ----------------------------------------------

    /// Imports a public key as a key pair.
    pub async fn create_keypair(&self, name: &str, public_key: &str) -> Result<(), BuildError> {
        self.cloud
            .new_keypair(name)
            .with_public_key(public_key)
            .create()
            .await
            .map_err(|e| os_error(&format!("importing key pair {name}"), &e))?;
        Ok(())
    }

    pub async fn delete_keypair(&self, name: &str) -> Result<(), BuildError> {
        match self.cloud.get_keypair(name).await {
            Ok(keypair) => keypair
                .delete()
                .await
                .map_err(|e| os_error(&format!("deleting key pair {name}"), &e)),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(os_error(&format!("finding key pair {name}"), &e)),
        }
    }

    /// A flavor's id from its name or id.
    pub async fn flavor_id(&self, name_or_id: &str) -> Result<String, BuildError> {
        self.cloud
            .get_flavor(name_or_id)
            .await
            .map(|f| f.id().clone())
            .map_err(|e| os_error(&format!("finding flavor \"{name_or_id}\""), &e))
    }

    /// A network's id from its name or id.
    pub async fn network_id(&self, name_or_id: &str) -> Result<String, BuildError> {
        self.cloud
            .get_network(name_or_id)
            .await
            .map(|n| n.id().clone())
            .map_err(|e| os_error(&format!("finding network \"{name_or_id}\""), &e))
    }

    /// Creates a server from a `{"server": {...}}` body; returns its id.
    pub async fn create_server(&self, body: &Value) -> Result<String, BuildError> {
        let created: Value = self
            .session
            .post(COMPUTE, ["servers"])
            .json(body)
            .fetch()
            .await
            .map_err(|e| os_error("creating the build server", &e))?;
        created
            .pointer("/server/id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| failed("creating the build server: no server id in the answer"))
    }

    /// A server's details, `None` once it is gone.
    pub async fn server(&self, id: &str) -> Result<Option<Value>, BuildError> {
        match self
            .session
            .get(COMPUTE, ["servers", id])
            .fetch::<Value>()
            .await
        {
            Ok(v) => Ok(v.get("server").cloned()),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(os_error(&format!("reading server {id}"), &e)),
        }
    }

    /// Servers whose name is exactly `name` (Nova filters by regex).
    pub async fn servers_named(&self, name: &str) -> Result<Vec<Value>, BuildError> {
        let pattern = format!("^{}$", regex::escape(name));
        let found: Value = self
            .session
            .get(COMPUTE, ["servers", "detail"])
            .query(&[("name", pattern.as_str())])
            .fetch()
            .await
            .map_err(|e| os_error(&format!("listing servers named {name}"), &e))?;
        Ok(found
            .get("servers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    pub async fn server_action(&self, id: &str, action: &Value) -> Result<(), BuildError> {
        self.session
            .post(COMPUTE, ["servers", id, "action"])
            .json(action)
            .send()
            .await
            .map_err(|e| os_error(&format!("server {id}: {action}"), &e))?;
        Ok(())
    }

    pub async fn delete_server(&self, id: &str) -> Result<(), BuildError> {
        match self.session.delete(COMPUTE, ["servers", id]).send().await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(os_error(&format!("deleting server {id}"), &e)),
        }
    }

    /// `createImage` at microversion 2.45, which answers with the new
    /// image's id (rust-openstack drops it).
    pub async fn create_server_image(
        &self,
        server: &str,
        name: &str,
        metadata: &serde_json::Map<String, Value>,
    ) -> Result<String, BuildError> {
        let answer: Value = self
            .session
            .post(COMPUTE, ["servers", server, "action"])
            .api_version(ApiVersion(2, 45))
            .json(&json!({"createImage": {"name": name, "metadata": metadata}}))
            .fetch()
            .await
            .map_err(|e| os_error(&format!("creating an image from server {server}"), &e))?;
        answer
            .get("image_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| failed("createImage answered without an image_id"))
    }

    // ---- image (Glance v2) -------------------------------------------

    /// An image's record, `None` when it does not exist (or is deleted).
    pub async fn image(&self, id: &str) -> Result<Option<Value>, BuildError> {
        match self
            .session
            .get(IMAGE, ["images", id])
            .fetch::<Value>()
            .await
        {
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("deleted") => Ok(None),
            Ok(v) => Ok(Some(v)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(os_error(&format!("reading image {id}"), &e)),
        }
    }

    /// Every image matching Glance's list filters (`name`, `tag`,
    /// `visibility`, `status`, any property), newest first, all pages.
    pub async fn images(&self, filters: &[(String, String)]) -> Result<Vec<Value>, BuildError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut query: Vec<(String, String)> = filters.to_vec();
            query.push(("sort_key".into(), "created_at".into()));
            query.push(("sort_dir".into(), "desc".into()));
            query.push(("limit".into(), "100".into()));
            if let Some(m) = &marker {
                query.push(("marker".into(), m.clone()));
            }
            let page: Value = self
                .session
                .get(IMAGE, ["images"])
                .query(&query)
                .fetch()
                .await
                .map_err(|e| os_error("listing images", &e))?;
            let images = page
                .get("images")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let last = images
                .last()
                .and_then(|i| i.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.extend(images);
            match (page.get("next"), last) {
                (Some(Value::String(_)), Some(last)) => marker = Some(last),
                _ => return Ok(out),
            }
        }
    }

    /// Creates an image record (no data yet); returns it.
    pub async fn create_image(&self, body: &Value) -> Result<Value, BuildError> {
        self.session
            .post(IMAGE, ["images"])
            .json(body)
            .fetch()
            .await
            .map_err(|e| os_error("creating the image in Glance", &e))
    }

    /// Uploads an image's data from a file, streamed (chunked transfer:
    /// images are often larger than memory should hold).
    pub async fn upload_image(&self, id: &str, path: &Path) -> Result<(), BuildError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| failed(format!("opening {}: {e}", path.display())))?;
        self.session
            .put(IMAGE, ["images", id, "file"])
            .header("Content-Type", "application/octet-stream")
            .body(file)
            .timeout(Duration::from_secs(6 * 3600))
            .send()
            .await
            .map_err(|e| os_error(&format!("uploading {} to image {id}", path.display()), &e))?;
        Ok(())
    }

    pub async fn add_image_tag(&self, id: &str, tag: &str) -> Result<(), BuildError> {
        self.session
            .put(IMAGE, ["images", id, "tags", tag])
            .send()
            .await
            .map_err(|e| os_error(&format!("tagging image {id} with \"{tag}\""), &e))?;
        Ok(())
    }

    /// Applies a JSON Patch (Glance's `openstack-images-v2.1-json-patch`).
    pub async fn patch_image(&self, id: &str, ops: &Value) -> Result<(), BuildError> {
        let body = serde_json::to_vec(ops).map_err(|e| failed(e.to_string()))?;
        self.session
            // The method type is reqwest's, which imgform does not name:
            // inferred from `request`'s signature.
            .request(
                IMAGE,
                "PATCH".parse().expect("PATCH is a method"),
                ["images", id],
            )
            .header(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| os_error(&format!("updating image {id}"), &e))?;
        Ok(())
    }

    pub async fn delete_image(&self, id: &str) -> Result<(), BuildError> {
        match self.session.delete(IMAGE, ["images", id]).send().await {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(os_error(&format!("deleting image {id}"), &e)),
        }
    }
}
