//! The EC2 client of the `amazon-ebs` builder: where and as whom to call EC2
//! ([`ClientSettings`], from the source or from a recorded artifact), one
//! client per settings per process ([`connect`]), and SDK errors as one line
//! ([`aws_error`]).
//!
//! Callers must not build an `aws_sdk_ec2::Client` themselves: every call
//! goes through an [`Ec2`] from [`connect`], which carries its region and
//! settings (for copies to other regions, and for what an artifact records
//! with [`where_attributes`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::Client;
use serde_json::{json, Value};

use crate::aws;
use crate::build::BuildError;
use crate::drivers::cloud::failed;
use crate::drivers::kind::Recorded;
use crate::spec::ImageSpec;
use crate::state::Artifact;

/// An SDK error as one line, with the service's code and message.
pub(super) fn aws_error<E, R>(what: &str, err: SdkError<E, R>) -> BuildError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let detail = match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("(no message)")
        ),
        None => {
            // Dispatch and credential failures: the chain of causes, without
            // the SDK's debug dump.
            let mut parts: Vec<String> = Vec::new();
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
            while let Some(e) = source {
                let text = e.to_string();
                if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
                    parts.push(text);
                }
                source = e.source();
            }
            let detail = parts.join(": ");
            if detail.contains("loading credentials") || detail.contains("credentials") {
                return failed(format!("{what}: {detail}")).with_hint("imgform uses the standard AWS credential chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, instance roles); set one, or profile / access_key in the source");
            }
            detail
        }
    };
    failed(format!("{what}: {detail}"))
}

pub(super) fn error_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// Where and as whom to call EC2.
#[derive(Debug, Clone, Default)]
pub(super) struct ClientSettings {
    region: Option<String>,
    profile: Option<String>,
    pub(super) endpoint: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    token: Option<String>,
    max_retries: Option<u32>,
}

impl ClientSettings {
    pub(super) fn from_spec(spec: &ImageSpec) -> ClientSettings {
        let get = |k: &str| {
            spec.attr_str(k)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        ClientSettings {
            region: get("region"),
            profile: get("profile"),
            endpoint: get("custom_endpoint_ec2"),
            access_key: get("access_key"),
            secret_key: get("secret_key"),
            token: get("token"),
            max_retries: aws::max_retries(spec.attr("max_retries")),
        }
    }

    /// For a recorded artifact: the source's settings while the image is
    /// still defined (its credentials: the state holds none), with the
    /// region, endpoint and profile recorded with the artifact on top (that
    /// is where it is).
    pub(super) fn for_artifact(at: Recorded<'_>, artifact: &Artifact) -> ClientSettings {
        let get = |k: &str| {
            artifact
                .attributes
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let base = at.spec.map(ClientSettings::from_spec).unwrap_or_default();
        ClientSettings {
            region: get("region").or(base.region.clone()),
            profile: get("profile").or(base.profile.clone()),
            endpoint: get("endpoint").or(base.endpoint.clone()),
            ..base
        }
    }

    pub(super) fn in_region(&self, region: &str) -> ClientSettings {
        ClientSettings {
            region: Some(region.to_owned()),
            ..self.clone()
        }
    }
}

#[derive(Clone)]
pub(super) struct Ec2 {
    pub(super) client: Client,
    pub(super) region: String,
    pub(super) settings: ClientSettings,
    /// The endpoint in use when not AWS's own (`custom_endpoint_ec2`, or
    /// `AWS_ENDPOINT_URL` from the chain).
    pub(super) endpoint_url: Option<String>,
}

/// An EC2 client for `settings`, made once per process: loading the AWS
/// configuration and credentials costs more than a call, and one client
/// keeps its connections open for the next (refresh asks about every
/// recorded AMI).
pub(super) async fn connect(settings: &ClientSettings) -> Ec2 {
    static CLIENTS: std::sync::LazyLock<Mutex<BTreeMap<String, Ec2>>> =
        std::sync::LazyLock::new(Mutex::default);
    let key = format!("{settings:?}");
    if let Some(ec2) = CLIENTS.lock().expect("clients lock").get(&key) {
        return ec2.clone();
    }
    let ec2 = new_client(settings).await;
    CLIENTS
        .lock()
        .expect("clients lock")
        .entry(key)
        .or_insert(ec2)
        .clone()
}

async fn new_client(settings: &ClientSettings) -> Ec2 {
    let credentials = match (&settings.access_key, &settings.secret_key) {
        (Some(key), Some(secret)) => Some(aws::StaticCredentials {
            access_key: key.clone(),
            secret_key: secret.clone(),
            token: settings.token.clone(),
        }),
        _ => None,
    };
    let shared = aws::load(&aws::AwsSettings {
        region: settings.region.clone(),
        profile: settings.profile.clone(),
        credentials,
        max_retries: settings.max_retries,
    })
    .await;
    let mut config = aws_sdk_ec2::config::Builder::from(&shared);
    let region = aws::region_or_default(&shared);
    config = config.region(aws_config::Region::new(region.clone()));
    if let Some(endpoint) = &settings.endpoint {
        config = config.endpoint_url(endpoint);
    }
    Ec2 {
        client: Client::from_conf(config.build()),
        region,
        settings: settings.clone(),
        endpoint_url: settings
            .endpoint
            .clone()
            .or_else(|| shared.endpoint_url().map(str::to_owned)),
    }
}

/// The artifact attributes that say where an AMI is and how it was reached
/// (region, and a custom endpoint and profile — never credentials): what
/// [`ClientSettings::for_artifact`] reads back.
pub(super) fn where_attributes(ec2: &Ec2) -> BTreeMap<String, Value> {
    let mut attributes = BTreeMap::new();
    attributes.insert("region".to_owned(), json!(ec2.region));
    if let Some(endpoint) = &ec2.settings.endpoint {
        attributes.insert("endpoint".to_owned(), json!(endpoint));
    }
    if let Some(profile) = &ec2.settings.profile {
        attributes.insert("profile".to_owned(), json!(profile));
    }
    attributes
}
