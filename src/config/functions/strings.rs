//! String functions: `upper`, `lower`, `title`, `split`, `join`, `replace`, `regex_replace`,
//! `regex`, `regexall`, `trimspace`, `trim`, `trimprefix`, `trimsuffix`, `chomp`, `indent`,
//! `substr`, `strrev`, `startswith`, `endswith` and `strcontains`, and `format`/`formatlist`
//! with the Go `fmt` verbs they implement (`go_format` and its helpers).

use std::fmt::Write as _;

use hcl::eval::FuncArgs;
use hcl::Value;

use super::args::{
    num_f64, num_i128, number_to_string, parse_number, str_value, type_name, want_bool, want_int,
    want_list, want_str,
};
use super::json_text::json_encode;
use super::FnResult;

// ---------------------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------------------

pub(super) fn fn_upper(args: FuncArgs) -> FnResult {
    Ok(str_value(want_str(&args[0], "str")?.to_uppercase()))
}

pub(super) fn fn_lower(args: FuncArgs) -> FnResult {
    Ok(str_value(want_str(&args[0], "str")?.to_lowercase()))
}

pub(super) fn fn_title(args: FuncArgs) -> FnResult {
    // Go's strings.Title: upper-case the first letter of each word.
    fn is_separator(c: char) -> bool {
        if c.is_ascii() {
            return !(c.is_ascii_alphanumeric() || c == '_');
        }
        if c.is_alphanumeric() {
            return false;
        }
        c.is_whitespace()
    }
    let s = want_str(&args[0], "str")?;
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    Ok(str_value(out))
}

pub(super) fn fn_split(args: FuncArgs) -> FnResult {
    let sep = want_str(&args[0], "separator")?;
    let s = want_str(&args[1], "str")?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| str_value(c.to_string())).collect()
    } else {
        s.split(sep.as_str()).map(str_value).collect()
    };
    Ok(Value::Array(parts))
}

pub(super) fn fn_join(args: FuncArgs) -> FnResult {
    let sep = want_str(&args[0], "separator")?;
    if args.len() < 2 {
        return Err("at least one list is required".to_string());
    }
    let mut parts = Vec::new();
    for (i, list) in args.iter().enumerate().skip(1) {
        let what = format!("argument {}", i + 1);
        for (j, item) in want_list(list, &what)?.iter().enumerate() {
            parts.push(want_str(item, &format!("element {j} of {what}"))?);
        }
    }
    Ok(str_value(parts.join(&sep)))
}

/// Compiles `pattern` (RE2 syntax) with a message naming it on failure.
fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern)
        .map_err(|err| format!("invalid regular expression {pattern:?}: {err}"))
}

pub(super) fn fn_replace(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let search = want_str(&args[1], "substr")?;
    let replacement = want_str(&args[2], "replace")?;
    if search.len() > 1 && search.starts_with('/') && search.ends_with('/') {
        let re = compile_regex(&search[1..search.len() - 1])?;
        return Ok(str_value(re.replace_all(&s, replacement.as_str())));
    }
    if search.is_empty() {
        // Go's strings.Replace with an empty needle inserts at every rune boundary.
        let mut out = replacement.clone();
        for c in s.chars() {
            out.push(c);
            out.push_str(&replacement);
        }
        return Ok(str_value(out));
    }
    Ok(str_value(s.replace(&search, &replacement)))
}

pub(super) fn fn_regex_replace(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let pattern = want_str(&args[1], "substr")?;
    let replacement = want_str(&args[2], "replacement")?;
    let re = compile_regex(&pattern)?;
    Ok(str_value(re.replace_all(&s, replacement.as_str())))
}

/// The shape of `regex`/`regexall` results for `re`.
enum RegexShape {
    Whole,
    List,
    Named(Vec<(usize, String)>),
}

fn regex_shape(re: &regex::Regex) -> Result<RegexShape, String> {
    let groups = re.captures_len() - 1;
    if groups == 0 {
        return Ok(RegexShape::Whole);
    }
    let names: Vec<(usize, String)> = re
        .capture_names()
        .enumerate()
        .skip(1)
        .filter_map(|(i, name)| name.map(|n| (i, n.to_string())))
        .collect();
    if names.is_empty() {
        Ok(RegexShape::List)
    } else if names.len() == groups {
        Ok(RegexShape::Named(names))
    } else {
        Err(
            "invalid regular expression: cannot mix both named and unnamed capture groups"
                .to_string(),
        )
    }
}

