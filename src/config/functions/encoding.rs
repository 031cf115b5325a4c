//! Encoding functions: `jsonencode`, `jsondecode`, `yamlencode`, `yamldecode`,
//! `base64encode`, `base64decode`, `urlencode` and `csvdecode`.
//!
//! `jsonencode` and `yamlencode` write what Terraform writes (keys sorted, the same escapes).
//! (JSON text itself is written by `json_text`, which other families use to show values.)

use std::fmt::Write as _;

use base64::Engine as _;
use hcl::eval::FuncArgs;
use hcl::{Map, Number, Value};

use super::args::{number_to_string, str_value, want_str};
use super::json_text::json_encode;
use super::FnResult;

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

fn json_to_value(json: serde_json::Value) -> Result<Value, String> {
    Ok(match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    Number::from_f64(f).ok_or_else(|| format!("number {n} is out of range"))?,
                )
            }
        }
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(json_to_value)
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                out.insert(key, json_to_value(item)?);
            }
            Value::Object(out)
        }
    })
}

pub(super) fn fn_jsonencode(args: FuncArgs) -> FnResult {
    Ok(str_value(json_encode(&args[0])))
}

pub(super) fn fn_jsondecode(args: FuncArgs) -> FnResult {
    let src = want_str(&args[0], "str")?;
    let json: serde_json::Value =
        serde_json::from_str(&src).map_err(|err| format!("invalid JSON: {err}"))?;
    json_to_value(json)
}

fn yaml_to_value(yaml: serde_yaml::Value) -> Result<Value, String> {
    Ok(match yaml {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(b),
        serde_yaml::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    Number::from_f64(f)
                        .ok_or_else(|| format!("cannot represent {n} as a number"))?,
                )
            }
        }
        serde_yaml::Value::String(s) => Value::String(s),
        serde_yaml::Value::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_value)
                .collect::<Result<_, _>>()?,
        ),
        serde_yaml::Value::Mapping(mapping) => {
            let mut out = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    serde_yaml::Value::String(s) => s,
                    serde_yaml::Value::Bool(b) => b.to_string(),
                    serde_yaml::Value::Number(n) => n.to_string(),
                    serde_yaml::Value::Null => "null".to_string(),
                    _ => return Err("only scalar mapping keys are supported".to_string()),
                };
                out.insert(key, yaml_to_value(item)?);
            }
            Value::Object(out)
        }
        serde_yaml::Value::Tagged(tagged) => yaml_to_value(tagged.value)?,
    })
}

pub(super) fn fn_yamldecode(args: FuncArgs) -> FnResult {
    let src = want_str(&args[0], "str")?;
    let mut yaml: serde_yaml::Value =
        serde_yaml::from_str(&src).map_err(|err| format!("invalid YAML: {err}"))?;
    yaml.apply_merge()
        .map_err(|err| format!("invalid YAML: {err}"))?;
    yaml_to_value(yaml)
}

/// Where a YAML node is written.
#[derive(Clone, Copy)]
enum YamlPos {
    /// The document root.
    Root,
    /// After `"key":`, the key at this indentation.
    AfterKey(usize),
    /// After `- `, the dash at this indentation.
    AfterDash(usize),
}

/// YAML as Terraform's `yamlencode` writes it: block style, keys sorted and double-quoted,
/// strings double-quoted unless multi-line (then literal style), sequences in mappings not
/// indented.
fn yaml_encode(value: &Value) -> String {
    let mut out = String::new();
    let mut open_ended = false;
    yaml_write(value, YamlPos::Root, &mut out, &mut open_ended);
    if open_ended {
        out.push_str("...\n");
    }
    out
}

