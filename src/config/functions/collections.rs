//! Collection functions: `length`, `concat`, `merge`, `lookup`, `coalesce`, `coalescelist`,
//! `contains`, `keys`, `values`, `element`, `index`, `flatten`, `distinct`, `reverse`, `sort`,
//! `slice`, `range`, `zipmap`, `compact`, `one`, `sum`, `alltrue`, `anytrue` and `chunklist`,
//! and the set functions `toset`, `setunion`, `setintersection`, `setsubtract` and
//! `setproduct`, whose results are ordered as Terraform orders sets (`normalize_set`).

use hcl::eval::FuncArgs;
use hcl::{Map, Number, Value};

use super::args::{
    describe, f64_num, i128_num, max_args, num_f64, num_i128, str_value, type_name, want_bool,
    want_int, want_list, want_num, want_obj, want_str,
};
use super::FnResult;

// ---------------------------------------------------------------------------------------------
// Collections
// ---------------------------------------------------------------------------------------------

pub(super) fn fn_length(args: FuncArgs) -> FnResult {
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        Value::Null => return Err("argument must not be null".to_string()),
        other => {
            return Err(format!(
                "argument must be a string, a list or an object, got a {}",
                type_name(other)
            ))
        }
    };
    Ok(Value::Number(Number::from(n)))
}

pub(super) fn fn_concat(args: FuncArgs) -> FnResult {
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        out.extend(
            want_list(arg, &format!("argument {}", i + 1))?
                .iter()
                .cloned(),
        );
    }
    Ok(Value::Array(out))
}

pub(super) fn fn_merge(args: FuncArgs) -> FnResult {
    let mut out = Map::new();
    for (i, arg) in args.iter().enumerate() {
        if arg.is_null() {
            continue;
        }
        for (key, value) in want_obj(arg, &format!("argument {}", i + 1))? {
            out.insert(key.clone(), value.clone());
        }
    }
    Ok(Value::Object(out))
}

pub(super) fn fn_lookup(args: FuncArgs) -> FnResult {
    max_args(&args, 3)?;
    let map = want_obj(&args[0], "inputMap")?;
    let key = want_str(&args[1], "key")?;
    match map.get(&key) {
        Some(value) => Ok(value.clone()),
        None => match args.get(2) {
            Some(default) => Ok(default.clone()),
            None => Err(format!("lookup failed to find key {key:?}")),
        },
    }
}