fn regex_result(shape: &RegexShape, caps: &regex::Captures) -> Value {
    let group = |i: usize| caps.get(i).map_or(Value::Null, |m| str_value(m.as_str()));
    match shape {
        RegexShape::Whole => group(0),
        RegexShape::List => Value::Array((1..caps.len()).map(group).collect()),
        RegexShape::Named(names) => Value::Object(
            names
                .iter()
                .map(|(i, name)| (name.clone(), group(*i)))
                .collect(),
        ),
    }
}

pub(super) fn fn_regex(args: FuncArgs) -> FnResult {
    let pattern = want_str(&args[0], "pattern")?;
    let s = want_str(&args[1], "str")?;
    let re = compile_regex(&pattern)?;
    let shape = regex_shape(&re)?;
    let caps = re
        .captures(&s)
        .ok_or_else(|| format!("pattern {pattern:?} did not match any part of the given string"))?;
    Ok(regex_result(&shape, &caps))
}

pub(super) fn fn_regexall(args: FuncArgs) -> FnResult {
    let pattern = want_str(&args[0], "pattern")?;
    let s = want_str(&args[1], "str")?;
    let re = compile_regex(&pattern)?;
    let shape = regex_shape(&re)?;
    Ok(Value::Array(
        re.captures_iter(&s)
            .map(|caps| regex_result(&shape, &caps))
            .collect(),
    ))
}

pub(super) fn fn_trimspace(args: FuncArgs) -> FnResult {
    Ok(str_value(want_str(&args[0], "str")?.trim()))
}

pub(super) fn fn_trim(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let cutset: Vec<char> = want_str(&args[1], "cutset")?.chars().collect();
    Ok(str_value(s.trim_matches(|c| cutset.contains(&c))))
}

pub(super) fn fn_trimprefix(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let prefix = want_str(&args[1], "prefix")?;
    Ok(str_value(s.strip_prefix(prefix.as_str()).unwrap_or(&s)))
}

pub(super) fn fn_trimsuffix(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let suffix = want_str(&args[1], "suffix")?;
    Ok(str_value(s.strip_suffix(suffix.as_str()).unwrap_or(&s)))
}

pub(super) fn fn_chomp(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    Ok(str_value(s.trim_end_matches(['\r', '\n'])))
}

pub(super) fn fn_indent(args: FuncArgs) -> FnResult {
    let spaces = want_int(&args[0], "spaces")?;
    let s = want_str(&args[1], "str")?;
    let spaces = usize::try_from(spaces)
        .ok()
        .filter(|n| *n <= 1024)
        .ok_or_else(|| format!("spaces must be between 0 and 1024, got {spaces}"))?;
    let pad = format!("\n{}", " ".repeat(spaces));
    Ok(str_value(s.replace('\n', &pad)))
}

pub(super) fn fn_substr(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let offset = want_int(&args[1], "offset")?;
    let length = want_int(&args[2], "length")?;
    let chars: Vec<char> = s.chars().collect();
    let total = i64::try_from(chars.len()).unwrap_or(i64::MAX);
    let start = if offset < 0 {
        (total.saturating_add(offset)).max(0)
    } else {
        offset
    };
    if start >= total {
        return Ok(str_value(""));
    }
    let end = if length < 0 {
        total
    } else {
        start.saturating_add(length).min(total)
    };
    let (start, end) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    Ok(str_value(
        chars[start..end.max(start)].iter().collect::<String>(),
    ))
}

pub(super) fn fn_strrev(args: FuncArgs) -> FnResult {
    Ok(str_value(
        want_str(&args[0], "str")?.chars().rev().collect::<String>(),
    ))
}

pub(super) fn fn_startswith(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let prefix = want_str(&args[1], "prefix")?;
    Ok(Value::Bool(s.starts_with(&prefix)))
}

pub(super) fn fn_endswith(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let suffix = want_str(&args[1], "suffix")?;
    Ok(Value::Bool(s.ends_with(&suffix)))
}

pub(super) fn fn_strcontains(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "str")?;
    let sub = want_str(&args[1], "substr")?;
    Ok(Value::Bool(s.contains(&sub)))
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{feff}' => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default, Clone, Copy)]
struct FmtFlags {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
}