fn yaml_write(value: &Value, pos: YamlPos, out: &mut String, open_ended: &mut bool) {
    let lead = |out: &mut String| {
        if let YamlPos::AfterKey(_) = pos {
            out.push(' ');
        }
    };
    // Indentation of the block this node's children (or literal lines) live in.
    let child_indent = match pos {
        YamlPos::Root => 0,
        YamlPos::AfterKey(k) => k + 2,
        YamlPos::AfterDash(d) => d + 2,
    };
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            lead(out);
            match value {
                Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Number(n) => out.push_str(&number_to_string(n)),
                _ => {}
            }
            out.push('\n');
            if let YamlPos::Root = pos {
                *open_ended = true;
            }
        }
        Value::String(s) => {
            lead(out);
            if s.contains('\n') && yaml_block_allowed(s) {
                let indent = match pos {
                    YamlPos::Root => 2,
                    _ => child_indent,
                };
                out.push('|');
                if s.starts_with(' ') || s.starts_with('\n') {
                    out.push('2');
                }
                let body = if let Some(stripped) = s.strip_suffix('\n') {
                    if stripped.ends_with('\n') || stripped.is_empty() {
                        out.push('+');
                        *open_ended = true;
                    }
                    stripped
                } else {
                    out.push('-');
                    s.as_str()
                };
                out.push('\n');
                for line in body.split('\n') {
                    if !line.is_empty() {
                        out.push_str(&" ".repeat(indent));
                        out.push_str(line);
                    }
                    out.push('\n');
                }
            } else {
                yaml_quote(s, out);
                out.push('\n');
            }
        }
        Value::Array(items) if items.is_empty() => {
            lead(out);
            out.push_str("[]\n");
        }
        Value::Object(map) if map.is_empty() => {
            lead(out);
            out.push_str("{}\n");
        }
        Value::Array(items) => {
            // Sequences directly under a key are not indented (libyaml style).
            let (dash_indent, mut inline) = match pos {
                YamlPos::Root => (0, false),
                YamlPos::AfterKey(k) => {
                    out.push('\n');
                    (k, false)
                }
                YamlPos::AfterDash(d) => (d + 2, true),
            };
            for item in items {
                if !inline {
                    out.push_str(&" ".repeat(dash_indent));
                }
                inline = false;
                out.push_str("- ");
                yaml_write(item, YamlPos::AfterDash(dash_indent), out, open_ended);
            }
        }
        Value::Object(map) => {
            let (key_indent, mut inline) = match pos {
                YamlPos::Root => (0, false),
                YamlPos::AfterKey(k) => {
                    out.push('\n');
                    (k + 2, false)
                }
                YamlPos::AfterDash(d) => (d + 2, true),
            };
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (key, item) in entries {
                if !inline {
                    out.push_str(&" ".repeat(key_indent));
                }
                inline = false;
                yaml_quote(key, out);
                out.push(':');
                yaml_write(item, YamlPos::AfterKey(key_indent), out, open_ended);
            }
        }
    }
}

fn yaml_printable(c: char) -> bool {
    matches!(
        c,
        '\n'
            | '\u{20}'..='\u{7e}'
            | '\u{85}'
            | '\u{a0}'..='\u{d7ff}'
            | '\u{e000}'..='\u{fffd}'
            | '\u{10000}'..='\u{10ffff}'
    ) && c != '\u{feff}'
}

/// Whether libyaml would write `s` in literal block style.
fn yaml_block_allowed(s: &str) -> bool {
    !s.ends_with(' ') && !s.contains(" \n") && s.chars().all(yaml_printable)
}

fn yaml_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if !yaml_printable(c) => {
                let code = c as u32;
                if code <= 0xff {
                    let _ = write!(out, "\\x{code:02X}");
                } else if code <= 0xffff {
                    let _ = write!(out, "\\u{code:04X}");
                } else {
                    let _ = write!(out, "\\U{code:08X}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(super) fn fn_yamlencode(args: FuncArgs) -> FnResult {
    Ok(str_value(yaml_encode(&args[0])))
}

pub(super) fn fn_base64encode(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    Ok(str_value(
        base64::engine::general_purpose::STANDARD.encode(s),
    ))
}

pub(super) fn fn_base64decode(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|err| format!("failed to decode base64 data: {err}"))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "the result of decoding the provided string is not valid UTF-8".to_string())
}

pub(super) fn fn_urlencode(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => {
                let _ = write!(out, "%{other:02X}");
            }
        }
    }
    Ok(str_value(out))
}

