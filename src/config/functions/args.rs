//! Argument helpers shared by the function families: converting and checking arguments
//! (`want_str`, `want_num`, `want_int`, `want_bool`, `want_list`, `want_obj`, `max_args`),
//! naming values in messages ([`type_name`], `describe`), the number helpers
//! (`parse_number`, `number_to_string`, `num_f64`, `num_i128`, `i128_num`, `f64_num`),
//! `str_value` and `sha256_hex`.
//!
//! The number helpers the lazy evaluator (`config::lazy_eval`) also uses, and [`type_name`]
//! (re-exported as `config::functions::type_name`), are `pub(crate)`; the rest `pub(super)`.

use hcl::eval::FuncArgs;
use hcl::{Map, Number, Value};
use sha2::{Digest, Sha256};

use super::json_text::json_encode;
pub(super) use super::json_text::number_to_string;

// ---------------------------------------------------------------------------------------------
// Argument helpers
// ---------------------------------------------------------------------------------------------

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// A string argument; numbers and bools convert as in Terraform.
pub(super) fn want_str(value: &Value, what: &str) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(number_to_string(n)),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err(format!("{what} must not be null")),
        other => Err(format!(
            "{what} must be a string, got a {}",
            type_name(other)
        )),
    }
}

pub(super) fn want_num(value: &Value, what: &str) -> Result<Number, String> {
    match value {
        Value::Number(n) => Ok(*n),
        Value::String(s) => {
            parse_number(s).ok_or_else(|| format!("{what} must be a number, got {s:?}"))
        }
        Value::Null => Err(format!("{what} must not be null")),
        other => Err(format!(
            "{what} must be a number, got a {}",
            type_name(other)
        )),
    }
}

pub(super) fn want_int(value: &Value, what: &str) -> Result<i64, String> {
    let n = want_num(value, what)?;
    match n.as_i64() {
        Some(i) => Ok(i),
        None if n.is_f64() => Err(format!("{what} must be a whole number, got {n}")),
        None => Err(format!("{what} is out of range: {n}")),
    }
}

pub(super) fn want_bool(value: &Value, what: &str) -> Result<bool, String> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        Value::Null => Err(format!("{what} must not be null")),
        other => Err(format!("{what} must be a bool, got {}", describe(other))),
    }
}

pub(super) fn want_list<'a>(value: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Err(format!("{what} must not be null")),
        other => Err(format!("{what} must be a list, got a {}", type_name(other))),
    }
}

pub(super) fn want_obj<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Err(format!("{what} must not be null")),
        other => Err(format!(
            "{what} must be a map or object, got a {}",
            type_name(other)
        )),
    }
}

pub(super) fn max_args(args: &FuncArgs, max: usize) -> Result<(), String> {
    if args.len() > max {
        Err(format!(
            "expected at most {max} arguments, got {}",
            args.len()
        ))
    } else {
        Ok(())
    }
}

/// A short description of a value for error messages.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) | Value::Object(_) => format!("a {}", type_name(value)),
        other => json_encode(other),
    }
}

pub(super) fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Number::from(u));
    }
    let lower = s.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return None;
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

pub(crate) fn num_f64(n: &Number) -> f64 {
    n.as_f64().unwrap_or(0.0)
}

pub(crate) fn num_i128(n: &Number) -> Option<i128> {
    if n.is_f64() {
        None
    } else {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
}

pub(crate) fn i128_num(i: i128) -> Number {
    if let Ok(v) = i64::try_from(i) {
        Number::from(v)
    } else if let Ok(v) = u64::try_from(i) {
        Number::from(v)
    } else {
        #[allow(clippy::cast_precision_loss)]
        Number::from_f64(i as f64).unwrap_or_else(|| Number::from(0))
    }
}

pub(crate) fn f64_num(f: f64) -> Result<Number, String> {
    Number::from_f64(f).ok_or_else(|| "the result is not a finite number".to_string())
}

pub(super) fn str_value(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
