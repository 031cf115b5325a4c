//! Packer's template engine inside strings: `{{timestamp}}`,
//! `{{isotime "2006-01-02"}}`, `{{uuid}}`, `{{packer_version}}`,
//! `{{build_name}}`, `{{build_type}}`, `{{template_dir}}`, `{{pwd}}`,
//! `{{user `x`}}`, `{{upper ...}}`, `{{lower ...}}`, `{{replace_all ...}}`,
//! `{{split ...}}`, `{{clean_resource_name ...}}`, with pipes
//! (`{{timestamp | clean_resource_name}}`) — what Packer renders in builder
//! and provisioner settings, in HCL2 templates as in legacy JSON ones.
//!
//! Each action is translated into an HCL expression and evaluated in the
//! image's own scope, so the rules of HCL functions hold unchanged: the
//! clock of `{{timestamp}}` is the one `timestamp()` uses (allowed in build
//! settings, an error in inputs), `{{build_name}}` is `source.name`,
//! `{{user `x`}}` is `var.x`.
//!
//! An action that starts with a field (`{{ .SourceAMI }}`, `{{ .Vars }}`,
//! `{{ .HTTPIP }}`) belongs to whoever runs the setting (the builder at
//! build time, the shell provisioner's `execute_command`) and is left as
//! written. Anything else Packer's engine would take and this one does not
//! know is an error: nothing stays literal by accident.

use hcl::eval::Context;

use super::functions;

/// What rendering a string found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The action as written, `{{ ... }}`.
    pub action: String,
    pub message: String,
    /// What to write instead, when there is something better to say than
    /// the general rule (a function that reads a service imgform does not
    /// reach, one Packer removed).
    pub hint: Option<String>,
}

/// `text` with every template action other than a field rendered. A value
/// that holds actions itself (a legacy variable defined with `{{user}}` of
/// another) is rendered in turn, as Packer 1.x rendered variables.
pub fn render(text: &str, ctx: &Context) -> Result<String, TemplateError> {
    render_nested(text, ctx, 0)
}

/// How deep values may refer to values that hold actions.
const MAX_DEPTH: usize = 8;

