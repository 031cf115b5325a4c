//! Type conversion functions: `tostring`, `tonumber`, `tobool`, `tolist` and `tomap` (`toset`
//! is with the set functions in `collections`). Each converts `null` to `null`.

use hcl::eval::FuncArgs;
use hcl::Value;

use super::args::{describe, parse_number, type_name, want_str};
use super::FnResult;

// ---------------------------------------------------------------------------------------------
// Type conversion
// ---------------------------------------------------------------------------------------------

pub(super) fn fn_tostring(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Array(_) | Value::Object(_) => Err(format!(
            "cannot convert a {} to a string",
            type_name(&args[0])
        )),
        other => want_str(other, "argument").map(Value::String),
    }
}

pub(super) fn fn_tonumber(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Number(n) => Ok(Value::Number(*n)),
        Value::String(s) => parse_number(s)
            .map(Value::Number)
            .ok_or_else(|| format!("cannot convert {s:?} to a number")),
        other => Err(format!("cannot convert a {} to a number", type_name(other))),
    }
}

pub(super) fn fn_tobool(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::String(s) if s == "true" => Ok(Value::Bool(true)),
        Value::String(s) if s == "false" => Ok(Value::Bool(false)),
        other => Err(format!("cannot convert {} to a bool", describe(other))),
    }
}

pub(super) fn fn_tolist(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Array(items) => Ok(Value::Array(items.clone())),
        other => Err(format!("cannot convert a {} to a list", type_name(other))),
    }
}

pub(super) fn fn_tomap(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Object(map) => Ok(Value::Object(map.clone())),
        other => Err(format!("cannot convert a {} to a map", type_name(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::functions::test_util::*;

    #[test]
    fn type_conversions() {
        assert_eq!(j("tostring(1)"), r#""1""#);
        assert_eq!(j("tostring(true)"), r#""true""#);
        assert_eq!(j("tostring(null)"), "null");
        assert!(err("tostring([])").contains("cannot convert"));
        assert_eq!(ev(r#"tonumber("42")"#), Value::from(42));
        assert_eq!(j(r#"tonumber("1.5")"#), "1.5");
        assert!(err(r#"tonumber("x")"#).contains("cannot convert"));
        assert!(err(r#"tonumber("inf")"#).contains("cannot convert"));
        assert_eq!(j(r#"tobool("true")"#), "true");
        assert!(err(r#"tobool("yes")"#).contains("cannot convert"));
        assert_eq!(j("tolist([1, 2])"), "[1,2]");
        assert_eq!(j(r#"toset(["c", "a", "b", "a"])"#), r#"["a","b","c"]"#);
        assert_eq!(j(r#"toset(["a", 1])"#), r#"["1","a"]"#);
        assert_eq!(j("tomap({a = 1})"), r#"{"a":1}"#);
        assert_eq!(
            j(r#"setunion(["a", "b"], ["b", "c"], ["d"])"#),
            r#"["a","b","c","d"]"#
        );
        assert_eq!(j(r#"setintersection(["a", "b"], ["b", "c"])"#), r#"["b"]"#);
        assert_eq!(j(r#"setsubtract(["a", "b", "c"], ["a", "c"])"#), r#"["b"]"#);
        assert_eq!(
            j(r#"setproduct(["a", "b"], [1, 2])"#),
            r#"[["a",1],["a",2],["b",1],["b",2]]"#
        );
    }
}
