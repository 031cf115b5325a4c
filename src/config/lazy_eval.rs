//! The lazy expression evaluator: [`evaluate`], a drop-in replacement for
//! `hcl::eval::Evaluate::evaluate` on expressions that evaluates `try(...)` and `can(...)`
//! lazily and never panics on arithmetic, and the template walker (`eval_template`) that
//! `templatefile` renders with.
//!
//! Callers use it as `config::functions::evaluate` (re-exported there). Functions are whatever
//! the context declares (normally [`declare_functions`](super::functions::declare_functions));
//! the number helpers and `type_name` are shared with the function library.
//!
//! Invariants:
//! - Subtrees with no `try`/`can` call, no arithmetic and no string template are evaluated by
//!   hcl-rs unchanged, so their results and error messages are hcl-rs's.
//! - A list or object interpolated into a string template is an error (as in Terraform), not
//!   its JSON text; a lone `"${...}"` still yields its value unconverted.
//! - No panic on arithmetic: overflow, division and modulo by zero are errors.

use hcl::eval::{Context, ErrorKind, Evaluate};
use hcl::expr::{
    BinaryOp, BinaryOperator, Conditional, ForExpr, FuncCall, FuncName, ObjectKey, Operation,
    TemplateExpr, Traversal, TraversalOperator, UnaryOp, UnaryOperator,
};
use hcl::template::{Directive, Element, ForDirective, IfDirective, Strip};
use hcl::{Expression, Map, Number, Template, Value};

use super::functions::args::{f64_num, i128_num, num_f64, num_i128, type_name};

// ---------------------------------------------------------------------------------------------
// Lazy evaluation
// ---------------------------------------------------------------------------------------------

/// Evaluates an expression like `hcl::eval::Evaluate::evaluate`, but with lazy `try(...)` and
/// `can(...)`, and without hcl-rs's arithmetic panics.
///
/// hcl-rs evaluates all function arguments before calling a function, so `try(var.x.missing,
/// "default")` would fail. Subtrees that contain no `try`/`can` call and no arithmetic are
/// handed to hcl-rs unchanged (so its error messages stay as they are); the others are walked
/// here, with the same semantics as hcl-rs:
/// - `try(a, b, ...)` evaluates its arguments in order and returns the first that succeeds, or
///   fails with "no expression succeeded" listing each argument's error;
/// - `can(x)` is `true` when `x` evaluates without error, else `false`;
/// - conditionals evaluate only the branch taken, so a `try` in the other branch never runs;
/// - `+ - * / %` and unary `-` are computed here with overflow and division-by-zero errors
///   (hcl-rs panics on `1 % 0` and on integer overflow in debug builds);
/// - `for` expressions and `%{ for }` template directives whose body needs this treatment are
///   iterated here, with the iteration variables declared in a clone of `ctx` (one clone per
///   `for`), so `try`/`can` in a body may refer to the iteration variables. The one cost is
///   that clone.
///
/// Errors raised by this walker itself (a non-boolean condition, an operator applied to the
/// wrong types) are `ErrorKind::Message` with the offending expression appended; errors from
/// hcl-rs keep their kind. A function call with a walked argument is evaluated by hcl-rs with
/// its arguments replaced by their values, so its error shows those values.
pub fn evaluate(expr: &Expression, ctx: &Context) -> Result<Value, hcl::eval::Error> {
    eval_expr(expr, ctx)
}

type EvalResult<T> = Result<T, hcl::eval::Error>;

fn eval_error(msg: impl Into<String>) -> hcl::eval::Error {
    hcl::eval::Error::from(ErrorKind::Message(msg.into()))
}

fn eval_error_in(kind: ErrorKind, expr: &Expression) -> hcl::eval::Error {
    eval_error(format!("{kind} in expression `{}`", expr_display(expr)))
}

fn expr_display(expr: &Expression) -> String {
    hcl::format::to_string(expr).unwrap_or_else(|_| format!("{expr:?}"))
}

