//! `dynamic` blocks: HCL's `dynamic "KIND" { for_each, iterator, labels,
//! content }`, expanded as Packer expands them (hcl's dynblock extension),
//! before anything checks a block against its schema.
//!
//! One `dynamic "KIND"` block becomes one `KIND` block per element of
//! `for_each` (a list, set or map; null gives none), labelled by `labels`,
//! with the attributes and blocks of its `content`. Inside, the iterator
//! (`KIND`, or the name given by `iterator`) has `.key` (the index or map
//! key) and `.value`. Dynamic blocks nest: an inner `for_each` may use the
//! outer iterator. They may stand wherever a block may: at the top level,
//! in `source`, in `build` (`dynamic "source"`, `dynamic "provisioner"`),
//! in provisioners.
//!
//! `for_each` and `labels` are evaluated here, with `var.*`, `local.*`,
//! `path.*` and the functions (what Packer's top-level expansion sees); the
//! content's expressions are not: each use of the iterator is replaced by
//! its value, and everything else is left for the image's own evaluation
//! (so `source.name` or `build.name` still work inside a content block).
//!
//! Invariants: blocks without `dynamic` anywhere come out unchanged; every
//! problem is a located diagnostic and the faulty dynamic block produces
//! nothing.

use hcl::eval::Context;
use hcl::expr::{Expression, TemplateExpr, TraversalOperator};
use hcl::template::{Directive, Element, Template};

use super::functions;
use super::parse::{RawAttr, RawBlock, RawFile};
use super::scope::describe_error;
use crate::diag::{Diagnostic, SourceLoc};

/// An iterator in scope: its name and `{ key, value }`.
type Binding = (String, hcl::Value);

/// Whether any block of the files, at any depth, is a `dynamic` block.
pub(super) fn any_dynamic(files: &[RawFile]) -> bool {
    fn has(blocks: &[RawBlock]) -> bool {
        blocks.iter().any(|b| b.kind == "dynamic" || has(&b.blocks))
    }
    files.iter().any(|f| has(&f.blocks))
}

/// What `for_each` and `labels` are evaluated in: the load-time scope, and
/// which expressions (by source text) are unknown in it yet (they use a
/// data source not looked up).
struct Scope<'a> {
    ctx: &'a Context<'a>,
    unknown: &'a dyn Fn(&str) -> bool,
}

/// The file with every dynamic block expanded. A dynamic block whose
/// `for_each` is `unknown` expands to nothing (the pipeline loads again
/// once it is known).
pub(super) fn expand_file(
    file: &RawFile,
    ctx: &Context,
    unknown: &dyn Fn(&str) -> bool,
    diags: &mut Vec<Diagnostic>,
) -> RawFile {
    let scope = Scope { ctx, unknown };
    RawFile {
        path: file.path.clone(),
        attrs: file.attrs.clone(),
        blocks: expand_blocks(&file.blocks, &[], &scope, diags),
    }
}

fn expand_blocks(
    blocks: &[RawBlock],
    bindings: &[Binding],
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
) -> Vec<RawBlock> {
    let mut out = Vec::with_capacity(blocks.len());
    for block in blocks {
        if block.kind == "dynamic" {
            expand_dynamic(block, bindings, scope, diags, &mut out);
        } else {
            out.push(RawBlock {
                kind: block.kind.clone(),
                labels: block.labels.clone(),
                attrs: block
                    .attrs
                    .iter()
                    .map(|a| substitute_attr(a, bindings))
                    .collect(),
                blocks: expand_blocks(&block.blocks, bindings, scope, diags),
                loc: block.loc.clone(),
            });
        }
    }
    out
}

fn error(loc: &SourceLoc, summary: impl Into<String>, hint: impl Into<String>) -> Diagnostic {
    Diagnostic::error(summary).at(Some(loc.clone())).hint(hint)
}

const DYNAMIC_HINT: &str = "write `dynamic \"KIND\" { for_each = LIST_OR_MAP  content { ... } }`; inside, the iterator KIND has .key and .value";

