//! Data sources: Packer's `data "KIND" "NAME" { ... }` blocks, values looked
//! up once per run (a cloud, a URL, a git checkout, a generated key) that
//! expressions read as `data.KIND.NAME.ATTR`.
//!
//! Each kind is one module that describes itself once (a [`DataKind`]: the
//! attributes it takes, the outputs it gives, which of them are secret, what
//! of its result enters a content address) and implements its look-up;
//! [`KINDS`] lists them and everything else asks [`kind_of`]. To add one:
//! write the module with its `KIND`, add one line to [`KINDS`].
//!
//! The pipeline's *resolve* stage calls [`DataKind::resolve`] (never
//! `validate`/`graph`: there the outputs are [`placeholder`]s). A kind's
//! result is plain data ([`Resolved`]); whatever of it is secret is named in
//! [`Resolved::sensitive`] and must never be written anywhere by a caller.

pub mod amazon_ami;
pub mod amazon_parameterstore;
pub mod amazon_secretsmanager;
mod aws_access;
mod git;
pub mod git_commit;
pub mod git_repository;
pub mod http;
pub mod null;
pub mod sshkey;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::build::BoxFuture;
use crate::schema::Schema;
use crate::spec::Attrs;

/// The shape of one output, for the stand-in values `validate` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutTy {
    String,
    Number,
    Bool,
    List,
    Map,
}

/// One output attribute of a kind.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub name: &'static str,
    pub ty: OutTy,
}

pub const fn out(name: &'static str, ty: OutTy) -> Output {
    Output { name, ty }
}

/// Outputs by name.
pub type Outputs = BTreeMap<String, Value>;

/// What a look-up found.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub outputs: Outputs,
    /// The outputs that are secret (a SecureString, a secret, a private
    /// key): kept out of state, plans and logs.
    pub sensitive: BTreeSet<String>,
}

impl Resolved {
    /// A result with no secret in it.
    pub fn public(outputs: Outputs) -> Resolved {
        Resolved {
            outputs,
            sensitive: BTreeSet::new(),
        }
    }
}

/// One look-up to make.
pub struct Request<'a> {
    /// `data.KIND.NAME`, for messages.
    pub address: &'a str,
    pub name: &'a str,
    /// The evaluated attributes of the block.
    pub config: &'a Attrs,
    /// The definition dir, absolute (relative paths resolve against it).
    pub def_dir: &'a Path,
    /// Where the kind may keep what it must find again next run (the
    /// `sshkey` key pair): `.imgform/data/` in the definition dir.
    pub keep_dir: &'a Path,
}

/// One data source kind, as the registry ([`KINDS`]) lists it.
pub struct DataKind {
    /// The attributes the block takes. Inputs make the query (a changed
    /// input asks again even under `--refresh=false`); settings and secrets
    /// say how to ask.
    pub schema: Schema,
    pub outputs: &'static [Output],
    /// Asks now.
    pub resolve: for<'a> fn(Request<'a>) -> BoxFuture<'a, Result<Resolved, String>>,
    /// What of a result enters the content address of the images that use
    /// it (and `data_changed` reasons): small, e.g. an AMI id, a body's
    /// checksum. Secret outputs in it are redacted by the caller.
    pub summary: fn(&Outputs) -> Value,
}

impl DataKind {
    pub fn name(&self) -> &'static str {
        self.schema.kind
    }
}

/// The registry: every data source kind imgform knows.
pub static KINDS: &[&DataKind] = &[
    &amazon_ami::KIND,
    &amazon_parameterstore::KIND,
    &amazon_secretsmanager::KIND,
    &http::KIND,
    &null::KIND,
    &sshkey::KIND,
    &git_commit::KIND,
    &git_repository::KIND,
];

/// The data source kind called `name`.
pub fn kind_of(name: &str) -> Option<&'static DataKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The names of every kind, for hints.
pub fn kind_names() -> impl Iterator<Item = &'static str> {
    KINDS.iter().map(|k| k.name())
}

/// The stand-in for `data.KIND.NAME` where nothing is looked up
/// (`validate`, `graph`): every output with its shape, strings saying where
/// the value will come from (a list holds one such string, so `[0]` works).
pub fn placeholder(kind: &DataKind, address: &str) -> Outputs {
    kind.outputs
        .iter()
        .map(|o| {
            let v = match o.ty {
                OutTy::String => Value::String(format!("<{address}.{}>", o.name)),
                OutTy::Number => Value::from(0),
                OutTy::Bool => Value::Bool(false),
                OutTy::List => {
                    Value::Array(vec![Value::String(format!("<{address}.{}[0]>", o.name))])
                }
                OutTy::Map => Value::Object(Default::default()),
            };
            (o.name.to_owned(), v)
        })
        .collect()
}

/// A string attribute of a block's config, empty strings as absent.
pub(crate) fn config_str<'a>(config: &'a Attrs, name: &str) -> Option<&'a str> {
    config
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A boolean attribute, also when written as `"true"`/`"false"`.
#[cfg(feature = "aws")]
pub(crate) fn config_bool(config: &Attrs, name: &str) -> Option<bool> {
    match config.get(name) {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// The one output `name` as the summary (an AMI id, a commit hash).
pub(crate) fn output(outputs: &Outputs, name: &str) -> Value {
    outputs.get(name).cloned().unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_consistent_and_names_unique() {
        let mut seen = BTreeSet::new();
        for kind in KINDS {
            crate::schema::assert_consistent(&kind.schema);
            assert!(seen.insert(kind.name()), "{} twice", kind.name());
            for o in kind.outputs {
                assert!(
                    kind.outputs.iter().filter(|x| x.name == o.name).count() == 1,
                    "{}.{}",
                    kind.name(),
                    o.name
                );
            }
        }
    }

    #[test]
    fn placeholders_have_every_output_and_its_shape() {
        let kind = kind_of("amazon-ami").unwrap();
        let p = placeholder(kind, "data.amazon-ami.ubuntu");
        assert_eq!(p["id"], "<data.amazon-ami.ubuntu.id>");
        assert!(p["tags"].is_object());
    }
}
