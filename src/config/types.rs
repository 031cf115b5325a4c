//! Variable type constraints (`string`, `list(string)`, `object({...})`, ...)
//! and the conversions Packer applies: values from the command line and the
//! environment arrive as strings and are converted to the declared type.

use hcl::{Expression, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    Any,
    String,
    Number,
    Bool,
    List(Box<TypeExpr>),
    Set(Box<TypeExpr>),
    Map(Box<TypeExpr>),
    Object(Vec<(String, TypeExpr)>),
    Tuple(Vec<TypeExpr>),
}

impl std::fmt::Display for TypeExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypeExpr::Any => f.write_str("any"),
            TypeExpr::String => f.write_str("string"),
            TypeExpr::Number => f.write_str("number"),
            TypeExpr::Bool => f.write_str("bool"),
            TypeExpr::List(t) => write!(f, "list({t})"),
            TypeExpr::Set(t) => write!(f, "set({t})"),
            TypeExpr::Map(t) => write!(f, "map({t})"),
            TypeExpr::Object(fields) => {
                f.write_str("object({")?;
                for (i, (k, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} = {t}")?;
                }
                f.write_str("})")
            }
            TypeExpr::Tuple(items) => {
                f.write_str("tuple([")?;
                for (i, t) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{t}")?;
                }
                f.write_str("])")
            }
        }
    }
}

/// Reads a type constraint expression.
pub fn parse_type(expr: &Expression) -> Result<TypeExpr, String> {
    match expr {
        Expression::Variable(v) => match v.as_str() {
            "any" => Ok(TypeExpr::Any),
            "string" => Ok(TypeExpr::String),
            "number" => Ok(TypeExpr::Number),
            "bool" => Ok(TypeExpr::Bool),
            "list" => Ok(TypeExpr::List(Box::new(TypeExpr::Any))),
            "map" => Ok(TypeExpr::Map(Box::new(TypeExpr::Any))),
            "set" => Ok(TypeExpr::Set(Box::new(TypeExpr::Any))),
            other => Err(format!("unknown type `{other}`")),
        },
        Expression::String(s) => parse_type(&Expression::Variable(hcl::Variable::unchecked(s.as_str()))),
        Expression::FuncCall(call) => {
            let name = call.name.name.as_str();
            let arg = call.args.first().ok_or_else(|| format!("`{name}(...)` needs one argument"))?;
            match name {
                "list" => Ok(TypeExpr::List(Box::new(parse_type(arg)?))),
                "set" => Ok(TypeExpr::Set(Box::new(parse_type(arg)?))),
                "map" => Ok(TypeExpr::Map(Box::new(parse_type(arg)?))),
                "optional" => parse_type(arg),
                "object" => match arg {
                    Expression::Object(fields) => {
                        let mut out = Vec::new();
                        for (k, v) in fields {
                            let key = match k {
                                hcl::ObjectKey::Identifier(i) => i.to_string(),
                                hcl::ObjectKey::Expression(Expression::String(s)) => s.clone(),
                                hcl::ObjectKey::Expression(Expression::Variable(v)) => v.to_string(),
                                _ => return Err("object type keys must be names".into()),
                            };
                            out.push((key, parse_type(v)?));
                        }
                        Ok(TypeExpr::Object(out))
                    }
                    _ => Err("object(...) takes { name = type, ... }".into()),
                },
                "tuple" => match arg {
                    Expression::Array(items) => Ok(TypeExpr::Tuple(
                        items.iter().map(parse_type).collect::<Result<_, _>>()?,
                    )),
                    _ => Err("tuple(...) takes [type, ...]".into()),
                },
                other => Err(format!("unknown type constructor `{other}`")),
            }
        }
        _ => Err("a type is written like string, number, bool, list(string), map(number) or object({...})".into()),
    }
}

use super::functions::type_name as describe;