fn is_lazy_call(call: &FuncCall, name: &str) -> bool {
    call.name.namespace.is_empty() && call.name.name.as_str() == name
}

/// Whether `expr` must be walked by [`eval_expr`] rather than handed to hcl-rs.
fn needs_walk(expr: &Expression) -> bool {
    match expr {
        Expression::FuncCall(call) => {
            is_lazy_call(call, "try")
                || is_lazy_call(call, "can")
                || call.args.iter().any(needs_walk)
        }
        Expression::Array(items) => items.iter().any(needs_walk),
        Expression::Object(object) => object.iter().any(|(key, value)| {
            matches!(key, ObjectKey::Expression(k) if needs_walk(k)) || needs_walk(value)
        }),
        Expression::TemplateExpr(template) => template_expr_needs_walk(template),
        Expression::Traversal(traversal) => {
            needs_walk(&traversal.expr)
                || traversal.operators.iter().any(|op| match op {
                    TraversalOperator::Index(index) => needs_walk(index),
                    _ => false,
                })
        }
        Expression::Parenthesis(inner) => needs_walk(inner),
        Expression::Conditional(cond) => {
            needs_walk(&cond.cond_expr)
                || needs_walk(&cond.true_expr)
                || needs_walk(&cond.false_expr)
        }
        Expression::Operation(op) => match op.as_ref() {
            Operation::Unary(unary) => {
                unary.operator == UnaryOperator::Neg || needs_walk(&unary.expr)
            }
            Operation::Binary(binary) => {
                matches!(
                    binary.operator,
                    BinaryOperator::Plus
                        | BinaryOperator::Minus
                        | BinaryOperator::Mul
                        | BinaryOperator::Div
                        | BinaryOperator::Mod
                ) || needs_walk(&binary.lhs_expr)
                    || needs_walk(&binary.rhs_expr)
            }
        },
        Expression::ForExpr(for_expr) => {
            needs_walk(&for_expr.collection_expr)
                || needs_walk(&for_expr.value_expr)
                || for_expr.key_expr.as_ref().is_some_and(needs_walk)
                || for_expr.cond_expr.as_ref().is_some_and(needs_walk)
        }
        _ => false,
    }
}

fn template_expr_needs_walk(template: &TemplateExpr) -> bool {
    let raw = template.to_string();
    if !raw.contains("${") && !raw.contains("%{") {
        return false;
    }
    match Template::from_expr(template) {
        // A template that builds a string is walked so that a list or an
        // object interpolated into it is an error (hcl-rs would print it
        // as JSON); a lone `${...}` yields its value unconverted.
        Ok(parsed) => {
            !matches!(parsed.elements(), [Element::Interpolation(_)])
                || template_needs_walk(&parsed)
        }
        // Let hcl-rs report the parse error.
        Err(_) => false,
    }
}

fn template_needs_walk(template: &Template) -> bool {
    template.elements().iter().any(|element| match element {
        Element::Literal(_) => false,
        Element::Interpolation(interp) => needs_walk(&interp.expr),
        Element::Directive(directive) => match directive.as_ref() {
            Directive::If(dir) => {
                needs_walk(&dir.cond_expr)
                    || template_needs_walk(&dir.true_template)
                    || dir.false_template.as_ref().is_some_and(template_needs_walk)
            }
            Directive::For(dir) => {
                needs_walk(&dir.collection_expr) || template_needs_walk(&dir.template)
            }
        },
    })
}

