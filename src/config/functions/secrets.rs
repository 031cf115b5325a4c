//! Packer's functions that read secrets from a service when variables are
//! evaluated: `aws_secretsmanager(name, key)` and
//! `aws_secretsmanager_raw(name)` (Packer 1.x's `{{aws_secretsmanager}}`
//! template functions too), allowed only in variable defaults, as in
//! Packer. They ask AWS Secrets Manager once per run and name/key (the
//! `amazon-secretsmanager` data source's code and credentials chain); a
//! variable whose default calls one is sensitive.
//!
//! `vault(path, key)` and `consul_key(key)` read HashiCorp Vault and Consul,
//! which imgform does not reach: an error that says what to use instead.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use hcl::eval::FuncArgs;

use super::args::{str_value, want_str};
use super::{with_frame, FnResult};

/// The functions that read a secret service (a variable default calling
/// one is sensitive).
pub const SECRET_FUNCTIONS: &[&str] = &["aws_secretsmanager", "aws_secretsmanager_raw"];

type Cache = BTreeMap<(String, Option<String>), Result<String, String>>;

static ANSWERS: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(BTreeMap::new()));

pub(super) fn fn_aws_secretsmanager(args: FuncArgs) -> FnResult {
    let name = want_str(&args[0], "name")?;
    let key = match args.get(1) {
        Some(k) => Some(want_str(k, "key")?).filter(|k| !k.is_empty()),
        None => None,
    };
    if args.len() > 2 {
        return Err("aws_secretsmanager takes a secret name and, optionally, a key".to_owned());
    }
    secret("aws_secretsmanager", name, key)
}

pub(super) fn fn_aws_secretsmanager_raw(args: FuncArgs) -> FnResult {
    let name = want_str(&args[0], "name")?;
    secret("aws_secretsmanager_raw", name, None)
}

pub(super) fn fn_vault(_args: FuncArgs) -> FnResult {
    Err(format!(
        "vault() reads HashiCorp Vault, which imgform does not reach; {}",
        unreachable_service("vault", "HashiCorp Vault", "vault kv get -field=KEY PATH")
    ))
}

pub(super) fn fn_consul_key(_args: FuncArgs) -> FnResult {
    Err(format!(
        "consul_key() reads Consul, which imgform does not reach; {}",
        unreachable_service("consul_key", "Consul", "consul kv get KEY")
    ))
}

/// What to use instead of `func`, which reads a service imgform does not
/// reach.
pub fn unreachable_service(func: &str, service: &str, command: &str) -> String {
    format!(
        "imgform does not reach {service}: read the value before running imgform and pass it as a \
         variable (PKR_VAR_name=\"$({command})\" or --var name=...), or keep it in AWS Secrets \
         Manager and use aws_secretsmanager instead of {func}"
    )
}

fn secret(func: &str, name: String, key: Option<String>) -> FnResult {
    crate::watch::untracked(|| format!("{func}: a secret looked up over the network"));
    let allowed = with_frame(func, |frame| frame.env.allow_env)?;
    if !allowed {
        return Err(format!(
            "{func}() can only be used in variable defaults, as in Packer; declare a variable with it as the default"
        ));
    }
    if name.is_empty() {
        return Err(format!("{func}() needs a secret name"));
    }
    let base_dir = with_frame(func, |frame| frame.env.base_dir.clone())?;
    let cache_key = (name.clone(), key.clone());
    let cached = ANSWERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&cache_key)
        .cloned();
    let answer = match cached {
        Some(answer) => answer,
        None => {
            let answer = ask(&name, key.as_deref(), &base_dir);
            ANSWERS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(cache_key, answer.clone());
            answer
        }
    };
    let value = answer.map_err(|e| format!("{func}(\"{name}\"): {e}"))?;
    let value = str_value(&value);
    super::sensitivity::mark_value(&value);
    Ok(value)
}

/// Asks Secrets Manager on a thread of its own (evaluation is synchronous
/// and may run inside the runtime of a command).
fn ask(name: &str, key: Option<&str>, base_dir: &std::path::Path) -> Result<String, String> {
    let mut config = crate::spec::Attrs::new();
    config.insert(
        "name".to_owned(),
        serde_json::Value::String(name.to_owned()),
    );
    if let Some(key) = key {
        config.insert("key".to_owned(), serde_json::Value::String(key.to_owned()));
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))?;
                let request = crate::data::Request {
                    address: "aws_secretsmanager",
                    name,
                    config: &config,
                    def_dir: base_dir,
                    keep_dir: base_dir,
                };
                let resolved = runtime
                    .block_on((crate::data::amazon_secretsmanager::KIND.resolve)(request))?;
                Ok(resolved
                    .outputs
                    .get("value")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned())
            })
            .join()
            .unwrap_or_else(|_| Err("the Secrets Manager request panicked".to_owned()))
    })
}