/// Go's `%e` exponent style: at least two digits, always signed.
fn go_exp(formatted: &str, upper: bool) -> String {
    match formatted.split_once('e') {
        Some((mantissa, exp)) => {
            let exp: i32 = exp.parse().unwrap_or(0);
            let sign = if exp < 0 { '-' } else { '+' };
            let e = if upper { 'E' } else { 'e' };
            format!("{mantissa}{e}{sign}{:02}", exp.unsigned_abs())
        }
        None => formatted.to_string(),
    }
}

fn go_float(verb: char, f: f64, prec: Option<usize>) -> String {
    match verb {
        'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), f),
        'e' | 'E' => go_exp(&format!("{:.*e}", prec.unwrap_or(6), f), verb == 'E'),
        _ => {
            // %g: shortest representation, exponent form for large/small exponents.
            let upper = verb == 'G';
            let (digits_form, limit) = match prec {
                None => (format!("{f:e}"), 6),
                Some(p) => {
                    let p = p.max(1);
                    (format!("{:.*e}", p - 1, f), p)
                }
            };
            let exp: i64 = digits_form
                .split_once('e')
                .and_then(|(_, e)| e.parse().ok())
                .unwrap_or(0);
            let limit = i64::try_from(limit).unwrap_or(21);
            if exp < -4 || exp >= limit {
                let (mantissa, _) = digits_form.split_once('e').unwrap_or((&digits_form, ""));
                let mantissa = if mantissa.contains('.') {
                    mantissa.trim_end_matches('0').trim_end_matches('.')
                } else {
                    mantissa
                };
                go_exp(&format!("{mantissa}e{exp}"), upper)
            } else {
                match prec {
                    None => format!("{f}"),
                    Some(p) => {
                        let decimals = usize::try_from(
                            (i64::try_from(p.max(1)).unwrap_or(1) - 1 - exp).max(0),
                        )
                        .unwrap_or(0);
                        let s = format!("{f:.decimals$}");
                        if s.contains('.') {
                            s.trim_end_matches('0').trim_end_matches('.').to_string()
                        } else {
                            s
                        }
                    }
                }
            }
        }
    }
}

fn format_integer(verb: char, i: i128, flags: FmtFlags) -> String {
    let digits = match verb {
        'b' => format!("{:b}", i.unsigned_abs()),
        'o' => format!("{:o}", i.unsigned_abs()),
        'x' => format!("{:x}", i.unsigned_abs()),
        'X' => format!("{:X}", i.unsigned_abs()),
        _ => i.unsigned_abs().to_string(),
    };
    let prefix = match (verb, flags.sharp) {
        ('b', true) => "0b",
        ('o', true) => "0",
        ('x', true) => "0x",
        ('X', true) => "0X",
        _ => "",
    };
    let sign = if i < 0 {
        "-"
    } else if flags.plus {
        "+"
    } else if flags.space {
        " "
    } else {
        ""
    };
    format!("{sign}{prefix}{digits}")
}

/// Formats one argument for one verb.
fn format_one(
    verb: char,
    flags: FmtFlags,
    prec: Option<usize>,
    arg: &Value,
) -> Result<String, String> {
    if arg.is_null() {
        return Err(format!(
            "unsupported value for \"%{verb}\": null value cannot be formatted"
        ));
    }
    let unsupported = || {
        format!(
            "unsupported value for \"%{verb}\": a {} cannot be formatted this way",
            type_name(arg)
        )
    };
    Ok(match verb {
        'v' => {
            if flags.sharp {
                json_encode(arg)
            } else {
                match arg {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => number_to_string(n),
                    Value::Bool(b) => b.to_string(),
                    other => json_encode(other),
                }
            }
        }
        's' | 'q' => {
            let s = match arg {
                Value::Array(_) | Value::Object(_) => return Err(unsupported()),
                other => want_str(other, "argument")?,
            };
            let s = match prec {
                Some(p) => s.chars().take(p).collect(),
                None => s,
            };
            if verb == 'q' {
                go_quote(&s)
            } else {
                s
            }
        }
        't' => want_bool(arg, "argument")
            .map_err(|_| unsupported())?
            .to_string(),
        'd' | 'b' | 'o' | 'x' | 'X' => {
            let n = match arg {
                Value::Number(n) => *n,
                Value::String(s) => parse_number(s).ok_or_else(unsupported)?,
                _ => return Err(unsupported()),
            };
            let i = num_i128(&n).ok_or_else(|| {
                format!("unsupported value for \"%{verb}\": {n} has a fractional part")
            })?;
            format_integer(verb, i, flags)
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
            let n = match arg {
                Value::Number(n) => *n,
                Value::String(s) => parse_number(s).ok_or_else(unsupported)?,
                _ => return Err(unsupported()),
            };
            let f = num_f64(&n);
            let body = go_float(verb, f, prec);
            if f >= 0.0 && flags.plus {
                format!("+{body}")
            } else if f >= 0.0 && flags.space {
                format!(" {body}")
            } else {
                body
            }
        }
        other => return Err(format!("unsupported format verb %{other}")),
    })
}

