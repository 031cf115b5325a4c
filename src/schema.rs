//! How a kind (a builder, a provisioner) describes the attributes and blocks
//! it accepts, and which of them are *inputs* (they can change the bytes of
//! the image and so go into the content address) and which are *build
//! settings* (they cannot, and are kept out of it).
//!
//! The rule of thumb: anything that decides what ends up on the disk is an
//! input (base image, disk layout, user data, provisioner config); anything
//! that decides how, where or under which name the build runs is a setting
//! (instance type, network, names, tags, credentials, timeouts). Secrets are
//! settings that are never shown, logged, or written to state or plans.
//!
//! Each kind's module holds its own [`Schema`] (see `drivers::KINDS` and
//! `provision::KINDS`); the loader rejects attributes a schema does not list,
//! with a hint naming the closest known one, so a typo never silently changes
//! nothing.

/// How an attribute relates to the content address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Part of the manifest: changing it changes the content address.
    Input,
    /// Affects how the build runs, not what it produces. Kept out of the address.
    Setting,
    /// A setting whose value is secret: never in state, plans, logs or output.
    Secret,
}

/// The shape an attribute's evaluated value must have. `Any` is not checked
/// at load time (the kind checks it when it uses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Any,
    String,
    /// A list (of strings, as a rule).
    List,
}

impl Ty {
    /// Whether `value` has this shape.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        match self {
            Ty::Any => true,
            Ty::String => value.is_string(),
            Ty::List => value.is_array(),
        }
    }

    /// How to write a value of this shape, for hints.
    pub fn example(self, name: &str) -> String {
        match self {
            Ty::Any => format!("{name} = ..."),
            Ty::String => format!("write {name} = \"...\""),
            Ty::List => format!("write {name} = [\"...\"]"),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Ty::Any => "a value",
            Ty::String => "a string",
            Ty::List => "a list",
        }
    }
}

/// How a kind reads the local paths an attribute names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// A file, or a folder hashed as a tree; a link is read through.
    FileOrFolder,
    /// Exactly one file (something run or parsed): a folder is an error.
    File,
    /// A file or folder copied into the image as it is: a symlink that leads
    /// out of the definition dir (or nowhere), the path itself or one inside
    /// the folder, is hashed and copied as a link, never by its target.
    Copied,
}

#[derive(Debug, Clone, Copy)]
pub struct AttrSpec {
    pub name: &'static str,
    pub role: Role,
    pub ty: Ty,
    /// The value names local files (a path, or a list of them) whose bytes
    /// are inputs of the image, and how they are read.
    pub reads_files: Option<Reads>,
    /// A Packer attribute imgform loads but does not act on: setting it is a
    /// warning naming it, with this hint (what happens instead).
    pub ignored: Option<&'static str>,
}

impl AttrSpec {
    pub const fn list(self) -> AttrSpec {
        AttrSpec {
            ty: Ty::List,
            ..self
        }
    }

    pub const fn string(self) -> AttrSpec {
        AttrSpec {
            ty: Ty::String,
            ..self
        }
    }

    /// The value names local files or folders whose bytes are inputs.
    pub const fn files(self) -> AttrSpec {
        AttrSpec {
            reads_files: Some(Reads::FileOrFolder),
            ..self
        }
    }

    /// The value names local files (a script, a playbook) whose bytes are
    /// inputs; a folder is an error.
    pub const fn file(self) -> AttrSpec {
        AttrSpec {
            reads_files: Some(Reads::File),
            ..self
        }
    }

    /// The value names local files or folders copied into the image as
    /// they are (see [`Reads::Copied`]).
    pub const fn copied(self) -> AttrSpec {
        AttrSpec {
            reads_files: Some(Reads::Copied),
            ..self
        }
    }

    /// Packer knows it, imgform does not act on it: a warning when it is
    /// set, with `hint` saying what happens instead.
    pub const fn ignored(self, hint: &'static str) -> AttrSpec {
        AttrSpec {
            ignored: Some(hint),
            ..self
        }
    }
}

const fn attr(name: &'static str, role: Role) -> AttrSpec {
    AttrSpec {
        name,
        role,
        ty: Ty::Any,
        reads_files: None,
        ignored: None,
    }
}

/// An attribute that is part of the content address.
pub const fn input(name: &'static str) -> AttrSpec {
    attr(name, Role::Input)
}

/// An attribute that is kept out of the content address.
pub const fn setting(name: &'static str) -> AttrSpec {
    attr(name, Role::Setting)
}

/// A setting whose value is never shown or stored.
pub const fn secret(name: &'static str) -> AttrSpec {
    attr(name, Role::Secret)
}

/// Whether a nested block may appear once (its value is an object) or many
/// times (a list of objects, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    Once,
    Many,
}

/// A nested block (e.g. `source_ami_filter { ... }`). Its attributes are
/// accepted without a schema of their own and take the block's role; blocks
/// nested in it are lists unless `nested` says they appear once.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    pub name: &'static str,
    pub role: Role,
    pub repeat: Repeat,
    pub nested: &'static [BlockSpec],
    /// As [`AttrSpec::ignored`]: loaded, not acted on, a warning when set.
    pub ignored: Option<&'static str>,
}

