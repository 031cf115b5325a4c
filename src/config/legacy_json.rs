//! Legacy JSON templates (Packer 1.x `packer.json`: `variables`,
//! `sensitive-variables`, `builders`, `provisioners`, `post-processors`),
//! read into the same block tree as HCL2, the way `packer hcl2_upgrade`
//! would write them:
//!
//! - each variable is a `variable` block whose default is the value;
//!   `{{env `X`}}` in it is `env("X")` (the only place Packer 1.x reads the
//!   environment);
//! - each builder is a `source "TYPE" "NAME"` block (NAME is its `name`,
//!   else its type), and one unnamed `build` uses them all, so images are
//!   addressed `TYPE.NAME` as Packer 1.x named its builds; a `name` using
//!   the template engine (`{{user `build_name`}}`) is rendered with the
//!   variables, as Packer 1.x did (an in-build source block renames it);
//! - provisioners and post-processors go into that build, `only`, `except`,
//!   `pause_before`, `max_retries`, `timeout` and `override` as they were;
//! - a setting the builder takes as a block (`launch_block_device_mappings`,
//!   `source_ami_filter`...) becomes blocks.
//!
//! Strings are text, never HCL templates: `${HOME}` in a 1.x template is
//! for the shell. Packer's template engine (`{{user `x`}}`, `{{timestamp}}`,
//! `{{template_dir}}`, ...) is rendered where Packer rendered it, when the
//! image's settings are evaluated ([`super::packer_template`]). Keys that
//! start with `_` (`_comment`) are ignored, as Packer 1.x ignored them.

use std::path::Path;

use serde_json::{Map, Value};

use super::parse::{RawAttr, RawBlock, RawFile};
use crate::diag::{Diagnostic, SourceLoc};

/// Whether a parsed JSON document is a legacy (Packer 1.x) template.
pub fn is_legacy(value: &Value) -> bool {
    value.get("builders").is_some()
}

/// The top-level keys a 1.x template may have.
const ROOT_KEYS: &[&str] = &[
    "variables",
    "sensitive-variables",
    "builders",
    "provisioners",
    "post-processors",
    "description",
    "min_packer_version",
];

/// Reads a legacy template into blocks.
pub fn parse_legacy(
    root: &Map<String, Value>,
    display: &Path,
    text: &str,
) -> Result<RawFile, Diagnostic> {
    let at = |key: &str| json_loc(display, text, key);
    let mut blocks = Vec::new();
    for key in root.keys() {
        if !key.starts_with('_') && !ROOT_KEYS.contains(&key.as_str()) {
            return Err(Diagnostic::error(format!(
                "unknown key `{key}` in a legacy JSON template"
            ))
            .at(Some(at(key)))
            .hint("a Packer 1.x template holds variables, sensitive-variables, builders, provisioners and post-processors"));
        }
    }
    let sensitive: Vec<&str> = match root.get("sensitive-variables") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(vars) = root.get("variables") {
        let Value::Object(vars) = vars else {
            return Err(
                Diagnostic::error("`variables` must be an object of name: default")
                    .at(Some(at("variables")))
                    .hint("write \"variables\": { \"region\": \"eu-west-1\" }"),
            );
        };
        for (name, value) in vars {
            blocks.push(variable_block(
                name,
                value,
                sensitive.contains(&name.as_str()),
                at(name),
            )?);
        }
    }
    let Some(Value::Array(builders)) = root.get("builders") else {
        return Err(
            Diagnostic::error("`builders` must be a list of builder objects")
                .at(Some(at("builders")))
                .hint("write \"builders\": [ { \"type\": \"amazon-ebs\", ... } ]"),
        );
    };
    let mut build = RawBlock {
        kind: "build".to_owned(),
        labels: Vec::new(),
        attrs: Vec::new(),
        blocks: Vec::new(),
        loc: at("builders"),
    };
    let mut sources = Vec::new();
    let mut renamed = Vec::new();
    for (index, builder) in builders.iter().enumerate() {
        let (kind, object) = typed_object(builder, "builder", &at("builders"))?;
        let mut name = object
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&kind)
            .to_owned();
        let loc = builder_loc(display, text, object, &kind);
        if name.contains("{{") {
            // Packer 1.x renders a builder's name with the variables: the
            // source gets a stand-in label and the build renames it, as an
            // in-build `source { name = ... }` block does (rendered by the
            // loader, which knows the variables).
            let template = std::mem::replace(&mut name, format!("{kind}-{index}"));
            renamed.push(RawBlock {
                kind: "source".to_owned(),
                labels: vec![format!("source.{kind}.{name}")],
                attrs: vec![RawAttr {
                    name: "name".to_owned(),
                    expr: hcl::Expression::String(template.clone()),
                    text: template,
                    loc: loc.clone(),
                }],
                blocks: Vec::new(),
                loc: loc.clone(),
            });
        }
        let body: Map<String, Value> = object
            .iter()
            .filter(|(k, _)| k.as_str() != "type" && k.as_str() != "name")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let (attrs, inner) = body_of(Some(&kind), &body, &loc);
        if !renamed
            .iter()
            .any(|r| r.labels[0] == format!("source.{kind}.{name}"))
        {
            sources.push(Value::String(format!("source.{kind}.{name}")));
        }
        blocks.push(RawBlock {
            kind: "source".to_owned(),
            labels: vec![kind, name],
            attrs,
            blocks: inner,
            loc,
        });
    }
    build.attrs.push(RawAttr {
        name: "sources".to_owned(),
        expr: hcl::Expression::Array(sources.iter().map(literal).collect()),
        text: Value::Array(sources).to_string(),
        loc: at("builders"),
    });
    build.blocks.extend(renamed);
    if let Some(provisioners) = root.get("provisioners") {
        let Value::Array(items) = provisioners else {
            return Err(Diagnostic::error("`provisioners` must be a list")
                .at(Some(at("provisioners")))
                .hint(
                    "write \"provisioners\": [ { \"type\": \"shell\", \"inline\": [\"...\"] } ]",
                ));
        };
        for item in items {
            let (kind, object) = typed_object(item, "provisioner", &at("provisioners"))?;
            let loc = builder_loc(display, text, object, &kind);
            build
                .blocks
                .push(labelled("provisioner", &kind, object, &loc));
        }
    }
    if let Some(posts) = root.get("post-processors") {
        let Value::Array(items) = posts else {
            return Err(Diagnostic::error("`post-processors` must be a list")
                .at(Some(at("post-processors")))
                .hint("write \"post-processors\": [ \"manifest\" ] or objects with a type"));
        };
        let loc = at("post-processors");
        for item in items {
            match item {
                Value::Array(chain) => {
                    let mut chain_block = RawBlock {
                        kind: "post-processors".to_owned(),
                        labels: Vec::new(),
                        attrs: Vec::new(),
                        blocks: Vec::new(),
                        loc: loc.clone(),
                    };
                    for one in chain {
                        chain_block.blocks.push(post_processor(one, &loc)?);
                    }
                    build.blocks.push(chain_block);
                }
                one => build.blocks.push(post_processor(one, &loc)?),
            }
        }
    }
    blocks.push(build);
    Ok(RawFile {
        path: display.to_path_buf(),
        attrs: Vec::new(),
        blocks,
    })
}