fn pad_formatted(s: String, width: Option<usize>, flags: FmtFlags, numeric: bool) -> String {
    let Some(width) = width else { return s };
    let len = s.chars().count();
    if len >= width {
        return s;
    }
    let fill = width - len;
    if flags.minus {
        format!("{s}{}", " ".repeat(fill))
    } else if flags.zero && numeric {
        let sign_len = usize::from(s.starts_with(['-', '+', ' ']));
        format!("{}{}{}", &s[..sign_len], "0".repeat(fill), &s[sign_len..])
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

/// Terraform's `format`: Go's fmt verbs `%v %#v %s %q %d %b %o %x %X %e %E %f %F %g %G %t %%`
/// with flags `- + # space 0`, width, precision and explicit argument indexes `%[n]d`.
fn go_format(spec: &str, args: &[Value]) -> Result<String, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut next_arg = 0usize;
    let mut reordered = false;
    let mut i = 0;
    let read_number = |i: &mut usize| -> Option<usize> {
        let start = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        if *i == start {
            None
        } else {
            chars[start..*i]
                .iter()
                .collect::<String>()
                .parse()
                .ok()
                .map(|n: usize| n.min(1 << 16))
        }
    };
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.get(i) == Some(&'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let mut flags = FmtFlags::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '-' => flags.minus = true,
                '+' => flags.plus = true,
                '#' => flags.sharp = true,
                ' ' => flags.space = true,
                '0' => flags.zero = true,
                _ => break,
            }
            i += 1;
        }
        let mut read_index = |i: &mut usize, next_arg: &mut usize| -> Result<(), String> {
            if chars.get(*i) == Some(&'[') {
                *i += 1;
                let n = read_number(i).ok_or("invalid argument index in format string")?;
                if chars.get(*i) != Some(&']') || n == 0 {
                    return Err("invalid argument index in format string".to_string());
                }
                *i += 1;
                *next_arg = n - 1;
                reordered = true;
            }
            Ok(())
        };
        read_index(&mut i, &mut next_arg)?;
        let width = read_number(&mut i);
        let mut prec = None;
        if chars.get(i) == Some(&'.') {
            i += 1;
            prec = Some(read_number(&mut i).unwrap_or(0));
        }
        read_index(&mut i, &mut next_arg)?;
        let verb = *chars
            .get(i)
            .ok_or("format string ends with an incomplete verb")?;
        i += 1;
        let arg = args.get(next_arg).ok_or_else(|| {
            format!(
                "not enough arguments for \"%{verb}\": need argument {} but have {}",
                next_arg + 1,
                args.len()
            )
        })?;
        next_arg += 1;
        let numeric = matches!(
            verb,
            'd' | 'b' | 'o' | 'x' | 'X' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G'
        );
        let formatted = format_one(verb, flags, prec, arg)
            .map_err(|err| format!("{err} (argument {next_arg})"))?;
        out.push_str(&pad_formatted(formatted, width, flags, numeric));
    }
    if !reordered && next_arg < args.len() {
        return Err(format!(
            "too many arguments; only {next_arg} used by format string"
        ));
    }
    Ok(out)
}

pub(super) fn fn_format(args: FuncArgs) -> FnResult {
    let spec = want_str(&args[0], "format")?;
    go_format(&spec, &args[1..]).map(Value::String)
}