fn eval_expr(expr: &Expression, ctx: &Context) -> EvalResult<Value> {
    if !needs_walk(expr) {
        return expr.evaluate(ctx);
    }
    match expr {
        Expression::FuncCall(call) if is_lazy_call(call, "try") => eval_try(call, ctx),
        Expression::FuncCall(call) if is_lazy_call(call, "can") => eval_can(call, ctx),
        Expression::FuncCall(call) => eval_call(call, ctx),
        Expression::Array(items) => items
            .iter()
            .map(|item| eval_expr(item, ctx))
            .collect::<EvalResult<Vec<_>>>()
            .map(Value::Array),
        Expression::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object.iter() {
                let key = match key {
                    ObjectKey::Identifier(ident) => ident.to_string(),
                    ObjectKey::Expression(key_expr) => eval_object_key(key_expr, ctx)?,
                    other => other
                        .clone()
                        .evaluate(ctx)
                        .map_err(|err| eval_error(err.to_string()))?,
                };
                out.insert(key, eval_expr(value, ctx)?);
            }
            Ok(Value::Object(out))
        }
        Expression::TemplateExpr(template) => eval_template_expr(template, ctx),
        Expression::Traversal(traversal) => eval_traversal(traversal, ctx),
        Expression::Parenthesis(inner) => eval_expr(inner, ctx),
        Expression::Conditional(cond) => eval_conditional(cond, ctx),
        Expression::Operation(op) => match op.as_ref() {
            Operation::Unary(unary) => eval_unary(unary, ctx, expr),
            Operation::Binary(binary) => eval_binary(binary, ctx, expr),
        },
        Expression::ForExpr(for_expr) => eval_for_expr(for_expr, ctx),
        other => other.evaluate(ctx),
    }
}

fn eval_try(call: &FuncCall, ctx: &Context) -> EvalResult<Value> {
    let fail = |msg: String| hcl::eval::Error::from(ErrorKind::FuncCall(FuncName::new("try"), msg));
    if call.args.is_empty() {
        return Err(fail("at least one argument is required".to_string()));
    }
    let mut errors = Vec::new();
    let last = call.args.len() - 1;
    for (i, arg) in call.args.iter().enumerate() {
        let result = eval_expr(arg, ctx);
        if call.expand_final && i == last {
            match result {
                Ok(Value::Array(items)) => match items.into_iter().next() {
                    Some(first) => return Ok(first),
                    None => errors.push("the expanded final argument is an empty list".to_string()),
                },
                Ok(other) => errors.push(format!(
                    "the expanded final argument must be a list, got a {}",
                    type_name(&other)
                )),
                Err(err) => errors.push(err.to_string()),
            }
            continue;
        }
        match result {
            Ok(value) => return Ok(value),
            Err(err) => errors.push(err.to_string()),
        }
    }
    let mut msg = String::from("no expression succeeded:");
    for err in errors {
        msg.push_str("\n- ");
        msg.push_str(&err);
    }
    msg.push_str("\nAt least one expression must produce a successful result");
    Err(fail(msg))
}

fn eval_can(call: &FuncCall, ctx: &Context) -> EvalResult<Value> {
    if call.args.len() != 1 || call.expand_final {
        return Err(hcl::eval::Error::from(ErrorKind::FuncCall(
            FuncName::new("can"),
            format!("expected exactly one argument, got {}", call.args.len()),
        )));
    }
    Ok(Value::Bool(eval_expr(&call.args[0], ctx).is_ok()))
}

/// Evaluates the walked arguments here and hands the call to hcl-rs with those arguments
/// replaced by their values; the other arguments stay as written (so hcl-rs evaluates them and
/// its error messages show them as written).
fn eval_call(call: &FuncCall, ctx: &Context) -> EvalResult<Value> {
    let mut args = Vec::with_capacity(call.args.len());
    let mut expand_final = call.expand_final;
    let last = call.args.len().saturating_sub(1);
    for (i, arg) in call.args.iter().enumerate() {
        if !needs_walk(arg) {
            args.push(arg.clone());
            continue;
        }
        let value = eval_expr(arg, ctx)?;
        if call.expand_final && i == last {
            match value {
                Value::Array(items) => args.extend(items.into_iter().map(Expression::from)),
                other => {
                    return Err(eval_error(format!(
                        "unexpected value `{other}`, expected an array (the final argument of \
                         `{}(...)` is expanded)",
                        call.name
                    )))
                }
            }
            expand_final = false;
        } else {
            args.push(Expression::from(value));
        }
    }
    let call = FuncCall {
        name: call.name.clone(),
        args,
        expand_final,
    };
    Expression::FuncCall(Box::new(call)).evaluate(ctx)
}