fn render_nested(text: &str, ctx: &Context, depth: usize) -> Result<String, TemplateError> {
    if !text.contains("{{") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let action = &rest[start..start + len + 2];
        let inner = action[2..action.len() - 2]
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let mut before = &rest[..start];
        if action.starts_with("{{-") {
            before = before.trim_end();
        }
        out.push_str(before);
        let fail = |message: String| TemplateError {
            action: action.to_owned(),
            message,
            hint: inner.split_whitespace().next().and_then(instead_of),
        };
        if inner.starts_with('.') || inner.is_empty() || inner.starts_with("/*") {
            // A field of the running step's data, or a comment: not ours.
            out.push_str(action);
        } else {
            let expr = translate(inner).map_err(fail)?;
            let parsed: hcl::Expression = expr
                .parse()
                .map_err(|e| fail(format!("cannot read it: {e}")))?;
            match functions::evaluate(&parsed, ctx) {
                Ok(hcl::Value::String(s)) if s.contains("{{") && depth < MAX_DEPTH => {
                    out.push_str(&render_nested(&s, ctx, depth + 1)?);
                }
                Ok(hcl::Value::String(s)) => out.push_str(&s),
                Ok(hcl::Value::Number(n)) => out.push_str(&n.to_string()),
                Ok(hcl::Value::Bool(b)) => out.push_str(&b.to_string()),
                Ok(other) => {
                    return Err(fail(format!(
                        "it gives {}, not text",
                        functions::type_name(&other)
                    )))
                }
                Err(e) => return Err(fail(super::scope::describe_error(&e, &expr))),
            }
        }
        rest = &rest[start + len + 2..];
        if action.ends_with("-}}") {
            rest = rest.trim_start();
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// One argument of a template function call, as HCL.
fn argument(token: &str) -> Result<String, String> {
    if let Some(s) = token
        .strip_prefix('`')
        .and_then(|t| t.strip_suffix('`'))
        .or_else(|| token.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
    {
        return Ok(hcl_string(s));
    }
    if token.chars().all(|c| c.is_ascii_digit() || c == '-') && !token.is_empty() {
        return Ok(token.to_owned());
    }
    // A bare name is a call of a function without arguments.
    call(token, Vec::new())
}

fn hcl_string(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "$${")
        .replace("%{", "%%{")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// A pipeline `a | f x | g` as one HCL expression: each stage's result is
/// the last argument of the next, as in Go's templates.
fn translate(pipeline: &str) -> Result<String, String> {
    let mut expr: Option<String> = None;
    for stage in split_outside_quotes(pipeline, '|') {
        let tokens = tokens(stage.trim())?;
        let Some((name, args)) = tokens.split_first() else {
            return Err("an empty stage in the pipeline".to_owned());
        };
        let mut args: Vec<String> = args.iter().map(|a| argument(a)).collect::<Result<_, _>>()?;
        if let Some(previous) = expr.take() {
            args.push(previous);
        }
        expr = Some(
            if args.is_empty() && (name.starts_with('"') || name.starts_with('`')) {
                argument(name)?
            } else {
                call(name, args)?
            },
        );
    }
    expr.ok_or_else(|| "nothing to render".to_owned())
}

/// One template function applied to HCL arguments.
fn call(name: &str, args: Vec<String>) -> Result<String, String> {
    let arity = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "`{name}` takes {n} argument(s), {} given",
                args.len()
            ))
        }
    };
    Ok(match name {
        // Packer's timestamp is Unix seconds.
        "timestamp" => {
            arity(0)?;
            "legacy_strftime(\"%s\")".to_owned()
        }
        "isotime" if args.is_empty() => "legacy_isotime()".to_owned(),
        "isotime" => {
            arity(1)?;
            format!("legacy_isotime({})", args[0])
        }
        "uuid" => {
            arity(0)?;
            "uuidv4()".to_owned()
        }
        "packer_version" => {
            arity(0)?;
            "packer.version".to_owned()
        }
        "build_name" => {
            arity(0)?;
            "source.name".to_owned()
        }
        "build_type" => {
            arity(0)?;
            "source.type".to_owned()
        }
        "template_dir" => {
            arity(0)?;
            "path.root".to_owned()
        }
        "pwd" => {
            arity(0)?;
            "path.cwd".to_owned()
        }
        "user" => {
            arity(1)?;
            format!("var[{}]", args[0])
        }
        "upper" | "lower" => {
            arity(1)?;
            format!("{name}({})", args[0])
        }
        // replace_all OLD NEW SRC; replace OLD NEW N SRC (N ignored: all).
        "replace_all" => {
            arity(3)?;
            format!("replace({}, {}, {})", args[2], args[0], args[1])
        }
        "replace" => {
            arity(4)?;
            format!("replace({}, {}, {})", args[3], args[0], args[1])
        }
        // split SRC SEP INDEX
        "split" => {
            arity(3)?;
            format!("element(split({}, {}), {})", args[1], args[0], args[2])
        }
        // Lower case, anything but letters, digits, - and _ becomes -.
        "clean_resource_name" => {
            arity(1)?;
            format!("regex_replace(lower({}), \"[^a-z0-9_-]\", \"-\")", args[0])
        }
        "aws_secretsmanager" | "aws_secretsmanager_raw" => {
            return Err(format!(
                "`{name}` is read only in a variable's default, as in Packer"
            ))
        }
        "vault" => return Err("`vault` reads HashiCorp Vault, which imgform does not reach".to_owned()),
        "consul_key" => return Err("`consul_key` reads Consul, which imgform does not reach".to_owned()),
        "sed" => return Err("`sed` was removed from Packer's template engine".to_owned()),
        "env" => {
            return Err(
                "`env` is read only in a legacy JSON template's variables, as in Packer; declare a variable with default = env(\"X\")".to_owned(),
            )
        }
        other => {
            return Err(format!(
                "`{other}` is not a template function imgform knows (timestamp, isotime, uuid, packer_version, build_name, build_type, template_dir, pwd, user, upper, lower, replace, replace_all, split, clean_resource_name)"
            ))
        }
    })
}