pub(super) fn fn_formatlist(args: FuncArgs) -> FnResult {
    let spec = want_str(&args[0], "format")?;
    let rest = &args[1..];
    let mut len: Option<(usize, usize)> = None;
    for (i, arg) in rest.iter().enumerate() {
        if let Value::Array(items) = arg {
            match len {
                None => len = Some((items.len(), i)),
                Some((n, j)) if n != items.len() => {
                    return Err(format!(
                        "argument {} has length {}, which is inconsistent with argument {} \
                         of length {n}",
                        i + 2,
                        items.len(),
                        j + 2
                    ))
                }
                Some(_) => {}
            }
        }
    }
    let count = len.map_or(1, |(n, _)| n);
    let mut out = Vec::with_capacity(count);
    for k in 0..count {
        let row: Vec<Value> = rest
            .iter()
            .map(|arg| match arg {
                Value::Array(items) => items[k].clone(),
                other => other.clone(),
            })
            .collect();
        out.push(Value::String(
            go_format(&spec, &row).map_err(|err| format!("error on iteration {k}: {err}"))?,
        ));
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use crate::config::functions::test_util::*;

    // ----- strings ----------------------------------------------------------------------------

    #[test]
    fn string_functions() {
        assert_eq!(j(r#"upper("abc")"#), r#""ABC""#);
        assert_eq!(j(r#"lower("ABC")"#), r#""abc""#);
        assert_eq!(
            j(r#"title("hello world-foo_bar")"#),
            r#""Hello World-Foo_bar""#
        );
        assert_eq!(j(r#"split(",", "a,b,,c")"#), r#"["a","b","","c"]"#);
        assert_eq!(j(r#"split(",", "")"#), r#"[""]"#);
        assert_eq!(j(r#"join(", ", ["a", "b"], ["c"])"#), r#""a, b, c""#);
        assert_eq!(j(r#"join("-", [1, true])"#), r#""1-true""#);
        assert!(err(r#"join("-", [null])"#).contains("null"));
        assert_eq!(j(r#"trimspace("  a b \n")"#), r#""a b""#);
        assert_eq!(j(r#"trim("?!hello?!", "!?")"#), r#""hello""#);
        assert_eq!(j(r#"trimprefix("helloworld", "hello")"#), r#""world""#);
        assert_eq!(j(r#"trimsuffix("helloworld", "world")"#), r#""hello""#);
        assert_eq!(j(r#"chomp("hello\n\r\n")"#), r#""hello""#);
        assert_eq!(j(r#"indent(2, "a\nb\n")"#), r#""a\n  b\n  ""#);
        assert_eq!(j(r#"strrev("héllo")"#), r#""olléh""#);
        assert_eq!(j(r#"startswith("hello", "he")"#), "true");
        assert_eq!(j(r#"endswith("hello", "he")"#), "false");
        assert_eq!(j(r#"strcontains("hello", "ll")"#), "true");
    }

    #[test]
    fn substr_semantics() {
        assert_eq!(j(r#"substr("hello world", 1, 4)"#), r#""ello""#);
        assert_eq!(j(r#"substr("🤔🤷", 0, 1)"#), r#""🤔""#);
        assert_eq!(j(r#"substr("hello world", -5, -1)"#), r#""world""#);
        assert_eq!(j(r#"substr("hello", 0, 100)"#), r#""hello""#);
        assert_eq!(j(r#"substr("hello", 10, 2)"#), r#""""#);
        assert_eq!(j(r#"substr("hello", -10, 2)"#), r#""he""#);
    }

    #[test]
    fn replace_and_regexes() {
        assert_eq!(j(r#"replace("1 + 2 + 3", "+", "-")"#), r#""1 - 2 - 3""#);
        assert_eq!(
            j(r#"replace("hello world", "/w.*d/", "everybody")"#),
            r#""hello everybody""#
        );
        assert_eq!(
            j(r#"replace("ab-cd", "/(\\w+)-(\\w+)/", "$2-$1")"#),
            r#""cd-ab""#
        );
        assert_eq!(
            j(r#"regex_replace("2024-01-02", "(\\d+)-(\\d+)-(\\d+)", "$3/$2/$1")"#),
            r#""02/01/2024""#
        );
        assert_eq!(
            j(r#"regex("[a-z]+", "53453453.345345aaabbbccc23454")"#),
            r#""aaabbbccc""#
        );
        assert_eq!(
            j(r#"regex("(\\d\\d\\d\\d)-(\\d\\d)-(\\d\\d)", "2019-02-01")"#),
            r#"["2019","02","01"]"#
        );
        assert_eq!(
            j(r#"regex("^(?P<scheme>[a-z]+)://(?P<host>[^/]+)", "https://example.com/x")"#),
            r#"{"host":"example.com","scheme":"https"}"#
        );
        assert_eq!(j(r#"regex("(a)|(b)", "b")"#), r#"[null,"b"]"#);
        assert!(err(r#"regex("z", "abc")"#).contains("did not match"));
        assert!(err(r#"regex("(?P<x>a)(b)", "ab")"#).contains("cannot mix"));
        assert!(err(r#"regex("(", "ab")"#).contains("invalid regular expression"));
        assert_eq!(
            j(r#"regexall("[a-z]+", "1234abcd5678efgh9")"#),
            r#"["abcd","efgh"]"#
        );
        assert_eq!(j(r#"length(regexall("[a-z]+", "1234"))"#), "0");
    }

    #[test]
    fn format_verbs() {
        assert_eq!(j(r#"format("Hello, %s!", "Ander")"#), r#""Hello, Ander!""#);
        assert_eq!(
            j(r#"format("There are %d lights", 4)"#),
            r#""There are 4 lights""#
        );
        assert_eq!(
            j(r#"format("%v|%v|%v|%v", "s", 1.5, true, [1, "a"])"#),
            r#""s|1.5|true|[1,\"a\"]""#
        );
        assert_eq!(j(r#"format("%#v", "s")"#), r#""\"s\"""#);
        assert_eq!(j(r#"format("%q", "a\"b")"#), r#""\"a\\\"b\"""#);
        assert_eq!(
            j(r#"format("%.2f|%5.1f|%-5d|%05d|%+d", 3.14159, 2.25, 42, -42, 7)"#),
            r#""3.14|  2.2|42   |-0042|+7""#
        );
        assert_eq!(j(r#"format("%t %%", true)"#), r#""true %""#);
        assert_eq!(
            j(r#"format("%x %X %o %b", 255, 255, 8, 5)"#),
            r#""ff FF 10 101""#
        );
        assert_eq!(j(r#"format("%e", 123456.789)"#), r#""1.234568e+05""#);
        assert_eq!(j(r#"format("%g %g", 0.5, 100000)"#), r#""0.5 100000""#);
        assert_eq!(
            j(r#"format("%g|%.3g|%G", 1234567, 3.14159, 1e-10)"#),
            r#""1.234567e+06|3.14|1E-10""#
        );
        assert_eq!(j(r#"format("%[2]s %[1]s", "a", "b")"#), r#""b a""#);
        assert_eq!(j(r#"format("%.3s", "abcdef")"#), r#""abc""#);
        assert_eq!(
            j(r#"format("%6s|%-6s|", "ab", "cd")"#),
            r#""    ab|cd    |""#
        );
        assert!(err(r#"format("%d", 1.5)"#).contains("fractional"));
        assert!(err(r#"format("%s %s", "a")"#).contains("not enough arguments"));
        assert!(err(r#"format("%s", "a", "b")"#).contains("too many arguments"));
        assert!(err(r#"format("%s", null)"#).contains("null"));
        assert!(err(r#"format("%y", 1)"#).contains("unsupported format verb"));
        assert!(err(r#"format("%", 1)"#).contains("incomplete verb"));
    }

    #[test]
    fn formatlist_iterates_lists() {
        assert_eq!(
            j(r#"formatlist("Hello, %s!", ["Valentina", "Ander"])"#),
            r#"["Hello, Valentina!","Hello, Ander!"]"#
        );
        assert_eq!(
            j(r#"formatlist("%s, %s!", "Salutations", ["Valentina", "Ander"])"#),
            r#"["Salutations, Valentina!","Salutations, Ander!"]"#
        );
        assert_eq!(j(r#"formatlist("%s", "x")"#), r#"["x"]"#);
        assert_eq!(j(r#"formatlist("%s", [])"#), "[]");
        assert!(err(r#"formatlist("%s%s", ["a"], ["b", "c"])"#).contains("inconsistent"));
    }
}
