//! `data "amazon-parameterstore"`: one SSM parameter, as AWS's ECS/EKS AMI
//! templates read the recommended base AMI. Attributes: `name`,
//! `with_decryption`, and the AWS access attributes. Outputs: `value`,
//! `version`, `arn`. A `SecureString` parameter's value is secret (kept
//! out of state, plans and logs; a keyed digest of it enters content
//! addresses); any other value enters them as it is.

#[cfg(feature = "aws")]
use serde_json::Value;

use super::aws_access::{ACCESS, ACCESS_BLOCKS, NO_EC2_ENDPOINT};
use super::{out, DataKind, OutTy, Request, Resolved};
use crate::build::BoxFuture;
use crate::schema::{input, Schema};

pub static KIND: DataKind = DataKind {
    schema: Schema {
        kind: "amazon-parameterstore",
        attrs: &[
            &[
                input("name").string(),
                input("with_decryption"),
                NO_EC2_ENDPOINT,
            ],
            ACCESS,
        ],
        blocks: ACCESS_BLOCKS,
    },
    outputs: &[
        out("value", OutTy::String),
        out("version", OutTy::String),
        out("arn", OutTy::String),
    ],
    resolve,
    summary: |outputs| {
        serde_json::json!({
            "value": super::output(outputs, "value"),
            "version": super::output(outputs, "version"),
        })
    },
};

#[cfg(not(feature = "aws"))]
fn resolve(_request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    Box::pin(async { Err(super::aws_access::missing()) })
}

#[cfg(feature = "aws")]
fn resolve(request: Request<'_>) -> BoxFuture<'_, Result<Resolved, String>> {
    use aws_sdk_ssm::types::ParameterType;

    use super::aws_access::{sdk_error, shared_config};
    use super::{config_bool, config_str, Outputs};

    Box::pin(async move {
        let config = request.config;
        let name = config_str(config, "name").ok_or("`name` is required")?;
        let shared = shared_config(config).await;
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&shared)
                .region(aws_config::Region::new(crate::aws::region_or_default(
                    &shared,
                )))
                .build(),
        );
        let answer = ssm
            .get_parameter()
            .name(name)
            .with_decryption(config_bool(config, "with_decryption").unwrap_or(false))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("GetParameter {name}"), e))?;
        let parameter = answer
            .parameter()
            .ok_or_else(|| format!("GetParameter {name}: no parameter in the answer"))?;
        let mut outputs = Outputs::new();
        let s = |v: Option<&str>| Value::String(v.unwrap_or_default().to_owned());
        outputs.insert("value".into(), s(parameter.value()));
        outputs.insert(
            "version".into(),
            Value::String(parameter.version().to_string()),
        );
        outputs.insert("arn".into(), s(parameter.arn()));
        let secure = parameter.r#type() == Some(&ParameterType::SecureString);
        Ok(Resolved {
            outputs,
            sensitive: if secure {
                ["value".to_owned()].into()
            } else {
                Default::default()
            },
        })
    })
}