fn post_processor(value: &Value, loc: &SourceLoc) -> Result<RawBlock, Diagnostic> {
    match value {
        Value::String(kind) => Ok(labelled("post-processor", kind, &Map::new(), loc)),
        other => {
            let (kind, object) = typed_object(other, "post-processor", loc)?;
            Ok(labelled("post-processor", &kind, object, loc))
        }
    }
}

/// A `KIND "TYPE" { ... }` block from an object's keys (but `type`).
fn labelled(kind: &str, label: &str, object: &Map<String, Value>, loc: &SourceLoc) -> RawBlock {
    let body: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| k.as_str() != "type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (attrs, blocks) = body_of(None, &body, loc);
    RawBlock {
        kind: kind.to_owned(),
        labels: vec![label.to_owned()],
        attrs,
        blocks,
        loc: loc.clone(),
    }
}

fn typed_object<'v>(
    value: &'v Value,
    what: &str,
    loc: &SourceLoc,
) -> Result<(String, &'v Map<String, Value>), Diagnostic> {
    let object = value.as_object();
    match object.and_then(|o| o.get("type")).and_then(Value::as_str) {
        Some(kind) => Ok((kind.to_owned(), object.expect("an object"))),
        None => Err(Diagnostic::error(format!("a {what} needs a \"type\""))
            .at(Some(loc.clone()))
            .hint(format!(
                "write {{ \"type\": \"...\", ... }} for each {what}"
            ))),
    }
}

/// Attributes and blocks of a builder (`builder` names its kind, whose
/// schema says which keys are blocks) or of a provisioner.
fn body_of(
    builder: Option<&str>,
    body: &Map<String, Value>,
    loc: &SourceLoc,
) -> (Vec<RawAttr>, Vec<RawBlock>) {
    let schema = builder.and_then(crate::drivers::kind_of).map(|k| &k.schema);
    let mut attrs = Vec::new();
    let mut blocks = Vec::new();
    for (key, value) in body {
        if key.starts_with('_') {
            continue;
        }
        let is_block = schema.is_some_and(|s| s.block(key).is_some() && s.attr(key).is_none());
        let items: Option<Vec<&Map<String, Value>>> = match value {
            Value::Array(items) => items.iter().map(Value::as_object).collect(),
            Value::Object(map) => Some(vec![map]),
            _ => None,
        };
        match items {
            Some(items) if is_block => {
                for item in items {
                    let (a, b) = body_of(None, item, loc);
                    blocks.push(RawBlock {
                        kind: key.clone(),
                        labels: Vec::new(),
                        attrs: a,
                        blocks: b,
                        loc: loc.clone(),
                    });
                }
            }
            _ => attrs.push(RawAttr {
                name: key.clone(),
                expr: literal(value),
                text: value.to_string(),
                loc: loc.clone(),
            }),
        }
    }
    (attrs, blocks)
}