/// One `dynamic` block: its generated blocks, pushed to `out`.
fn expand_dynamic(
    block: &RawBlock,
    bindings: &[Binding],
    scope: &Scope,
    diags: &mut Vec<Diagnostic>,
    out: &mut Vec<RawBlock>,
) {
    let [kind] = block.labels.as_slice() else {
        diags.push(error(
            &block.loc,
            "a dynamic block needs one label: the kind of block it generates",
            DYNAMIC_HINT,
        ));
        return;
    };
    let mut iterator = kind.clone();
    let mut for_each = None;
    let mut labels = None;
    for attr in &block.attrs {
        match attr.name.as_str() {
            "for_each" => for_each = Some(attr),
            "labels" => labels = Some(attr),
            "iterator" => match &attr.expr {
                Expression::Variable(v) => iterator = v.as_str().to_owned(),
                _ => diags.push(error(
                    &attr.loc,
                    "`iterator` must be a bare name",
                    "write `iterator = disk`, then use disk.key and disk.value",
                )),
            },
            other => diags.push(error(
                &attr.loc,
                format!("unknown attribute `{other}` in dynamic \"{kind}\""),
                "a dynamic block takes for_each, iterator, labels and one content block",
            )),
        }
    }
    let contents: Vec<&RawBlock> = block
        .blocks
        .iter()
        .filter(|b| b.kind == "content")
        .collect();
    for other in block.blocks.iter().filter(|b| b.kind != "content") {
        diags.push(error(
            &other.loc,
            format!("unexpected block `{}` in dynamic \"{kind}\"", other.kind),
            "put the generated block's attributes and blocks inside `content { ... }`",
        ));
    }
    let (Some(for_each), [content]) = (for_each, contents.as_slice()) else {
        diags.push(error(
            &block.loc,
            format!("dynamic \"{kind}\" needs `for_each` and exactly one `content` block"),
            DYNAMIC_HINT,
        ));
        return;
    };
    if (scope.unknown)(&for_each.text) {
        return;
    }
    let ctx = scope.ctx;
    let Some(elements) = evaluate_for_each(for_each, bindings, ctx, diags) else {
        return;
    };
    for (key, value) in elements {
        let mut inner = bindings.to_vec();
        let mut it = hcl::Map::new();
        it.insert("key".to_owned(), key);
        it.insert("value".to_owned(), value);
        inner.retain(|(name, _)| name != &iterator);
        inner.push((iterator.clone(), hcl::Value::Object(it)));
        let Some(labels) = labels
            .map(|l| evaluate_labels(l, &inner, ctx, diags))
            .unwrap_or(Some(Vec::new()))
        else {
            return;
        };
        out.push(RawBlock {
            kind: kind.clone(),
            labels,
            attrs: content
                .attrs
                .iter()
                .map(|a| substitute_attr(a, &inner))
                .collect(),
            blocks: expand_blocks(&content.blocks, &inner, scope, diags),
            loc: content.loc.clone(),
        });
    }
}

/// The (key, value) pairs of `for_each`: index and element of a list or
/// set, key and value of a map.
fn evaluate_for_each(
    attr: &RawAttr,
    bindings: &[Binding],
    ctx: &Context,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<(hcl::Value, hcl::Value)>> {
    let expr = substitute(&attr.expr, bindings);
    match functions::evaluate(&expr, ctx) {
        Ok(hcl::Value::Array(items)) => Some(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (hcl::Value::from(i as u64), v))
                .collect(),
        ),
        Ok(hcl::Value::Object(map)) => Some(
            map.into_iter()
                .map(|(k, v)| (hcl::Value::String(k), v))
                .collect(),
        ),
        Ok(hcl::Value::Null) => Some(Vec::new()),
        Ok(other) => {
            diags.push(error(
                &attr.loc,
                format!(
                    "`for_each` must be a list, set or map, not {}",
                    super::functions::type_name(&other)
                ),
                "for_each = [\"a\", \"b\"] or for_each = { name = value }",
            ));
            None
        }
        Err(e) => {
            diags.push(error(
                &attr.loc,
                format!(
                    "cannot evaluate `for_each`: {}",
                    describe_error(&e, &attr.text)
                ),
                "for_each may use variables, locals, functions and an enclosing dynamic block's iterator; it is expanded before any image exists",
            ));
            None
        }
    }
}