impl BlockSpec {
    /// Packer knows it, imgform does not act on it (see [`AttrSpec::ignored`]).
    pub const fn ignored(self, hint: &'static str) -> BlockSpec {
        BlockSpec {
            ignored: Some(hint),
            ..self
        }
    }

    /// Whether a block `name` inside this one appears once.
    pub fn nested_repeat(&self, name: &str) -> Repeat {
        self.nested
            .iter()
            .find(|b| b.name == name)
            .map_or(Repeat::Many, |b| b.repeat)
    }
}

/// A block that appears at most once.
pub const fn block(name: &'static str, role: Role) -> BlockSpec {
    BlockSpec {
        name,
        role,
        repeat: Repeat::Once,
        nested: &[],
        ignored: None,
    }
}

/// A block that may appear several times (a list, in order).
pub const fn blocks(name: &'static str, role: Role) -> BlockSpec {
    BlockSpec {
        name,
        role,
        repeat: Repeat::Many,
        nested: &[],
        ignored: None,
    }
}

/// A filter block as Packer writes them (`source_ami_filter`,
/// `subnet_filter`, ...): once, with an optional `filters` block inside, once.
pub const fn filter_block(name: &'static str, role: Role) -> BlockSpec {
    /// The attributes of a nested block take the outer block's role.
    const FILTERS: &[BlockSpec] = &[block("filters", Role::Input)];
    BlockSpec {
        name,
        role,
        repeat: Repeat::Once,
        nested: FILTERS,
        ignored: None,
    }
}

/// What one kind accepts.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The kind's name as templates write it (`amazon-ebs`, `shell`).
    pub kind: &'static str,
    /// Attribute groups (shared groups such as the communicator's are listed
    /// by several kinds).
    pub attrs: &'static [&'static [AttrSpec]],
    pub blocks: &'static [BlockSpec],
}

impl Schema {
    pub fn attr(&self, name: &str) -> Option<&'static AttrSpec> {
        self.attrs
            .iter()
            .flat_map(|group| group.iter())
            .find(|a| a.name == name)
    }

    pub fn block(&self, name: &str) -> Option<&'static BlockSpec> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The role of an attribute or block, if the schema lists it.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.attr(name)
            .map(|a| a.role)
            .or_else(|| self.block(name).map(|b| b.role))
    }

    /// Whether a block `name` appears once (unknown blocks: many).
    pub fn repeat(&self, name: &str) -> Repeat {
        self.block(name).map_or(Repeat::Many, |b| b.repeat)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.attrs
            .iter()
            .flat_map(|group| group.iter().map(|a| a.name))
            .chain(self.blocks.iter().map(|b| b.name))
    }

    /// Every attribute, in order.
    pub fn all_attrs(&self) -> impl Iterator<Item = &'static AttrSpec> + '_ {
        self.attrs.iter().flat_map(|group| group.iter())
    }

    /// The attributes and blocks imgform does not act on that `config`
    /// sets (to anything but null, false, "" or an empty list or object),
    /// with their hints, in schema order.
    pub fn ignored_in<'v>(
        &self,
        get: impl Fn(&str) -> Option<&'v serde_json::Value>,
    ) -> Vec<(&'static str, &'static str)> {
        self.all_attrs()
            .filter_map(|a| Some((a.name, a.ignored?)))
            .chain(
                self.blocks
                    .iter()
                    .filter_map(|b| Some((b.name, b.ignored?))),
            )
            .filter(|(name, _)| get(name).is_some_and(is_set))
            .collect()
    }
}

/// Whether a value says anything: not null, false, "", [] or {}.
pub fn is_set(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// One local file or folder a kind reads, found in its evaluated config:
/// the attribute that names it (for messages) and the path as written,
/// relative to the definition dir (or absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub attr: String,
    pub path: String,
    pub reads: Reads,
}

/// The paths named by the attributes a schema marks `reads_files`: a string
/// is one path, a list gives one per string.
pub fn files_named_by(schema: &Schema, values: &crate::spec::Attrs) -> Vec<FileRef> {
    let mut out = Vec::new();
    for (attr, reads) in schema.all_attrs().filter_map(|a| Some((a, a.reads_files?))) {
        match values.get(attr.name) {
            Some(serde_json::Value::String(path)) => out.push(FileRef {
                attr: attr.name.to_owned(),
                path: path.clone(),
                reads,
            }),
            Some(serde_json::Value::Array(items)) => {
                out.extend(items.iter().filter_map(|v| v.as_str()).map(|path| FileRef {
                    attr: attr.name.to_owned(),
                    path: path.to_owned(),
                    reads,
                }))
            }
            _ => {}
        }
    }
    out
}

/// Checks that no schema lists one name twice with different roles.
#[cfg(test)]
pub fn assert_consistent(schema: &Schema) {
    for name in schema.names() {
        let roles: Vec<_> = schema
            .all_attrs()
            .filter(|a| a.name == name)
            .map(|a| a.role)
            .collect();
        assert!(
            roles.windows(2).all(|w| w[0] == w[1]),
            "{} {}",
            schema.kind,
            name
        );
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