/// A variable's default; `{{env `X`}}` reads the environment.
fn variable_block(
    name: &str,
    value: &Value,
    sensitive: bool,
    loc: SourceLoc,
) -> Result<RawBlock, Diagnostic> {
    let expr = match value {
        Value::String(s) if s.contains("{{") && VARIABLE_ACTION.is_match(s) => variable_template(s)
            .map_err(|(e, hint)| {
                Diagnostic::error(format!("cannot read the default of `{name}`: {e}"))
                    .at(Some(loc.clone()))
                    .hint(hint)
            })?,
        other => literal(other),
    };
    // A value read from Secrets Manager is a secret, as a sensitive variable.
    let sensitive =
        sensitive || matches!(value, Value::String(s) if s.contains("aws_secretsmanager"));
    let mut attrs = vec![RawAttr {
        name: "default".to_owned(),
        text: value.to_string(),
        expr,
        loc: loc.clone(),
    }];
    if sensitive {
        attrs.push(RawAttr {
            name: "sensitive".to_owned(),
            expr: hcl::Expression::Bool(true),
            text: "true".to_owned(),
            loc: loc.clone(),
        });
    }
    Ok(RawBlock {
        kind: "variable".to_owned(),
        labels: vec![name.to_owned()],
        attrs,
        blocks: Vec::new(),
        loc,
    })
}

/// An action only a variable's default may hold in Packer 1.x (the
/// functions that read the environment or a secret service), or one Packer
/// removed.
static VARIABLE_ACTION: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"\{\{-?\s*(env|aws_secretsmanager_raw|aws_secretsmanager|vault|consul_key|sed)\b([^}]*)-?\}\}")
        .expect("regex")
});