fn eval_object_key(expr: &Expression, ctx: &Context) -> EvalResult<String> {
    match eval_expr(expr, ctx)? {
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(eval_error_in(
            ErrorKind::Unexpected(other, "a string, boolean or number"),
            expr,
        )),
    }
}

fn eval_bool(expr: &Expression, ctx: &Context) -> EvalResult<bool> {
    match eval_expr(expr, ctx)? {
        Value::Bool(b) => Ok(b),
        other => Err(eval_error_in(
            ErrorKind::Unexpected(other, "a boolean"),
            expr,
        )),
    }
}

/// Like [`eval_call`]: walked parts are replaced by their values, the rest stays as written.
fn eval_traversal(traversal: &Traversal, ctx: &Context) -> EvalResult<Value> {
    let literal = |expr: &Expression| -> EvalResult<Expression> {
        if needs_walk(expr) {
            eval_expr(expr, ctx).map(Expression::from)
        } else {
            Ok(expr.clone())
        }
    };
    let base = literal(&traversal.expr)?;
    let mut operators = Vec::with_capacity(traversal.operators.len());
    for op in &traversal.operators {
        operators.push(match op {
            TraversalOperator::Index(index) => TraversalOperator::Index(literal(index)?),
            other => other.clone(),
        });
    }
    Expression::Traversal(Box::new(Traversal::new(base, operators))).evaluate(ctx)
}

fn eval_conditional(cond: &Conditional, ctx: &Context) -> EvalResult<Value> {
    if eval_bool(&cond.cond_expr, ctx)? {
        eval_expr(&cond.true_expr, ctx)
    } else {
        eval_expr(&cond.false_expr, ctx)
    }
}

fn eval_unary(unary: &UnaryOp, ctx: &Context, expr: &Expression) -> EvalResult<Value> {
    let value = eval_expr(&unary.expr, ctx)?;
    match (unary.operator, value) {
        (UnaryOperator::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (UnaryOperator::Neg, Value::Number(n)) => Ok(Value::Number(match num_i128(&n) {
            Some(i) => i128_num(-i),
            None => f64_num(-num_f64(&n)).map_err(eval_error)?,
        })),
        (operator, value) => Err(eval_error_in(ErrorKind::UnaryOp(operator, value), expr)),
    }
}

/// Integer arithmetic when both operands are integers (as hcl-rs does), float otherwise.
fn arithmetic(op: BinaryOperator, a: &Number, b: &Number) -> Result<Number, String> {
    if op == BinaryOperator::Div {
        let divisor = num_f64(b);
        if divisor == 0.0 {
            return Err("division by zero".to_string());
        }
        return f64_num(num_f64(a) / divisor);
    }
    if let (Some(x), Some(y)) = (num_i128(a), num_i128(b)) {
        let result = match op {
            BinaryOperator::Plus => x.checked_add(y),
            BinaryOperator::Minus => x.checked_sub(y),
            BinaryOperator::Mul => x.checked_mul(y),
            BinaryOperator::Mod => {
                if y == 0 {
                    return Err("modulo by zero".to_string());
                }
                x.checked_rem(y)
            }
            _ => None,
        };
        let result = result.ok_or_else(|| "integer overflow".to_string())?;
        if i64::try_from(result).is_err() && u64::try_from(result).is_err() {
            return Err("integer overflow".to_string());
        }
        return Ok(i128_num(result));
    }
    let (x, y) = (num_f64(a), num_f64(b));
    let result = match op {
        BinaryOperator::Plus => x + y,
        BinaryOperator::Minus => x - y,
        BinaryOperator::Mul => x * y,
        BinaryOperator::Mod => {
            if y == 0.0 {
                return Err("modulo by zero".to_string());
            }
            x % y
        }
        _ => f64::NAN,
    };
    f64_num(result)
}

fn eval_binary(binary: &BinaryOp, ctx: &Context, expr: &Expression) -> EvalResult<Value> {
    use BinaryOperator as Op;
    let lhs = eval_expr(&binary.lhs_expr, ctx)?;
    let rhs = eval_expr(&binary.rhs_expr, ctx)?;
    let op = binary.operator;
    Ok(match (lhs, op, rhs) {
        (lhs, Op::Eq, rhs) => Value::Bool(lhs == rhs),
        (lhs, Op::NotEq, rhs) => Value::Bool(lhs != rhs),
        (Value::Bool(a), Op::And, Value::Bool(b)) => Value::Bool(a && b),
        (Value::Bool(a), Op::Or, Value::Bool(b)) => Value::Bool(a || b),
        (Value::Number(a), Op::LessEq, Value::Number(b)) => Value::Bool(a <= b),
        (Value::Number(a), Op::GreaterEq, Value::Number(b)) => Value::Bool(a >= b),
        (Value::Number(a), Op::Less, Value::Number(b)) => Value::Bool(a < b),
        (Value::Number(a), Op::Greater, Value::Number(b)) => Value::Bool(a > b),
        (
            Value::Number(a),
            Op::Plus | Op::Minus | Op::Mul | Op::Div | Op::Mod,
            Value::Number(b),
        ) => {
            Value::Number(arithmetic(op, &a, &b).map_err(|msg| {
                eval_error(format!("{msg} in expression `{}`", expr_display(expr)))
            })?)
        }
        (lhs, op, rhs) => return Err(eval_error_in(ErrorKind::BinaryOp(lhs, op, rhs), expr)),
    })
}

/// The (key, value) pairs a `for` iterates over, as hcl-rs produces them.
fn for_collection(expr: &Expression, ctx: &Context) -> EvalResult<Vec<(Value, Value)>> {
    match eval_expr(expr, ctx)? {
        Value::Array(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Value::from(i), v))
            .collect()),
        Value::Object(map) => Ok(map.into_iter().map(|(k, v)| (Value::from(k), v)).collect()),
        other => Err(eval_error_in(
            ErrorKind::Unexpected(other, "an array or object"),
            expr,
        )),
    }
}

