//! What the three `amazon-*` data sources share: Packer's AWS access
//! attributes, and the SDK configuration they make.
//!
//! The region is an input (another region answers another thing); how to
//! get there and as whom are settings, credentials secrets. Anything not
//! set comes from the standard AWS chain, `AWS_ENDPOINT_URL` included.

use crate::drivers::amazon_ebs::{CREDENTIALS, NO_REGION_CHECK, NO_TLS_SKIP, SHARED_FILE};
use crate::schema::{block, input, secret, setting, AttrSpec, BlockSpec, Role};

/// Packer's AWS access attributes every `amazon-*` data source takes;
/// `custom_endpoint_ec2` only where there is an EC2 call (`amazon-ami`).
pub(super) const ACCESS: &[AttrSpec] = &[
    input("region").string(),
    setting("profile"),
    secret("access_key"),
    secret("secret_key"),
    secret("token"),
    setting("max_retries"),
    secret("mfa_code").ignored(CREDENTIALS),
    setting("shared_credentials_file").ignored(SHARED_FILE),
    setting("decode_authorization_messages").ignored(CREDENTIALS),
    setting("insecure_skip_tls_verify").ignored(NO_TLS_SKIP),
    setting("skip_metadata_api_check").ignored(CREDENTIALS),
    setting("skip_credential_validation").ignored(CREDENTIALS),
    setting("skip_region_validation").ignored(NO_REGION_CHECK),
];

/// `custom_endpoint_ec2` where Packer has no EC2 call to send it to: as
/// in Packer, it changes nothing (the endpoint of SSM or Secrets Manager
/// comes from `AWS_ENDPOINT_URL_SSM`, `AWS_ENDPOINT_URL_SECRETS_MANAGER` or
/// `AWS_ENDPOINT_URL`).
pub(super) const NO_EC2_ENDPOINT: AttrSpec = setting("custom_endpoint_ec2").ignored(
    "this data source calls no EC2 endpoint; set AWS_ENDPOINT_URL_<SERVICE> or AWS_ENDPOINT_URL",
);

pub(super) const ACCESS_BLOCKS: &[BlockSpec] = &[
    block("assume_role", Role::Setting).ignored(CREDENTIALS),
    block("aws_polling", Role::Setting)
        .ignored("a data source makes one request: there is nothing to poll"),
    block("vault_aws_engine", Role::Setting).ignored(CREDENTIALS),
];

/// The shared SDK configuration for a data block's access attributes.
#[cfg(feature = "aws")]
pub(super) async fn shared_config(config: &crate::spec::Attrs) -> aws_config::SdkConfig {
    use super::config_str;
    let get = |k: &str| config_str(config, k).map(str::to_owned);
    let credentials = match (get("access_key"), get("secret_key")) {
        (Some(access_key), Some(secret_key)) => Some(crate::aws::StaticCredentials {
            access_key,
            secret_key,
            token: get("token"),
        }),
        _ => None,
    };
    crate::aws::load(&crate::aws::AwsSettings {
        region: get("region"),
        profile: get("profile"),
        credentials,
        max_retries: crate::aws::max_retries(config.get("max_retries")),
    })
    .await
}

/// An SDK error as one line: the service's code and message, or the chain
/// of causes (dispatch, credentials).
#[cfg(feature = "aws")]
pub(super) fn sdk_error<E, R>(what: &str, err: aws_sdk_ec2::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(service) = err.as_service_error() {
        return format!(
            "{what}: {}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("(no message)")
        );
    }
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    format!("{what}: {}", parts.join(": "))
}

/// The answer when imgform was built without the AWS SDK.
#[cfg(not(feature = "aws"))]
pub(super) fn missing() -> String {
    "this imgform was built without AWS support (cargo feature `aws`); build it with the default features".to_owned()
}