pub(super) fn fn_coalesce(args: FuncArgs) -> FnResult {
    args.iter()
        .find(|v| !matches!(v, Value::Null) && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".to_string())
}

pub(super) fn fn_coalescelist(args: FuncArgs) -> FnResult {
    for (i, arg) in args.iter().enumerate() {
        if arg.is_null() {
            continue;
        }
        if !want_list(arg, &format!("argument {}", i + 1))?.is_empty() {
            return Ok(arg.clone());
        }
    }
    Err("no non-null, non-empty list arguments".to_string())
}

pub(super) fn fn_contains(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    Ok(Value::Bool(list.contains(&args[1])))
}

fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

pub(super) fn fn_keys(args: FuncArgs) -> FnResult {
    let map = want_obj(&args[0], "inputMap")?;
    Ok(Value::Array(
        sorted_entries(map)
            .into_iter()
            .map(|(k, _)| str_value(k.clone()))
            .collect(),
    ))
}

pub(super) fn fn_values(args: FuncArgs) -> FnResult {
    let map = want_obj(&args[0], "mapping")?;
    Ok(Value::Array(
        sorted_entries(map)
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect(),
    ))
}

pub(super) fn fn_element(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let index = want_int(&args[1], "index")?;
    if list.is_empty() {
        return Err("cannot use element function with an empty list".to_string());
    }
    let index = usize::try_from(index)
        .map_err(|_| "cannot use element function with a negative index".to_string())?;
    Ok(list[index % list.len()].clone())
}

pub(super) fn fn_index(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    list.iter()
        .position(|v| *v == args[1])
        .map(|i| Value::Number(Number::from(i)))
        .ok_or_else(|| format!("item {} not found", describe(&args[1])))
}

fn flatten_into(items: &[Value], out: &mut Vec<Value>) {
    for item in items {
        match item {
            Value::Array(inner) => flatten_into(inner, out),
            other => out.push(other.clone()),
        }
    }
}

pub(super) fn fn_flatten(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let mut out = Vec::new();
    flatten_into(list, &mut out);
    Ok(Value::Array(out))
}

fn distinct_values(items: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

pub(super) fn fn_distinct(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    Ok(Value::Array(distinct_values(list.iter().cloned())))
}

pub(super) fn fn_reverse(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    Ok(Value::Array(list.iter().rev().cloned().collect()))
}

pub(super) fn fn_sort(args: FuncArgs) -> FnResult {
    // Terraform's sort works on a list of strings; numbers and bools convert.
    let list = want_list(&args[0], "list")?;
    let mut strings = list
        .iter()
        .enumerate()
        .map(|(i, v)| want_str(v, &format!("element {i}")))
        .collect::<Result<Vec<_>, _>>()?;
    strings.sort();
    Ok(Value::Array(
        strings.into_iter().map(Value::String).collect(),
    ))
}

pub(super) fn fn_slice(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let start = want_int(&args[1], "start_index")?;
    let end = want_int(&args[2], "end_index")?;
    let start =
        usize::try_from(start).map_err(|_| "start_index must not be less than zero".to_string())?;
    let end =
        usize::try_from(end).map_err(|_| "end_index must not be less than zero".to_string())?;
    if end > list.len() {
        return Err(format!(
            "end_index must not be greater than the length of the list ({})",
            list.len()
        ));
    }
    if start > end {
        return Err("start_index must not be greater than end_index".to_string());
    }
    Ok(Value::Array(list[start..end].to_vec()))
}

pub(super) fn fn_range(args: FuncArgs) -> FnResult {
    max_args(&args, 3)?;
    let nums = args
        .iter()
        .enumerate()
        .map(|(i, v)| want_num(v, &format!("argument {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let (start, limit, step) = match nums.as_slice() {
        [limit] => (Number::from(0), *limit, None),
        [start, limit] => (*start, *limit, None),
        [start, limit, step] => (*start, *limit, Some(*step)),
        _ => return Err("expected one to three arguments".to_string()),
    };
    let (s, l) = (num_f64(&start), num_f64(&limit));
    let st = match step {
        Some(step) => num_f64(&step),
        None if l < s => -1.0,
        None => 1.0,
    };
    if st == 0.0 {
        return Err("step must not be zero".to_string());
    }
    let all_int = [Some(start), Some(limit), step]
        .iter()
        .flatten()
        .all(|n| !n.is_f64());
    let mut out = Vec::new();
    let mut k: i32 = 0;
    loop {
        let v = s + f64::from(k) * st;
        if (st > 0.0 && v >= l) || (st < 0.0 && v <= l) {
            break;
        }
        if out.len() >= 1024 {
            return Err(
                "more than 1024 values were generated; either decrease the difference \
                        between start and end or use a smaller step"
                    .to_string(),
            );
        }
        let n = if all_int {
            #[allow(clippy::cast_possible_truncation)]
            let i = v.round() as i128;
            i128_num(i)
        } else {
            f64_num(v)?
        };
        out.push(Value::Number(n));
        k += 1;
    }
    Ok(Value::Array(out))
}

pub(super) fn fn_zipmap(args: FuncArgs) -> FnResult {
    let keys = want_list(&args[0], "keys")?;
    let values = want_list(&args[1], "values")?;
    if keys.len() != values.len() {
        return Err(format!(
            "number of keys ({}) does not match number of values ({})",
            keys.len(),
            values.len()
        ));
    }
    let mut out = Map::new();
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        out.insert(want_str(key, &format!("key {i}"))?, value.clone());
    }
    Ok(Value::Object(out))
}

pub(super) fn fn_compact(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        if item.is_null() {
            continue;
        }
        let s = want_str(item, &format!("element {i}"))?;
        if !s.is_empty() {
            out.push(Value::String(s));
        }
    }
    Ok(Value::Array(out))
}

pub(super) fn fn_one(args: FuncArgs) -> FnResult {
    if args[0].is_null() {
        return Ok(Value::Null);
    }
    let list = want_list(&args[0], "list")?;
    match list.as_slice() {
        [] => Ok(Value::Null),
        [only] => Ok(only.clone()),
        _ => Err(format!(
            "must be a list, set, or tuple value with either zero or one elements, got {}",
            list.len()
        )),
    }
}

/// Adds numbers exactly while they are integers.
fn add_numbers(a: Number, b: Number) -> Result<Number, String> {
    match (num_i128(&a), num_i128(&b)) {
        (Some(x), Some(y)) => x
            .checked_add(y)
            .map(i128_num)
            .ok_or_else(|| "integer overflow".to_string()),
        _ => f64_num(num_f64(&a) + num_f64(&b)),
    }
}

pub(super) fn fn_sum(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    if list.is_empty() {
        return Err("cannot find the sum of an empty list".to_string());
    }
    let mut total = Number::from(0);
    for (i, item) in list.iter().enumerate() {
        total = add_numbers(total, want_num(item, &format!("element {i}"))?)?;
    }
    Ok(Value::Number(total))
}

pub(super) fn fn_alltrue(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    for (i, item) in list.iter().enumerate() {
        if item.is_null() || !want_bool(item, &format!("element {i}"))? {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

pub(super) fn fn_anytrue(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    for (i, item) in list.iter().enumerate() {
        if !item.is_null() && want_bool(item, &format!("element {i}"))? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

pub(super) fn fn_chunklist(args: FuncArgs) -> FnResult {
    let list = want_list(&args[0], "list")?;
    let size = want_int(&args[1], "size")?;
    let size =
        usize::try_from(size).map_err(|_| "the size argument must be positive".to_string())?;
    if list.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(list.clone())]));
    }
    Ok(Value::Array(
        list.chunks(size)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

/// A set as Terraform orders it: duplicates removed; strings, numbers or bools sorted; mixed
/// primitives converted to strings first; collections keep first-occurrence order.
fn normalize_set(items: Vec<Value>) -> Vec<Value> {
    let mut items = distinct_values(items);
    let all = |pred: fn(&Value) -> bool| items.iter().all(pred);
    if all(Value::is_string) {
        items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    } else if all(Value::is_number) {
        items.sort_by(|a, b| {
            let (x, y) = (
                a.as_number().map_or(0.0, num_f64),
                b.as_number().map_or(0.0, num_f64),
            );
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        });
    } else if all(Value::is_boolean) {
        items.sort_by_key(|v| v.as_bool());
    } else if all(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))) {
        let strings: Vec<Value> = items
            .iter()
            .filter_map(|v| want_str(v, "element").ok())
            .map(Value::String)
            .collect();
        return normalize_set(strings);
    }
    items
}

fn set_args(args: &FuncArgs) -> Result<Vec<Vec<Value>>, String> {
    args.iter()
        .enumerate()
        .map(|(i, v)| {
            want_list(v, &format!("argument {}", i + 1)).map(|l| distinct_values(l.iter().cloned()))
        })
        .collect()
}

pub(super) fn fn_toset(args: FuncArgs) -> FnResult {
    if args[0].is_null() {
        return Ok(Value::Null);
    }
    let list = want_list(&args[0], "argument")?;
    Ok(Value::Array(normalize_set(list.clone())))
}

pub(super) fn fn_setunion(args: FuncArgs) -> FnResult {
    let sets = set_args(&args)?;
    Ok(Value::Array(normalize_set(
        sets.into_iter().flatten().collect(),
    )))
}

pub(super) fn fn_setintersection(args: FuncArgs) -> FnResult {
    let mut sets = set_args(&args)?.into_iter();
    let mut acc = sets.next().unwrap_or_default();
    for set in sets {
        acc.retain(|v| set.contains(v));
    }
    Ok(Value::Array(normalize_set(acc)))
}

pub(super) fn fn_setsubtract(args: FuncArgs) -> FnResult {
    let sets = set_args(&args)?;
    let (a, b) = (&sets[0], &sets[1]);
    Ok(Value::Array(normalize_set(
        a.iter().filter(|v| !b.contains(v)).cloned().collect(),
    )))
}

pub(super) fn fn_setproduct(args: FuncArgs) -> FnResult {
    if args.len() < 2 {
        return Err("at least two arguments are required".to_string());
    }
    let sets = set_args(&args)?;
    let total: usize = sets.iter().map(Vec::len).product();
    if total > 100_000 {
        return Err(format!(
            "the product has {total} elements, more than 100000"
        ));
    }
    let mut acc: Vec<Vec<Value>> = vec![Vec::new()];
    for set in &sets {
        let mut next = Vec::with_capacity(acc.len() * set.len());
        for prefix in &acc {
            for item in set {
                let mut row = prefix.clone();
                row.push(item.clone());
                next.push(row);
            }
        }
        acc = next;
    }
    Ok(Value::Array(acc.into_iter().map(Value::Array).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::functions::test_util::*;

    // ----- collections ------------------------------------------------------------------------

    #[test]
    fn length_counts() {
        assert_eq!(ev(r#"length("héllo")"#), Value::from(5));
        assert_eq!(ev("length([1, 2])"), Value::from(2));
        assert_eq!(ev("length(var.tags)"), Value::from(2));
        assert!(!ev("length([])").as_number().unwrap().is_f64());
        assert!(err("length(null)").contains("null"));
        assert!(err("length(1)").contains("got a number"));
    }

    #[test]
    fn list_functions() {
        assert_eq!(j("concat([1], [2, 3], [])"), "[1,2,3]");
        assert_eq!(j(r#"contains(["a", "b"], "b")"#), "true");
        assert_eq!(j(r#"contains(["a", "b"], "z")"#), "false");
        assert_eq!(j(r#"element(["a", "b", "c"], 4)"#), r#""b""#);
        assert!(err("element([], 0)").contains("empty list"));
        assert!(err("element([1], -1)").contains("negative"));
        assert_eq!(j(r#"index(["a", "b"], "b")"#), "1");
        assert!(err(r#"index(["a"], "z")"#).contains("not found"));
        assert_eq!(
            j(r#"flatten([["a", "b"], [], ["c", ["d"]]])"#),
            r#"["a","b","c","d"]"#
        );
        assert_eq!(
            j(r#"distinct(["a", "b", "a", "c", "b"])"#),
            r#"["a","b","c"]"#
        );
        assert_eq!(j("reverse([1, 2, 3])"), "[3,2,1]");
        assert_eq!(j(r#"sort(["e", "d", "a", "x"])"#), r#"["a","d","e","x"]"#);
        assert_eq!(j("sort([3, 11, 2])"), r#"["11","2","3"]"#);
        assert_eq!(j(r#"slice(["a", "b", "c", "d"], 1, 3)"#), r#"["b","c"]"#);
        assert!(err("slice([1], 0, 2)").contains("greater than the length"));
        assert!(err("slice([1, 2], 2, 1)").contains("greater than end_index"));
        assert_eq!(j(r#"compact(["a", "", null, "b"])"#), r#"["a","b"]"#);
        assert_eq!(j("one([])"), "null");
        assert_eq!(j(r#"one(["x"])"#), r#""x""#);
        assert!(err("one([1, 2])").contains("zero or one"));
        assert_eq!(j("chunklist([1, 2, 3, 4, 5], 2)"), "[[1,2],[3,4],[5]]");
        assert_eq!(j("coalescelist([], [1], [2])"), "[1]");
        assert!(err("coalescelist([], [])").contains("no non-null"));
    }

    #[test]
    fn range_semantics() {
        assert_eq!(j("range(3)"), "[0,1,2]");
        assert_eq!(j("range(1, 4)"), "[1,2,3]");
        assert_eq!(j("range(1, 8, 2)"), "[1,3,5,7]");
        assert_eq!(j("range(4, 1)"), "[4,3,2]");
        assert_eq!(j("range(1, 4, -1)"), "[]");
        assert_eq!(j("range(0, 1, 0.25)"), "[0,0.25,0.5,0.75]");
        assert!(err("range(0, 1, 0)").contains("step must not be zero"));
        assert!(err("range(2000)").contains("1024"));
        assert!(!ev("range(2)").as_array().unwrap()[1]
            .as_number()
            .unwrap()
            .is_f64());
    }

    #[test]
    fn map_functions() {
        assert_eq!(
            j(r#"merge({a = "b", c = "d"}, {e = "f", c = "z"}, null)"#),
            r#"{"a":"b","c":"z","e":"f"}"#
        );
        assert!(err(r#"merge({a = 1}, [1])"#).contains("must be a map"));
        assert_eq!(
            j(r#"lookup({a = "ay", b = "bee"}, "a", "what?")"#),
            r#""ay""#
        );
        assert_eq!(j(r#"lookup({a = "ay"}, "c", "what?")"#), r#""what?""#);
        assert!(err(r#"lookup({a = "ay"}, "c")"#).contains("failed to find key \"c\""));
        assert_eq!(j(r#"keys({b = 1, a = 2, c = 3})"#), r#"["a","b","c"]"#);
        assert_eq!(j(r#"values({b = 1, a = 2, c = 3})"#), "[2,1,3]");
        assert_eq!(j(r#"zipmap(["a", "b"], [1, 2])"#), r#"{"a":1,"b":2}"#);
        assert!(err(r#"zipmap(["a"], [1, 2])"#).contains("does not match"));
        assert_eq!(j(r#"coalesce("", null, "b", "c")"#), r#""b""#);
        assert_eq!(j("coalesce(null, 1, 2)"), "1");
        assert!(err(r#"coalesce("", null)"#).contains("no non-null"));
    }
}
