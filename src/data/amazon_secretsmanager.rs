//! `data "amazon-secretsmanager"`: one secret from AWS Secrets Manager.
//! Attributes: `name` (name or ARN), `key` (a key of a JSON secret),
//! `version_id`, `version_stage` (default `AWSCURRENT`), and the AWS access
//! attributes. Outputs: `value` (the key's value, or the whole string),
//! `secret_string`, `secret_binary` (base64), `version_id`. Always secret:
//! kept out of state, plans and logs; a keyed digest enters content
//! addresses.

#[cfg(any(feature = "aws", test))]
use serde_json::Value;

use super::aws_access::{ACCESS, ACCESS_BLOCKS, NO_EC2_ENDPOINT};
use super::{out, DataKind, OutTy, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "amazon-secretsmanager",
        attrs: &[
            &[
                input("name").string(),
                input("key").string(),
                input("version_id").string(),
                input("version_stage").string(),
                NO_EC2_ENDPOINT,
            ],
            ACCESS,
        ],
        blocks: ACCESS_BLOCKS,
    },
    outputs: &[
        out("value", OutTy::String),
        out("secret_string", OutTy::String),
        out("secret_binary", OutTy::String),
        out("version_id", OutTy::String),
    ],
    resolve,
    summary: |outputs| {
        serde_json::json!({
            "value": super::output(outputs, "value"),
            "secret_string": super::output(outputs, "secret_string"),
        })
    },
};

/// The value of `key` in a JSON secret (strings as they are, other values
/// as JSON text).
#[cfg(any(feature = "aws", test))]
fn key_value(secret: &str, key: &str) -> Result<String, String> {
    let doc: serde_json::Map<String, Value> = serde_json::from_str(secret)
        .map_err(|_| format!("`key = \"{key}\"` needs a secret holding a JSON object"))?;
    match doc.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(format!("the secret has no key `{key}`")),
    }
}

#[cfg(not(feature = "aws"))]
fn resolve(_request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async { Err(super::aws_access::missing()) })
}

#[cfg(feature = "aws")]
fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    use base64::Engine;

    use super::aws_access::{sdk_error, shared_config};
    use super::{config_str, Outputs};

    Box::pin(async move {
        let config = request.config;
        let name = config_str(config, "name").ok_or("`name` is required")?;
        let shared = shared_config(config).await;
        let client = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&shared)
                .region(aws_config::Region::new(crate::aws::region_or_default(
                    &shared,
                )))
                .build(),
        );
        let mut call = client.get_secret_value().secret_id(name);
        if let Some(id) = config_str(config, "version_id") {
            call = call.version_id(id);
        }
        if let Some(stage) = config_str(config, "version_stage") {
            call = call.version_stage(stage);
        }
        let answer = call
            .send()
            .await
            .map_err(|e| sdk_error(&format!("GetSecretValue {name}"), e))?;
        let string = answer.secret_string().unwrap_or_default().to_owned();
        let binary = answer
            .secret_binary()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
            .unwrap_or_default();
        let value = match config_str(config, "key") {
            Some(key) => key_value(&string, key)?,
            None => string.clone(),
        };
        let mut outputs = Outputs::new();
        outputs.insert("value".into(), Value::String(value));
        outputs.insert("secret_string".into(), Value::String(string));
        outputs.insert("secret_binary".into(), Value::String(binary));
        outputs.insert(
            "version_id".into(),
            Value::String(answer.version_id().unwrap_or_default().to_owned()),
        );
        Ok(Resolved {
            outputs,
            sensitive: ["value", "secret_string", "secret_binary"]
                .map(str::to_owned)
                .into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_json_secrets() {
        let secret = r#"{"user":"admin","port":5432}"#;
        assert_eq!(key_value(secret, "user").unwrap(), "admin");
        assert_eq!(key_value(secret, "port").unwrap(), "5432");
        assert!(key_value(secret, "nope")
            .unwrap_err()
            .contains("no key `nope`"));
        assert!(key_value("plain", "user").is_err());
    }
}