/// `a{{env `X`}}b` as the HCL template `a${env("X")}b`, and
/// `{{aws_secretsmanager `name` `key`}}` as `${aws_secretsmanager("name", "key")}`;
/// the other actions stay as text, rendered where the value is used.
/// `vault`, `consul_key` (services imgform does not reach) and `sed`
/// (removed from Packer) are errors, with what to use instead.
fn variable_template(s: &str) -> Result<hcl::Expression, (String, String)> {
    static ARG: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"`([^`]*)`|"([^"]*)""#).expect("regex"));
    // The raw text of a quoted HCL template: literal parts escaped, the
    // calls as interpolations.
    let escape = |t: &str| {
        t.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .replace("${", "$${")
            .replace("%{", "%%{")
    };
    let quoted = |a: &str| format!("\"{}\"", escape(a));
    let mut raw = String::new();
    let mut last = 0;
    for c in VARIABLE_ACTION.captures_iter(s) {
        let whole = c.get(0).expect("match");
        raw.push_str(&escape(&s[last..whole.start()]));
        let func = &c[1];
        let args: Vec<String> = ARG
            .captures_iter(&c[2])
            .map(|a| {
                a.get(1)
                    .or_else(|| a.get(2))
                    .map_or("", |m| m.as_str())
                    .to_owned()
            })
            .collect();
        match func {
            "env" => {
                let var = args.first().map_or("", String::as_str);
                crate::watch::env(var);
                if var.is_empty()
                    || !var
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                {
                    return Err((
                        format!("`{var}` is not an environment variable name"),
                        "a legacy variable's default is text with {{env `NAME`}} where the environment is read".to_owned(),
                    ));
                }
                raw.push_str(&format!("${{env({})}}", quoted(var)));
            }
            "aws_secretsmanager" | "aws_secretsmanager_raw" => {
                if args.is_empty() || args.len() > 2 || (func.ends_with("_raw") && args.len() > 1) {
                    return Err((
                        format!(
                            "`{func}` takes a secret name{}",
                            if func.ends_with("_raw") {
                                ""
                            } else {
                                " and, optionally, a key"
                            }
                        ),
                        "write {{aws_secretsmanager `my/secret` `key`}}".to_owned(),
                    ));
                }
                let args: Vec<String> = args.iter().map(|a| quoted(a)).collect();
                raw.push_str(&format!("${{{func}({})}}", args.join(", ")));
            }
            "vault" => {
                return Err((
                    "{{vault}} reads HashiCorp Vault, which imgform does not reach".to_owned(),
                    crate::config::functions::secrets::unreachable_service(
                        "vault",
                        "HashiCorp Vault",
                        "vault kv get -field=KEY PATH",
                    ),
                ))
            }
            "consul_key" => {
                return Err((
                    "{{consul_key}} reads Consul, which imgform does not reach".to_owned(),
                    crate::config::functions::secrets::unreachable_service(
                        "consul_key",
                        "Consul",
                        "consul kv get KEY",
                    ),
                ))
            }
            _ => {
                return Err((
                    "{{sed}} was removed from Packer's template engine".to_owned(),
                    "use {{replace_all `old` `new` `text`}} (or {{replace}}), as Packer says"
                        .to_owned(),
                ))
            }
        }
        last = whole.end();
    }
    raw.push_str(&escape(&s[last..]));
    Ok(hcl::Expression::TemplateExpr(Box::new(
        hcl::expr::TemplateExpr::QuotedString(raw),
    )))
}

/// A JSON value as a literal expression: strings are text.
fn literal(value: &Value) -> hcl::Expression {
    match value {
        Value::Null => hcl::Expression::Null,
        Value::Bool(b) => hcl::Expression::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(|i| hcl::Expression::Number(i.into()))
            .or_else(|| n.as_u64().map(|u| hcl::Expression::Number(u.into())))
            .or_else(|| {
                n.as_f64()
                    .and_then(hcl::Number::from_f64)
                    .map(hcl::Expression::Number)
            })
            .unwrap_or(hcl::Expression::Null),
        Value::String(s) => hcl::Expression::String(s.clone()),
        Value::Array(items) => hcl::Expression::Array(items.iter().map(literal).collect()),
        Value::Object(map) => hcl::Expression::Object(
            map.iter()
                .map(|(k, v)| {
                    (
                        hcl::ObjectKey::Expression(hcl::Expression::String(k.clone())),
                        literal(v),
                    )
                })
                .collect(),
        ),
    }
}

fn json_loc(display: &Path, text: &str, key: &str) -> SourceLoc {
    let offset = text.find(&format!("\"{key}\"")).unwrap_or(0);
    SourceLoc::from_offset(display, text, offset)
}

/// Where a builder or provisioner object is: its `"type": "KIND"` (or its
/// name) in the text.
fn builder_loc(display: &Path, text: &str, object: &Map<String, Value>, kind: &str) -> SourceLoc {
    let name = object.get("name").and_then(Value::as_str);
    let needles = [
        name.map(|n| format!("\"name\": \"{n}\"")),
        Some(format!("\"type\": \"{kind}\"")),
        Some(format!("\"type\":\"{kind}\"")),
    ];
    let offset = needles
        .iter()
        .flatten()
        .find_map(|n| text.find(n.as_str()))
        .unwrap_or(0);
    SourceLoc::from_offset(display, text, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawFile {
        let value: Value = serde_json::from_str(text).unwrap();
        parse_legacy(value.as_object().unwrap(), Path::new("packer.json"), text).unwrap()
    }

    #[test]
    fn builders_become_sources_of_one_unnamed_build() {
        let file = parse(
            r#"{
  "_comment": "ignored",
  "variables": {"region": "us-east-1", "home": "{{env `HOME`}}/x"},
  "sensitive-variables": ["home"],
  "builders": [
    {"type": "amazon-ebs", "name": "ami", "region": "{{user `region`}}",
     "launch_block_device_mappings": [{"device_name": "/dev/xvda", "volume_size": 8}]},
    {"type": "null", "communicator": "none"}
  ],
  "provisioners": [{"type": "shell", "inline": ["echo ${HOME}"], "only": ["ami"]}],
  "post-processors": ["manifest", [{"type": "shell-local", "inline": ["true"]}]]
}"#,
        );
        let kinds: Vec<(&str, &[String])> = file
            .blocks
            .iter()
            .map(|b| (b.kind.as_str(), b.labels.as_slice()))
            .collect();
        assert_eq!(kinds[2].1, ["amazon-ebs", "ami"]);
        assert_eq!(kinds[3].1, ["null", "null"]);
        let ami = &file.blocks[2];
        assert_eq!(ami.blocks[0].kind, "launch_block_device_mappings");
        let home = &file.blocks[0];
        assert!(home.attr("sensitive").is_some());
        assert!(format!("{:?}", home.attr("default").unwrap().expr).contains("env(\\\"HOME\\\")"));
        let build = file.blocks.last().unwrap();
        assert_eq!(build.kind, "build");
        let shell = &build.blocks[0];
        // `${HOME}` is the shell's: a plain string, not an HCL template.
        assert_eq!(
            shell.attr("inline").unwrap().expr,
            hcl::Expression::Array(vec![hcl::Expression::String("echo ${HOME}".into())])
        );
        assert_eq!(build.blocks[2].kind, "post-processors");
    }
}
