//! Number functions: `abs`, `ceil`, `floor`, `log`, `pow`, `signum`, `parseint`, `max` and
//! `min`. Integers stay integers: a float only comes out when the result has a fraction.

use hcl::eval::FuncArgs;
use hcl::{Number, Value};

use super::args::{f64_num, i128_num, num_f64, num_i128, want_int, want_num, want_str};
use super::FnResult;

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

pub(super) fn fn_abs(args: FuncArgs) -> FnResult {
    let n = want_num(&args[0], "num")?;
    Ok(Value::Number(match num_i128(&n) {
        Some(i) => i128_num(i.abs()),
        None => f64_num(num_f64(&n).abs())?,
    }))
}

pub(super) fn fn_ceil(args: FuncArgs) -> FnResult {
    let n = want_num(&args[0], "num")?;
    Ok(Value::Number(if n.is_f64() {
        f64_num(num_f64(&n).ceil())?
    } else {
        n
    }))
}

pub(super) fn fn_floor(args: FuncArgs) -> FnResult {
    let n = want_num(&args[0], "num")?;
    Ok(Value::Number(if n.is_f64() {
        f64_num(num_f64(&n).floor())?
    } else {
        n
    }))
}

pub(super) fn fn_log(args: FuncArgs) -> FnResult {
    let n = num_f64(&want_num(&args[0], "num")?);
    let base = num_f64(&want_num(&args[1], "base")?);
    f64_num(n.ln() / base.ln()).map(Value::Number)
}

pub(super) fn fn_pow(args: FuncArgs) -> FnResult {
    let base = want_num(&args[0], "num")?;
    let exp = want_num(&args[1], "power")?;
    if let (Some(b), Some(e)) = (num_i128(&base), num_i128(&exp)) {
        if let Ok(e) = u32::try_from(e) {
            if let Some(r) = b.checked_pow(e) {
                return Ok(Value::Number(i128_num(r)));
            }
        }
    }
    f64_num(num_f64(&base).powf(num_f64(&exp))).map(Value::Number)
}

pub(super) fn fn_signum(args: FuncArgs) -> FnResult {
    let n = num_f64(&want_num(&args[0], "num")?);
    let s: i64 = if n > 0.0 {
        1
    } else if n < 0.0 {
        -1
    } else {
        0
    };
    Ok(Value::Number(Number::from(s)))
}

pub(super) fn fn_parseint(args: FuncArgs) -> FnResult {
    let s = want_str(&args[0], "number")?;
    let base = want_int(&args[1], "base")?;
    let base = u32::try_from(base)
        .ok()
        .filter(|b| (2..=36).contains(b))
        .ok_or_else(|| format!("base must be a whole number between 2 and 36, got {base}"))?;
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    let magnitude = u128::from_str_radix(digits, base)
        .ok()
        .filter(|_| !digits.starts_with(['+', '-']))
        .ok_or_else(|| format!("cannot parse {s:?} as a base {base} integer"))?;
    let value = i128::try_from(magnitude)
        .ok()
        .map(|m| if neg { -m } else { m })
        .filter(|v| i64::try_from(*v).is_ok() || u64::try_from(*v).is_ok())
        .ok_or_else(|| format!("{s:?} is out of range"))?;
    Ok(Value::Number(i128_num(value)))
}

fn extreme(args: &FuncArgs, want_max: bool) -> FnResult {
    let mut best: Option<Number> = None;
    for (i, arg) in args.iter().enumerate() {
        let n = want_num(arg, &format!("argument {}", i + 1))?;
        best = Some(match best {
            None => n,
            Some(b) => {
                let better = if want_max { n > b } else { n < b };
                if better {
                    n
                } else {
                    b
                }
            }
        });
    }
    best.map(Value::Number)
        .ok_or_else(|| "must provide at least one number".to_string())
}

pub(super) fn fn_max(args: FuncArgs) -> FnResult {
    extreme(&args, true)
}

pub(super) fn fn_min(args: FuncArgs) -> FnResult {
    extreme(&args, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::functions::test_util::*;

    #[test]
    fn number_functions_keep_integers() {
        assert_eq!(ev("sum([1, 2, 3])"), Value::from(6));
        assert_eq!(j("sum([1, 2.5])"), "3.5");
        assert!(err("sum([])").contains("empty"));
        assert_eq!(ev("max(12, 54, 3)"), Value::from(54));
        assert_eq!(ev("min(12, 54, 3)"), Value::from(3));
        assert_eq!(j("max(1.5, 1)"), "1.5");
        assert!(err("max()").contains("at least one"));
        assert_eq!(ev("abs(-12)"), Value::from(12));
        assert_eq!(j("abs(-12.5)"), "12.5");
        assert_eq!(ev("ceil(4.1)"), Value::from(5));
        assert_eq!(ev("floor(4.9)"), Value::from(4));
        assert_eq!(ev("floor(-4.1)"), Value::from(-5));
        assert_eq!(ev("ceil(5)"), Value::from(5));
        assert_eq!(ev("pow(3, 2)"), Value::from(9));
        assert_eq!(j("pow(4, 0.5)"), "2");
        assert_eq!(ev("signum(-13)"), Value::from(-1));
        assert_eq!(ev("log(16, 2)"), Value::from(4));
        assert_eq!(ev(r#"parseint("FF", 16)"#), Value::from(255));
        assert_eq!(ev(r#"parseint("-101", 2)"#), Value::from(-5));
        assert!(err(r#"parseint("12", 1)"#).contains("between 2 and 36"));
        assert!(err(r#"parseint("zz", 10)"#).contains("cannot parse"));
        assert_eq!(ev(r#"alltrue([true, "true"])"#), Value::Bool(true));
        assert_eq!(ev("alltrue([])"), Value::Bool(true));
        assert_eq!(ev("alltrue([true, null])"), Value::Bool(false));
        assert_eq!(ev("anytrue([false, null, true])"), Value::Bool(true));
        assert_eq!(ev("anytrue([])"), Value::Bool(false));
    }
}