/// RFC 4180 records; blank lines are skipped.
fn csv_records(src: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = src.chars().peekable();
    let mut line = 1usize;
    let mut at_field_start = true;
    let mut quoted_field = false;
    while let Some(c) = chars.next() {
        if at_field_start && c == '"' {
            at_field_start = false;
            quoted_field = true;
            let start_line = line;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => {
                        if c == '\n' {
                            line += 1;
                        }
                        field.push(c);
                    }
                    None => {
                        return Err(format!("line {start_line}: quoted field is not terminated"))
                    }
                }
            }
            match chars.peek() {
                None | Some(',') | Some('\n') | Some('\r') => {}
                Some(_) => {
                    return Err(format!("line {line}: extraneous text after a quoted field"))
                }
            }
            continue;
        }
        match c {
            ',' => {
                record.push(std::mem::take(&mut field));
                at_field_start = true;
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                line += 1;
                let blank = record.is_empty() && field.is_empty() && !quoted_field;
                if !blank {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                at_field_start = true;
                quoted_field = false;
            }
            '"' => return Err(format!("line {line}: bare \" in a non-quoted field")),
            c => {
                at_field_start = false;
                field.push(c);
            }
        }
    }
    if !record.is_empty() || !field.is_empty() || quoted_field {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

pub(super) fn fn_csvdecode(args: FuncArgs) -> FnResult {
    let src = want_str(&args[0], "str")?;
    let records = csv_records(&src).map_err(|err| format!("invalid CSV: {err}"))?;
    let mut iter = records.into_iter();
    let header = iter
        .next()
        .ok_or_else(|| "invalid CSV: missing header line".to_string())?;
    let mut rows = Vec::new();
    for (i, record) in iter.enumerate() {
        if record.len() != header.len() {
            return Err(format!(
                "invalid CSV: record {} has {} fields, but the header has {}",
                i + 1,
                record.len(),
                header.len()
            ));
        }
        let row: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(record.into_iter().map(Value::String))
            .collect();
        rows.push(Value::Object(row));
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::functions::test_util::*;

    // ----- encoding ---------------------------------------------------------------------------

    #[test]
    fn json_functions() {
        assert_eq!(
            ev(r#"jsonencode({hello = "world", a = [1, 2.5, true, null]})"#),
            Value::from(r#"{"a":[1,2.5,true,null],"hello":"world"}"#)
        );
        assert_eq!(
            ev(r#"jsonencode("<a & b>\n")"#),
            Value::from(r#""\u003ca \u0026 b\u003e\n""#)
        );
        let decoded = ev(
            r#"jsondecode("{\"a\": 1, \"b\": [1.5, \"x\", null], \"c\": 18446744073709551615}")"#,
        );
        assert_eq!(
            json_encode(&decoded),
            r#"{"a":1,"b":[1.5,"x",null],"c":18446744073709551615}"#
        );
        assert!(!decoded.as_object().unwrap()["a"]
            .as_number()
            .unwrap()
            .is_f64());
        assert!(err(r#"jsondecode("{")"#).contains("invalid JSON"));
        assert_eq!(
            ev(r#"jsondecode(jsonencode(var.tags))"#),
            test_ctx_var("tags")
        );
    }

    fn test_ctx_var(name: &str) -> Value {
        ev(&format!("var.{name}"))
    }

    #[test]
    fn yaml_functions() {
        assert_eq!(
            ev(r#"yamlencode({a = "b", c = "d"})"#),
            Value::from("\"a\": \"b\"\n\"c\": \"d\"\n")
        );
        assert_eq!(
            ev(r#"yamlencode({foo = [1, 2, 3], bar = "baz"})"#),
            Value::from("\"bar\": \"baz\"\n\"foo\":\n- 1\n- 2\n- 3\n")
        );
        assert_eq!(
            ev(r#"yamlencode({foo = [1, {a = "b", c = "d"}, 3], bar = "baz"})"#),
            Value::from("\"bar\": \"baz\"\n\"foo\":\n- 1\n- \"a\": \"b\"\n  \"c\": \"d\"\n- 3\n")
        );
        assert_eq!(
            ev(r#"yamlencode({a = {b = [[1, 2], []], c = {}}})"#),
            Value::from("\"a\":\n  \"b\":\n  - - 1\n    - 2\n  - []\n  \"c\": {}\n")
        );
        assert_eq!(
            ev(r#"yamlencode({script = "echo hi\necho there\n", s2 = "a\nb"})"#),
            Value::from("\"s2\": |-\n  a\n  b\n\"script\": |\n  echo hi\n  echo there\n")
        );
        assert_eq!(ev("yamlencode(1)"), Value::from("1\n...\n"));
        assert_eq!(
            ev(r#"yamlencode("tab\there")"#),
            Value::from("\"tab\\there\"\n")
        );
        // Round trips through a real YAML parser.
        let complex = r#"{a = ["x\ny", "  lead\n", "q\"uote", {k = null}], "b c" = 1.5, d = true, e = "trail\n\n"}"#;
        assert_eq!(
            ev(&format!("yamldecode(yamlencode({complex}))")),
            ev(complex)
        );
        assert_eq!(
            j(r#"yamldecode("a: 1\nb: [x, 2.5, true, null]\nc:\n  d: e\n")"#),
            r#"{"a":1,"b":["x",2.5,true,null],"c":{"d":"e"}}"#
        );
        assert_eq!(j(r#"yamldecode("")"#), "null");
        assert_eq!(
            j(r#"yamldecode("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n")"#),
            r#"{"base":{"x":1},"derived":{"x":1,"y":2}}"#
        );
        assert!(err(r#"yamldecode("a: [")"#).contains("invalid YAML"));
        assert!(err(r#"yamldecode("a: 1\n---\nb: 2\n")"#).contains("invalid YAML"));
    }

    #[test]
    fn base64_url_csv() {
        assert_eq!(j(r#"base64encode("Hello World")"#), r#""SGVsbG8gV29ybGQ=""#);
        assert_eq!(j(r#"base64decode("SGVsbG8gV29ybGQ=")"#), r#""Hello World""#);
        assert!(err(r#"base64decode("!!")"#).contains("base64"));
        assert!(err(r#"base64decode("/w==")"#).contains("UTF-8"));
        assert_eq!(
            j(r#"urlencode("Hello World!/~")"#),
            r#""Hello+World%21%2F~""#
        );
        assert_eq!(
            j(r#"csvdecode("a,b,c\n1,2,3\n\"x,y\",\"q\"\"q\",\n")"#),
            r#"[{"a":"1","b":"2","c":"3"},{"a":"x,y","b":"q\"q","c":""}]"#
        );
        assert!(err(r#"csvdecode("a,b\n1\n")"#).contains("fields"));
        assert!(err(r#"csvdecode("")"#).contains("missing header"));
    }
}