/// What to use instead of a template function Packer only allows in
/// variables, that reads a service imgform does not reach, or that Packer
/// removed.
fn instead_of(name: &str) -> Option<String> {
    Some(match name {
        "aws_secretsmanager" | "aws_secretsmanager_raw" => format!(
            "give a variable {{{{{name} `my/secret` `key`}}}} as its default (legacy JSON) or {name}(\"my/secret\", \"key\") (HCL2), and use the variable here"
        ),
        "vault" => super::functions::secrets::unreachable_service(
            "vault",
            "HashiCorp Vault",
            "vault kv get -field=KEY PATH",
        ),
        "consul_key" => super::functions::secrets::unreachable_service(
            "consul_key",
            "Consul",
            "consul kv get KEY",
        ),
        "sed" => "use {{replace_all `old` `new` `text`}} (or {{replace}}), as Packer says".to_owned(),
        _ => return None,
    })
}

/// The words of a stage: names, numbers and quoted strings.
fn tokens(stage: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = stage.trim_start();
    while !rest.is_empty() {
        let end = match rest.chars().next() {
            Some(q @ ('"' | '`')) => {
                let close = rest[1..]
                    .find(q)
                    .ok_or_else(|| format!("an unclosed {q} string"))?;
                close + 2
            }
            _ => rest.find(char::is_whitespace).unwrap_or(rest.len()),
        };
        out.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    Ok(out)
}

fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None if c == sep => {
                out.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            None => {}
        }
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::functions::{with_env, Clock, FunctionEnv};

    fn ctx() -> Context<'static> {
        let mut ctx = super::super::scope::base_context("packer");
        let mut source = hcl::Map::new();
        source.insert("name".to_owned(), hcl::Value::from("ubuntu"));
        source.insert("type".to_owned(), hcl::Value::from("amazon-ebs"));
        ctx.declare_var("source", hcl::Value::Object(source));
        let mut var = hcl::Map::new();
        var.insert("region".to_owned(), hcl::Value::from("eu-west-1"));
        ctx.declare_var("var", hcl::Value::Object(var));
        ctx
    }

    fn run(text: &str, clock: Clock) -> (Result<String, TemplateError>, bool) {
        let env = FunctionEnv {
            base_dir: std::env::temp_dir(),
            allow_env: false,
            clock,
        };
        let ctx = ctx();
        let (out, trace) = with_env(env, || render(text, &ctx));
        (out, trace.nondeterministic)
    }

    #[test]
    fn renders_packer_functions_and_leaves_fields() {
        let (out, nd) = run(
            "{{build_type}}/{{ build_name }}-{{user `region`}} in {{template_dir}} {{ .SourceAMI }} {{upper `x`}}",
            Clock::Real,
        );
        assert_eq!(
            out.unwrap(),
            "amazon-ebs/ubuntu-eu-west-1 in packer {{ .SourceAMI }} X"
        );
        assert!(!nd);
    }

    #[test]
    fn clock_functions_follow_the_probe_clock() {
        let (a, nd) = run("img-{{timestamp}}", Clock::Probe(1));
        let (b, _) = run("img-{{timestamp}}", Clock::Probe(2));
        assert!(nd, "timestamp is non-deterministic");
        assert_ne!(a.clone().unwrap(), b.unwrap());
        let secs = a.unwrap().trim_start_matches("img-").to_owned();
        assert!(secs.parse::<u64>().is_ok(), "Unix seconds: {secs}");
        let (iso, _) = run("{{isotime \"2006-01-02\"}}", Clock::Probe(1));
        assert_eq!(iso.unwrap().len(), 10);
        let (piped, _) = run("{{ \"A B.c\" | clean_resource_name }}", Clock::Real);
        assert_eq!(piped.unwrap(), "a-b-c");
    }

    #[test]
    fn unknown_functions_are_errors() {
        let (out, _) = run("x {{ vault `a` `b` }}", Clock::Real);
        let err = out.unwrap_err();
        assert_eq!(err.action, "{{ vault `a` `b` }}");
        assert!(err.message.contains("vault"), "{err:?}");
    }
}
