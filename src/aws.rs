//! How imgform reaches AWS: the shared SDK configuration every AWS user
//! loads (the `amazon-ebs` builder, the S3 state backend, the `component`
//! provisioner's S3 actions), and the S3 client two of them share.
//!
//! Everything starts from the standard AWS chain (environment, shared config
//! and credentials files, SSO, web identity, ECS/EC2 metadata), with what
//! the caller sets on top. A service endpoint is set on the service's client,
//! never on the shared configuration, so that it wins over
//! `AWS_ENDPOINT_URL_<SERVICE>` as well as `AWS_ENDPOINT_URL`.
//!
//! This module sits below `state`, `provision` and `drivers` and knows none
//! of them. Callers must not build an SDK configuration of their own.

use aws_config::{Region, SdkConfig};

/// The region when neither the caller nor the chain names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// What a caller sets on top of the standard chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// A named profile from the shared AWS config files.
    pub profile: Option<String>,
    /// Static credentials instead of the chain's.
    pub credentials: Option<StaticCredentials>,
    /// How many times a throttled or failed request is retried (Packer's
    /// `max_retries`): the SDK's standard retries, with its exponential
    /// back-off, this many times after the first attempt.
    pub max_retries: Option<u32>,
}

/// An access key pair (and session token) given explicitly, e.g. a source's
/// `access_key` / `secret_key` / `token`.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// Loads the shared SDK configuration: the standard chain with `settings`
/// on top.
pub async fn load(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(keys) = &settings.credentials {
        // `aws_credential_types::Credentials`, as every SDK crate re-exports it.
        loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
            keys.access_key.clone(),
            keys.secret_key.clone(),
            keys.token.clone(),
            None,
            "imgform-source",
        ));
    }
    if let Some(retries) = settings.max_retries {
        loader = loader.retry_config(
            aws_config::retry::RetryConfig::standard().with_max_attempts(retries.saturating_add(1)),
        );
    }
    loader.load().await
}

/// Packer's `max_retries` as a count: a whole number, also written as a
/// string; anything else is left to the SDK's default.
pub fn max_retries(value: Option<&serde_json::Value>) -> Option<u32> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64().map(|n| n.min(u64::from(u32::MAX)) as u32),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The region of `shared`, else [`DEFAULT_REGION`].
pub fn region_or_default(shared: &SdkConfig) -> String {
    shared
        .region()
        .map(ToString::to_string)
        .unwrap_or_else(|| DEFAULT_REGION.to_owned())
}

/// An S3 client: [`load`]ed with `settings`, in [`region_or_default`], at
/// `endpoint` with path-style addressing when one is given (MinIO, moto and
/// most S3-compatible stores have no virtual-host buckets).
pub async fn s3_client(settings: &AwsSettings, endpoint: Option<&str>) -> aws_sdk_s3::Client {
    let shared = load(settings).await;
    let mut config =
        aws_sdk_s3::config::Builder::from(&shared).region(Region::new(region_or_default(&shared)));
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}