/// Converts `value` to `ty` the way HCL does (strings ↔ numbers/bools, lists
/// element-wise), or says why it cannot.
pub fn convert(value: Value, ty: &TypeExpr) -> Result<Value, String> {
    if value.is_null() {
        return Ok(value);
    }
    match ty {
        TypeExpr::Any => Ok(value),
        TypeExpr::String => match value {
            Value::String(_) => Ok(value),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            other => Err(format!("a string is required, got a {}", describe(&other))),
        },
        TypeExpr::Number => match value {
            Value::Number(_) => Ok(value),
            Value::String(s) => {
                if let Ok(i) = s.trim().parse::<i64>() {
                    Ok(Value::Number(i.into()))
                } else if let Some(n) = s.trim().parse::<f64>().ok().and_then(hcl::Number::from_f64)
                {
                    Ok(Value::Number(n))
                } else {
                    Err(format!("a number is required, got \"{s}\""))
                }
            }
            other => Err(format!("a number is required, got a {}", describe(&other))),
        },
        TypeExpr::Bool => match value {
            Value::Bool(_) => Ok(value),
            Value::String(s) if s == "true" => Ok(Value::Bool(true)),
            Value::String(s) if s == "false" => Ok(Value::Bool(false)),
            other => Err(format!(
                "a bool is required, got {}",
                hcl::format::to_string(&other).unwrap_or_default()
            )),
        },
        TypeExpr::List(elem) | TypeExpr::Set(elem) => match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    out.push(convert(item, elem).map_err(|e| format!("element {i}: {e}"))?);
                }
                if matches!(ty, TypeExpr::Set(_)) {
                    let mut seen = Vec::new();
                    out.retain(|v| {
                        if seen.contains(v) {
                            false
                        } else {
                            seen.push(v.clone());
                            true
                        }
                    });
                }
                Ok(Value::Array(out))
            }
            other => Err(format!("a list is required, got a {}", describe(&other))),
        },
        TypeExpr::Map(elem) => match value {
            Value::Object(map) => {
                let mut out = hcl::Map::new();
                for (k, v) in map {
                    let v = convert(v, elem).map_err(|e| format!("key \"{k}\": {e}"))?;
                    out.insert(k, v);
                }
                Ok(Value::Object(out))
            }
            other => Err(format!("a map is required, got a {}", describe(&other))),
        },
        TypeExpr::Object(fields) => match value {
            Value::Object(mut map) => {
                let mut out = hcl::Map::new();
                for (name, fty) in fields {
                    let v = map.shift_remove(name).unwrap_or(Value::Null);
                    out.insert(
                        name.clone(),
                        convert(v, fty).map_err(|e| format!("attribute \"{name}\": {e}"))?,
                    );
                }
                if let Some(extra) = map.keys().next() {
                    return Err(format!("unexpected attribute \"{extra}\" for {ty}"));
                }
                Ok(Value::Object(out))
            }
            other => Err(format!("an object is required, got a {}", describe(&other))),
        },
        TypeExpr::Tuple(types) => match value {
            Value::Array(items) if items.len() == types.len() => Ok(Value::Array(
                items
                    .into_iter()
                    .zip(types)
                    .map(|(v, t)| convert(v, t))
                    .collect::<Result<_, _>>()?,
            )),
            other => Err(format!(
                "a tuple of {} elements is required, got {}",
                types.len(),
                describe(&other)
            )),
        },
    }
}

/// Whether a raw string from the command line or environment should be
/// parsed as an HCL expression (for collection types) or taken literally.
pub fn wants_expression(ty: &TypeExpr) -> bool {
    matches!(
        ty,
        TypeExpr::List(_)
            | TypeExpr::Set(_)
            | TypeExpr::Map(_)
            | TypeExpr::Object(_)
            | TypeExpr::Tuple(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(src: &str) -> TypeExpr {
        let expr: Expression = hcl::from_str::<hcl::Body>(&format!("t = {src}"))
            .unwrap()
            .attributes()
            .next()
            .unwrap()
            .expr()
            .clone();
        parse_type(&expr).unwrap()
    }

    #[test]
    fn parses_types() {
        assert_eq!(ty("string"), TypeExpr::String);
        assert_eq!(
            ty("list(string)"),
            TypeExpr::List(Box::new(TypeExpr::String))
        );
        assert_eq!(
            ty("object({a = number})").to_string(),
            "object({a = number})"
        );
    }

    #[test]
    fn converts_cli_strings() {
        assert_eq!(
            convert(Value::String("3".into()), &TypeExpr::Number).unwrap(),
            Value::Number(3.into())
        );
        assert_eq!(
            convert(Value::String("true".into()), &TypeExpr::Bool).unwrap(),
            Value::Bool(true)
        );
        assert!(convert(Value::String("x".into()), &TypeExpr::Number).is_err());
        assert!(convert(Value::Array(vec![]), &TypeExpr::String).is_err());
    }
}