fn eval_for_expr(for_expr: &ForExpr, ctx: &Context) -> EvalResult<Value> {
    let collection = for_collection(&for_expr.collection_expr, ctx)?;
    let mut scope = ctx.clone();
    let mut array = Vec::new();
    let mut object = Map::new();
    for (key, value) in collection {
        if let Some(key_var) = &for_expr.key_var {
            scope.declare_var(key_var.clone(), key);
        }
        scope.declare_var(for_expr.value_var.clone(), value);
        if let Some(cond) = &for_expr.cond_expr {
            if !eval_bool(cond, &scope)? {
                continue;
            }
        }
        match &for_expr.key_expr {
            None => array.push(eval_expr(&for_expr.value_expr, &scope)?),
            Some(key_expr) => {
                let key = eval_object_key(key_expr, &scope)?;
                let value = eval_expr(&for_expr.value_expr, &scope)?;
                if for_expr.grouping {
                    match object
                        .entry(key)
                        .or_insert_with(|| Value::Array(Vec::new()))
                    {
                        Value::Array(group) => group.push(value),
                        _ => {
                            return Err(eval_error(
                                "internal error: for-expression group is not a list",
                            ))
                        }
                    }
                } else if object.contains_key(&key) {
                    return Err(eval_error_in(
                        ErrorKind::KeyExists(key),
                        &Expression::ForExpr(Box::new(for_expr.clone())),
                    ));
                } else {
                    object.insert(key, value);
                }
            }
        }
    }
    Ok(if for_expr.key_expr.is_some() {
        Value::Object(object)
    } else {
        Value::Array(array)
    })
}

fn eval_template_expr(template: &TemplateExpr, ctx: &Context) -> EvalResult<Value> {
    let parsed = Template::from_expr(template)?;
    // Interpolation unwrapping: a lone `${...}` yields its value unconverted.
    if let [Element::Interpolation(interp)] = parsed.elements() {
        return eval_expr(&interp.expr, ctx);
    }
    let mut out = String::new();
    eval_template(&mut out, &parsed, ctx, Strip::None, Strip::None)?;
    Ok(Value::String(out))
}

