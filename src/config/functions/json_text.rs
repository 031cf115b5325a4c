//! JSON text as Terraform writes it: what `jsonencode` returns, and how
//! values are shown in argument errors. Below both `encoding` and `args`.

use std::fmt::Write as _;

use hcl::{Number, Value};

/// JSON as Terraform writes it: compact, object keys sorted, `<`, `>`, `&`, U+2028 and U+2029
/// escaped, numbers without exponent.
pub(crate) fn json_encode(value: &Value) -> String {
    let mut out = String::new();
    json_write(value, &mut out);
    out
}

pub(super) fn json_write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_to_string(n)),
        Value::String(s) => json_quote(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_quote(key, out);
                out.push(':');
                json_write(item, out);
            }
            out.push('}');
        }
    }
}

fn json_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Terraform's number formatting: integers as integers, floats without exponent.
pub(super) fn number_to_string(n: &Number) -> String {
    if n.is_f64() {
        format!("{}", n.as_f64().unwrap_or(0.0))
    } else {
        n.to_string()
    }
}