fn evaluate_labels(
    attr: &RawAttr,
    bindings: &[Binding],
    ctx: &Context,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<String>> {
    let expr = substitute(&attr.expr, bindings);
    let value = functions::evaluate(&expr, ctx);
    let labels = match &value {
        Ok(hcl::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                hcl::Value::String(s) => Some(s.clone()),
                hcl::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect::<Option<Vec<String>>>(),
        _ => None,
    };
    if labels.is_none() {
        let why = match value {
            Err(e) => describe_error(&e, &attr.text),
            Ok(v) => format!("it is {}", super::functions::type_name(&v)),
        };
        diags.push(error(
            &attr.loc,
            format!("`labels` must be a list of strings: {why}"),
            "write `labels = [\"amazon-ebs.${source.value}\"]` with one entry per label of the generated block",
        ));
    }
    labels
}

fn substitute_attr(attr: &RawAttr, bindings: &[Binding]) -> RawAttr {
    if bindings.is_empty() {
        return attr.clone();
    }
    let expr = substitute(&attr.expr, bindings);
    if expr == attr.expr {
        return attr.clone();
    }
    RawAttr {
        name: attr.name.clone(),
        text: hcl::format::to_string(&expr).unwrap_or_else(|_| attr.text.clone()),
        expr,
        loc: attr.loc.clone(),
    }
}

/// `expr` with every use of a bound iterator replaced by its value (and the
/// attribute and index steps after it applied, when they can be).
pub(super) fn substitute(expr: &Expression, bindings: &[Binding]) -> Expression {
    if bindings.is_empty() {
        return expr.clone();
    }
    let bound = |name: &str| bindings.iter().rev().find(|(n, _)| n == name);
    let sub = |e: &Expression| substitute(e, bindings);
    match expr {
        Expression::Variable(v) => match bound(v.as_str()) {
            Some((_, value)) => Expression::from(value.clone()),
            None => expr.clone(),
        },
        Expression::Traversal(t) => {
            if let Expression::Variable(v) = &t.expr {
                if let Some((_, value)) = bound(v.as_str()) {
                    return traverse(value.clone(), &t.operators, bindings);
                }
            }
            let operators = t.operators.iter().map(|op| sub_operator(op, bindings));
            Expression::from(hcl::expr::Traversal::new(sub(&t.expr), operators))
        }
        Expression::Array(items) => Expression::Array(items.iter().map(sub).collect()),
        Expression::Object(map) => Expression::Object(
            map.iter()
                .map(|(k, v)| {
                    let k = match k {
                        hcl::ObjectKey::Expression(e) => hcl::ObjectKey::Expression(sub(e)),
                        other => other.clone(),
                    };
                    (k, sub(v))
                })
                .collect(),
        ),
        Expression::TemplateExpr(t) => substitute_template(t, bindings),
        Expression::FuncCall(call) => {
            let mut call = (**call).clone();
            call.args = call.args.iter().map(sub).collect();
            Expression::FuncCall(Box::new(call))
        }
        Expression::Parenthesis(inner) => Expression::Parenthesis(Box::new(sub(inner))),
        Expression::Conditional(c) => {
            let mut c = (**c).clone();
            c.cond_expr = sub(&c.cond_expr);
            c.true_expr = sub(&c.true_expr);
            c.false_expr = sub(&c.false_expr);
            Expression::Conditional(Box::new(c))
        }
        Expression::Operation(op) => {
            let op = match &**op {
                hcl::expr::Operation::Unary(u) => {
                    let mut u = u.clone();
                    u.expr = sub(&u.expr);
                    hcl::expr::Operation::Unary(u)
                }
                hcl::expr::Operation::Binary(b) => {
                    let mut b = b.clone();
                    b.lhs_expr = sub(&b.lhs_expr);
                    b.rhs_expr = sub(&b.rhs_expr);
                    hcl::expr::Operation::Binary(b)
                }
            };
            Expression::Operation(Box::new(op))
        }
        Expression::ForExpr(f) => {
            // The for expression's own names hide the iterators inside it.
            let own: Vec<&str> = std::iter::once(f.value_var.as_str())
                .chain(f.key_var.as_ref().map(|k| k.as_str()))
                .collect();
            let inner: Vec<Binding> = bindings
                .iter()
                .filter(|(n, _)| !own.contains(&n.as_str()))
                .cloned()
                .collect();
            let mut f = (**f).clone();
            f.collection_expr = sub(&f.collection_expr);
            f.value_expr = substitute(&f.value_expr, &inner);
            f.key_expr = f.key_expr.as_ref().map(|e| substitute(e, &inner));
            f.cond_expr = f.cond_expr.as_ref().map(|e| substitute(e, &inner));
            Expression::ForExpr(Box::new(f))
        }
        _ => expr.clone(),
    }
}

fn sub_operator(op: &TraversalOperator, bindings: &[Binding]) -> TraversalOperator {
    match op {
        TraversalOperator::Index(e) => TraversalOperator::Index(substitute(e, bindings)),
        other => other.clone(),
    }
}

/// `value` followed by `operators`: the steps that can be taken now are
/// (`it.value.size` becomes the size), the rest stay as a traversal.
fn traverse(
    value: hcl::Value,
    operators: &[TraversalOperator],
    bindings: &[Binding],
) -> Expression {
    let mut current = value;
    for (i, op) in operators.iter().enumerate() {
        let next = match (op, &current) {
            (TraversalOperator::GetAttr(name), hcl::Value::Object(map)) => {
                map.get(name.as_str()).cloned()
            }
            (TraversalOperator::Index(e), _) => match (substitute(e, bindings), &current) {
                (Expression::Number(n), hcl::Value::Array(items)) => {
                    n.as_u64().and_then(|i| items.get(i as usize).cloned())
                }
                (Expression::String(k), hcl::Value::Object(map)) => map.get(&k).cloned(),
                _ => None,
            },
            (TraversalOperator::LegacyIndex(n), hcl::Value::Array(items)) => {
                items.get(*n as usize).cloned()
            }
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => {
                let rest = operators[i..].iter().map(|op| sub_operator(op, bindings));
                return Expression::from(hcl::expr::Traversal::new(
                    Expression::from(current),
                    rest,
                ));
            }
        }
    }
    Expression::from(current)
}

/// A template with the iterators replaced; a template left with only text
/// and literal values becomes a plain string (so `name = "${s.value}"`
/// reads as a literal name).
fn substitute_template(t: &TemplateExpr, bindings: &[Binding]) -> Expression {
    let Ok(mut template) = Template::from_expr(t) else {
        return Expression::TemplateExpr(Box::new(t.clone()));
    };
    substitute_elements(&mut template, bindings);
    let template: Template = template
        .elements()
        .iter()
        .map(|e| match literal_of(e) {
            Some(text) => Element::Literal(text),
            None => e.clone(),
        })
        .collect();
    if let Some(text) = literal_text(&template) {
        return Expression::String(text);
    }
    let text = template.to_string();
    let expr = match t {
        TemplateExpr::QuotedString(_) => TemplateExpr::QuotedString(text),
        TemplateExpr::Heredoc(h) => {
            let mut h = h.clone();
            h.template = text;
            TemplateExpr::Heredoc(h)
        }
    };
    Expression::TemplateExpr(Box::new(expr))
}

fn substitute_elements(template: &mut Template, bindings: &[Binding]) {
    for element in template.elements_mut() {
        match element {
            Element::Literal(_) => {}
            Element::Interpolation(i) => i.expr = substitute(&i.expr, bindings),
            Element::Directive(d) => match &mut **d {
                Directive::If(d) => {
                    d.cond_expr = substitute(&d.cond_expr, bindings);
                    substitute_elements(&mut d.true_template, bindings);
                    if let Some(f) = &mut d.false_template {
                        substitute_elements(f, bindings);
                    }
                }
                Directive::For(d) => {
                    d.collection_expr = substitute(&d.collection_expr, bindings);
                    substitute_elements(&mut d.template, bindings);
                }
            },
        }
    }
}

/// The text an interpolation of a literal value stands for.
fn literal_of(element: &Element) -> Option<String> {
    match element {
        Element::Interpolation(i) if i.strip == hcl::template::Strip::None => match &i.expr {
            Expression::String(s) => Some(s.clone()),
            Expression::Number(n) => Some(n.to_string()),
            Expression::Bool(b) => Some(b.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// The text of a template made only of literals.
fn literal_text(template: &Template) -> Option<String> {
    let mut out = String::new();
    for element in template.elements() {
        match element {
            Element::Literal(s) => out.push_str(s),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn expand(text: &str) -> (Vec<RawBlock>, Vec<Diagnostic>) {
        let file = super::super::parse::parse_hcl(text, Path::new("t.pkr.hcl")).unwrap();
        let mut ctx = super::super::scope::base_context(".");
        let mut var = hcl::Map::new();
        var.insert(
            "disks".to_owned(),
            hcl::Value::Array(vec![
                hcl::Value::from("/dev/sdb"),
                hcl::Value::from("/dev/sdc"),
            ]),
        );
        ctx.declare_var("var", hcl::Value::Object(var));
        let mut diags = Vec::new();
        let out = expand_file(&file, &ctx, &|_| false, &mut diags);
        (out.blocks, diags)
    }

    #[test]
    fn expands_a_list_with_key_and_value_and_keeps_other_references() {
        let (blocks, diags) = expand(
            r#"source "null" "a" {
  dynamic "launch_block_device_mappings" {
    for_each = var.disks
    content {
      device_name = launch_block_device_mappings.value
      volume_size = 10 + launch_block_device_mappings.key
      tag         = "${source.name}-${launch_block_device_mappings.key}"
    }
  }
}"#,
        );
        assert!(diags.is_empty(), "{diags:?}");
        let inner = &blocks[0].blocks;
        assert_eq!(inner.len(), 2);
        assert_eq!(inner[1].kind, "launch_block_device_mappings");
        assert_eq!(
            inner[1].attr("device_name").unwrap().expr,
            Expression::String("/dev/sdc".into())
        );
        let tag = &inner[1].attr("tag").unwrap().text;
        assert!(tag.contains("source.name") && tag.contains("-1"), "{tag}");
    }

    #[test]
    fn nested_with_iterator_and_labels_and_a_map() {
        let (blocks, diags) = expand(
            r#"build {
  dynamic "source" {
    for_each = { small = 8, big = 64 }
    iterator = size
    labels   = ["null.base"]
    content {
      name = "base-${size.key}"
      dynamic "tag" {
        for_each = [size.value]
        content { gib = tag.value }
      }
    }
  }
}"#,
        );
        assert!(diags.is_empty(), "{diags:?}");
        let sources = &blocks[0].blocks;
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].labels, vec!["null.base"]);
        let names: Vec<_> = sources
            .iter()
            .map(|s| s.attr("name").unwrap().expr.clone())
            .collect();
        assert!(names.contains(&Expression::String("base-small".into())));
        assert!(names.contains(&Expression::String("base-big".into())));
        assert_eq!(sources[0].blocks[0].kind, "tag");
    }

    #[test]
    fn a_bad_for_each_is_located() {
        let (blocks, diags) = expand(
            "source \"null\" \"a\" {\n  dynamic \"x\" {\n    for_each = 3\n    content {}\n  }\n}",
        );
        assert!(blocks[0].blocks.is_empty());
        assert_eq!(diags.len(), 1);
        assert!(diags[0].summary.contains("for_each"), "{diags:?}");
        assert_eq!(diags[0].location.as_ref().unwrap().line, 3);
    }
}