fn element_strip(element: &Element) -> Strip {
    match element {
        Element::Literal(_) => Strip::None,
        Element::Interpolation(interp) => interp.strip,
        Element::Directive(directive) => {
            let (start, end) = match directive.as_ref() {
                Directive::If(dir) => (dir.if_strip, dir.endif_strip),
                Directive::For(dir) => (dir.for_strip, dir.endfor_strip),
            };
            Strip::from((start.strip_start(), end.strip_end()))
        }
    }
}

/// Evaluates a template into `out`, exactly as hcl-rs does (whitespace stripping included),
/// but with expressions evaluated by [`eval_expr`].
pub(super) fn eval_template(
    out: &mut String,
    template: &Template,
    ctx: &Context,
    prev_strip: Strip,
    next_strip: Strip,
) -> EvalResult<()> {
    let elements = template.elements();
    let len = elements.len();
    for (index, element) in elements.iter().enumerate() {
        let prev = if index == 0 {
            prev_strip
        } else {
            element_strip(&elements[index - 1])
        };
        let next = if index + 1 == len {
            next_strip
        } else {
            element_strip(&elements[index + 1])
        };
        match element {
            Element::Literal(literal) => out.push_str(strip_literal(literal, prev, next)),
            Element::Interpolation(interp) => match eval_expr(&interp.expr, ctx)? {
                Value::String(s) => out.push_str(&s),
                value @ (Value::Array(_) | Value::Object(_)) => {
                    let kind = match value {
                        Value::Array(_) => "a list",
                        _ => "an object",
                    };
                    return Err(eval_error(format!(
                        "cannot put {kind} into a string: `${{{}}}` is {kind}, and a string \
                         template takes only strings, numbers and bools; pick one element, \
                         or use join(\",\", ...) or jsonencode(...)",
                        expr_display(&interp.expr),
                    )));
                }
                other => out.push_str(&other.to_string()),
            },
            Element::Directive(directive) => match directive.as_ref() {
                Directive::If(dir) => eval_if_directive(out, dir, ctx)?,
                Directive::For(dir) => eval_for_directive(out, dir, ctx)?,
            },
        }
    }
    Ok(())
}

fn strip_literal(mut literal: &str, prev: Strip, next: Strip) -> &str {
    fn is_space(c: char) -> bool {
        c.is_whitespace() && c != '\r' && c != '\n'
    }
    if prev.strip_end() {
        literal = literal.trim_start_matches(is_space);
        literal = literal
            .strip_prefix("\r\n")
            .or_else(|| literal.strip_prefix('\n'))
            .unwrap_or(literal);
    }
    if next.strip_start() {
        literal = literal.trim_end_matches(is_space);
        literal = literal
            .strip_suffix("\r\n")
            .or_else(|| literal.strip_suffix('\n'))
            .unwrap_or(literal);
    }
    literal
}

fn eval_if_directive(out: &mut String, dir: &IfDirective, ctx: &Context) -> EvalResult<()> {
    if eval_bool(&dir.cond_expr, ctx)? {
        let next = if dir.false_template.is_some() {
            dir.else_strip
        } else {
            dir.endif_strip
        };
        eval_template(out, &dir.true_template, ctx, dir.if_strip, next)
    } else if let Some(false_template) = &dir.false_template {
        eval_template(out, false_template, ctx, dir.else_strip, dir.endif_strip)
    } else {
        Ok(())
    }
}

fn eval_for_directive(out: &mut String, dir: &ForDirective, ctx: &Context) -> EvalResult<()> {
    let collection = for_collection(&dir.collection_expr, ctx)?;
    let mut scope = ctx.clone();
    for (key, value) in collection {
        if let Some(key_var) = &dir.key_var {
            scope.declare_var(key_var.clone(), key);
        }
        scope.declare_var(dir.value_var.clone(), value);
        eval_template(out, &dir.template, &scope, dir.for_strip, dir.endfor_strip)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::functions::test_util::*;

    // ----- try / can laziness -----------------------------------------------------------------

    #[test]
    fn try_returns_first_success() {
        assert_eq!(j(r#"try(var.nope.x, "d")"#), r#""d""#);
        assert_eq!(j(r#"try(var.name, "d")"#), r#""web""#);
        assert_eq!(
            j(r#"try(var.tags.missing, var.tags.env, "d")"#),
            r#""prod""#
        );
        assert_eq!(j(r#"try(var.list[7], var.list[1])"#), r#""b""#);
        assert_eq!(j(r#"try(try(var.a, var.b), "inner")"#), r#""inner""#);
        assert_eq!(j(r#"try(tonumber("x"), 0)"#), "0");
    }

    #[test]
    fn a_list_or_object_in_a_string_template_is_an_error() {
        for src in [
            r#""items: ${var.list}""#,
            r#""${var.tags} and more""#,
            r#""%{ if true }${var.list}%{ endif }x""#,
        ] {
            let msg = err(src);
            assert!(msg.contains("cannot put a"), "{src}: {msg}");
            assert!(msg.contains("into a string"), "{src}: {msg}");
            assert!(msg.contains("join("), "{src}: {msg}");
        }
        // A lone interpolation yields the value itself; scalars convert.
        assert_eq!(j(r#""${var.list}""#), r#"["a","b","c"]"#);
        assert_eq!(
            j(r#""n=${var.count} ${true} ${var.list[0]}""#),
            r#""n=3 true a""#
        );
        assert_eq!(j(r#""${join(",", var.list)}!""#), r#""a,b,c!""#);
    }

    #[test]
    fn can_reports_success() {
        assert_eq!(j("can(var.nope)"), "false");
        assert_eq!(j("can(var.name)"), "true");
        assert_eq!(j(r#"can(regex("^a", "abc"))"#), "true");
        assert_eq!(j(r#"can(regex("^z", "abc"))"#), "false");
        assert!(err("can(1, 2)").contains("exactly one argument"));
    }

    #[test]
    fn try_all_failing_lists_errors() {
        let msg = err("try(var.nope, local.missing)");
        assert!(msg.contains("no expression succeeded"), "{msg}");
        assert!(msg.contains("nope"), "{msg}");
        assert!(msg.contains("missing"), "{msg}");
        assert!(err("try()").contains("at least one argument"));
    }

    #[test]
    fn try_inside_templates() {
        assert_eq!(j(r#""${try(local.x, "y")}""#), r#""y""#);
        assert_eq!(j(r#""pre-${try(local.x, "y")}-post""#), r#""pre-y-post""#);
        assert_eq!(
            j(r#""%{ if can(local.x) }has%{ else }none%{ endif }""#),
            r#""none""#
        );
        // Interpolation unwrapping keeps the value's type.
        assert_eq!(j(r#""${try(local.x, 5)}""#), "5");
        let heredoc = "<<EOT\n%{ for t in var.list ~}\n${try(upper(t), t)}\n%{ endfor ~}\nEOT";
        assert_eq!(ev(heredoc), Value::from("A\nB\nC\n"));
    }

    #[test]
    fn try_inside_every_kind_of_expression() {
        assert_eq!(j(r#"[try(var.x, 1), 2]"#), "[1,2]");
        assert_eq!(
            j(r#"{a = try(var.x, 1), (try(var.k, "b")) = 2}"#),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(j(r#"try(var.x, true) ? "yes" : "no""#), r#""yes""#);
        assert_eq!(j("try(var.x, 1) + 2"), "3");
        assert_eq!(j(r#"!can(var.x)"#), "true");
        assert_eq!(j(r#"upper(try(var.x, "abc"))"#), r#""ABC""#);
        assert_eq!(j(r#"try(var.x, var.list)[1]"#), r#""b""#);
        assert_eq!(j(r#"var.list[try(var.x, 2)]"#), r#""c""#);
        assert_eq!(j(r#"(try(var.x, [1, 2]))"#), "[1,2]");
        assert_eq!(j(r#"[for x in try(var.x, [1, 2]): x * 2]"#), "[2,4]");
        assert_eq!(j(r#"join("-", try(var.x, ["a"]), ["b"])"#), r#""a-b""#);
        assert_eq!(j(r#"concat(try(var.x, [[1], [2]])...)"#), "[1,2]");
    }

    #[test]
    fn try_in_for_body_sees_iteration_variables() {
        assert_eq!(j(r#"[for x in [{a = 1}, {b = 2}]: try(x.a, 0)]"#), "[1,0]");
        assert_eq!(
            j(r#"{for k, v in var.tags: k => can(v.missing) if try(v != "", false)}"#),
            r#"{"env":false,"team":false}"#
        );
        assert_eq!(
            j(r#"{for s in ["ab", "ac", "b"]: substr(s, 0, 1) => try(upper(s), s)...}"#),
            r#"{"a":["AB","AC"],"b":["B"]}"#
        );
        assert_eq!(
            j(r#"[for i, x in ["a", "b"]: [for y in [1, 2]: try("${x}${y}${i}", "")]]"#),
            r#"[["a10","a20"],["b11","b21"]]"#
        );
        let msg = err(r#"{for x in ["a", "a"]: x => try(x, 1)}"#);
        assert!(msg.contains("already exists"), "{msg}");
    }

    #[test]
    fn conditional_evaluates_only_the_branch_taken() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "A").unwrap();
        let (result, trace) = eval_with(
            probe_env(dir.path(), 1),
            r#"true ? try(file("a.txt"), "") : try(file("b.txt"), file("a.txt"))"#,
        );
        assert_eq!(result.unwrap(), Value::from("A"));
        assert_eq!(trace.files_read.len(), 1);
        assert_eq!(j(r#"false ? try(var.x, "a") : "b""#), r#""b""#);
    }

    #[test]
    fn eager_fallbacks_for_try_and_can() {
        // Through plain hcl-rs evaluation (not `evaluate`), try/can still resolve when their
        // arguments evaluate.
        let expr: Expression = r#"[try(var.name, "d"), can(var.name)]"#.parse().unwrap();
        let value = expr.evaluate(&test_ctx()).unwrap();
        assert_eq!(json_encode(&value), r#"["web",true]"#);
    }

    // ----- arithmetic without panics ----------------------------------------------------------

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(j("7 / 2"), "3.5");
        assert_eq!(ev("6 / 3"), Value::from(2));
        assert_eq!(ev("7 % 3"), Value::from(1));
        assert_eq!(ev("2 * var.count - 1"), Value::from(5));
        assert_eq!(ev("-var.count"), Value::from(-3));
        assert_eq!(j("1.5 + 1"), "2.5");
        assert!(err("1 % 0").contains("modulo by zero"));
        assert!(err("1 / 0").contains("division by zero"));
        assert!(err("9223372036854775807 * 9223372036854775807").contains("overflow"));
        assert!(err(r#"1 + "a""#).contains("not applicable"));
        assert!(err(r#""a" ? 1 : 2"#).contains("expected a boolean"));
        assert_eq!(ev("1 + 2 == 3"), Value::Bool(true));
        assert_eq!(ev("3 > 2 && 1 <= 1"), Value::Bool(true));
    }

    #[test]
    fn plain_expressions_keep_hcl_errors() {
        let msg = err("var.nope");
        assert!(msg.contains("no such key"), "{msg}");
        let msg = err("undefined_thing");
        assert!(msg.contains("undefined variable"), "{msg}");
        let msg = err("nosuchfunc(1)");
        assert!(msg.contains("undefined function"), "{msg}");
        // Walked expressions keep unwalked parts as written in error messages.
        let msg = err("var.list[var.count + 1]");
        assert!(msg.contains("var.list[4]"), "{msg}");
        let msg = err("upper(var.tags, 1 + 1)");
        assert!(msg.contains("upper(var.tags, 2)"), "{msg}");
    }
}
