//! The typed manifest: one image's inputs, field by field, and how two
//! manifests differ ([`Manifest::compare`]).
//!
//! Its JSON form is the canonical document the content address hashes; the
//! field names and shapes are fixed by manifest version 1 (changing them
//! would move every address). Builder attributes that name local files keep
//! their file hashes beside the value as `"<attr>@files"`, in the same
//! `inputs` object.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{Deserializer, Error as _};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::canonical_json;
use super::RebuildReason;
use crate::addr::{ContentAddress, ImageAddr};
use crate::spec::ImageRef;

pub const MANIFEST_VERSION: u32 = 1;

/// Files read, by path → digest (`sha256:<hex>`, `sha256:<hex>+x` for
/// executables; a folder also as `<dir>/` → `tree:<merkle root>`).
pub type FileSet = BTreeMap<String, String>;

/// Everything that decides the bytes of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub imgform_manifest: u32,
    pub address: ImageAddr,
    pub builder: String,
    /// The builder attributes whose role is *input*.
    pub inputs: Inputs,
    /// In order.
    pub provisioners: Vec<ProvisionerEntry>,
    /// Each parent's content address.
    pub parents: BTreeMap<ImageAddr, ContentAddress>,
    /// Files read by functions (`file()`, `templatefile()`, ...).
    pub files: FileSet,
    /// Module folders used, whole: folder → its files.
    pub modules: BTreeMap<String, FileSet>,
    /// Variables that reach the inputs (sensitive ones as a keyed digest).
    pub variables: BTreeMap<String, Value>,
    /// The `test` blocks' provisioners (absent when there are none, so
    /// images without tests keep their addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<ProvisionerEntry>,
    /// The id a base image filter resolved to at plan time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// What the data sources its inputs use answered (`data.KIND.NAME` →
    /// the kind's summary, secrets as keyed digests). Absent when there are
    /// none, so images without data sources keep their addresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, Value>,
    /// The post-processors imgform runs, in order, each with its sequence
    /// (absent when there are none, so images without them keep their
    /// addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_processors: Vec<ProvisionerEntry>,
}

/// The builder's input attributes, and for those that name local files the
/// files' hashes (serialized beside them as `"<attr>@files"`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub values: BTreeMap<String, Value>,
    pub files: BTreeMap<String, FileSet>,
}

const FILES_SUFFIX: &str = "@files";

impl Serialize for Inputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len() + self.files.len()))?;
        for (name, value) in &self.values {
            map.serialize_entry(name, value)?;
        }
        for (attr, files) in &self.files {
            map.serialize_entry(&format!("{attr}{FILES_SUFFIX}"), files)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, Value>::deserialize(deserializer)?;
        let mut inputs = Inputs::default();
        for (key, value) in raw {
            match key.strip_suffix(FILES_SUFFIX) {
                Some(attr) => {
                    let files = serde_json::from_value(value).map_err(D::Error::custom)?;
                    inputs.files.insert(attr.to_owned(), files);
                }
                None => {
                    inputs.values.insert(key, value);
                }
            }
        }
        Ok(inputs)
    }
}

/// One provisioner: its kind, its input config (paths relative) and the
/// files it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionerEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub config: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: FileSet,
    /// A post-processor's sequence (Packer's chain); none for provisioners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<usize>,
}

impl Manifest {
    /// The manifest as a JSON value (what the canonical bytes encode).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a manifest serializes")
    }

    /// The canonical bytes: what the content address hashes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical_json(&self.to_value())
    }

    /// Reads stored canonical bytes (the object store's copy).
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Why `self` differs from `old`, field by field: files as
    /// `FileChanged`, variables as `VariableChanged`, parents as
    /// `ParentRebuilt`, the base as `BaseUpdated`, data sources' answers as
    /// `DataChanged`, anything else as
    /// `InputChanged` at the deepest differing path. Two manifests that
    /// differ somewhere no field comparison explains give `UnknownChange`:
    /// a difference is never silently nothing.
    pub fn compare(&self, old: &Manifest) -> Vec<RebuildReason> {
        let mut out = Vec::new();
        // In the order of the manifest's (sorted) keys, as they read.
        if self.address != old.address {
            out.push(changed("address", &old.address, &self.address));
        }
        if self.base != old.base {
            out.push(RebuildReason::BaseUpdated {
                old_id: old.base.clone().unwrap_or_else(|| "(none)".to_owned()),
                new_id: self.base.clone().unwrap_or_else(|| "(none)".to_owned()),
            });
        }
        if self.builder != old.builder {
            out.push(changed("builder", &old.builder, &self.builder));
        }
        for address in keys(&old.data, &self.data) {
            let (was, now) = (old.data.get(address), self.data.get(address));
            if was != now {
                out.push(RebuildReason::DataChanged {
                    address: address.clone(),
                    old: was.cloned(),
                    new: now.cloned(),
                });
            }
        }
        files_changed(&old.files, &self.files, &mut out);
        if self.imgform_manifest != old.imgform_manifest {
            out.push(changed(
                "imgform_manifest",
                &old.imgform_manifest,
                &self.imgform_manifest,
            ));
        }
        self.inputs.compare(&old.inputs, &mut out);
        for dir in keys(&old.modules, &self.modules) {
            let empty = FileSet::new();
            files_changed(
                old.modules.get(dir).unwrap_or(&empty),
                self.modules.get(dir).unwrap_or(&empty),
                &mut out,
            );
        }
        for parent in keys(&old.parents, &self.parents) {
            if old.parents.get(parent) != self.parents.get(parent) {
                out.push(RebuildReason::ParentRebuilt {
                    address: parent.to_string(),
                });
            }
        }
        compare_list(
            "provisioners",
            &old.provisioners,
            &self.provisioners,
            &mut out,
        );
        compare_list("tests", &old.tests, &self.tests, &mut out);
        compare_list(
            "post_processors",
            &old.post_processors,
            &self.post_processors,
            &mut out,
        );
        for name in keys(&old.variables, &self.variables) {
            if old.variables.get(name) != self.variables.get(name) {
                out.push(RebuildReason::VariableChanged { name: name.clone() });
            }
        }
        if out.is_empty() && self != old {
            out.push(RebuildReason::UnknownChange);
        }
        one_reason_per_file(out)
    }
}

/// A file is read in more than one way (a module's tree records it with its
/// mode, the provisioner that runs it by content alone): one change is one
/// reason. The record that carries the mode (`+x`) says more and is kept.
fn one_reason_per_file(reasons: Vec<RebuildReason>) -> Vec<RebuildReason> {
    let says_mode = |r: &RebuildReason| match r {
        RebuildReason::FileChanged { old, new, .. } => [old, new]
            .iter()
            .any(|d| d.as_deref().is_some_and(|d| d.ends_with("+x"))),
        _ => false,
    };
    let mut out: Vec<RebuildReason> = Vec::with_capacity(reasons.len());
    for reason in reasons {
        let RebuildReason::FileChanged { path, .. } = &reason else {
            out.push(reason);
            continue;
        };
        let seen = out
            .iter()
            .position(|r| matches!(r, RebuildReason::FileChanged { path: p, .. } if p == path));
        match seen {
            Some(i) if says_mode(&reason) && !says_mode(&out[i]) => out[i] = reason,
            Some(_) => {}
            None => out.push(reason),
        }
    }
    out
}

impl Inputs {
    fn compare(&self, old: &Inputs, out: &mut Vec<RebuildReason>) {
        // Values and file sets interleave by name, as `<attr>@files` sorts
        // right after `<attr>`.
        let names: BTreeSet<String> = keys(&old.values, &self.values)
            .into_iter()
            .cloned()
            .chain(
                keys(&old.files, &self.files)
                    .into_iter()
                    .map(|a| format!("{a}{FILES_SUFFIX}")),
            )
            .collect();
        for name in names {
            match name.strip_suffix(FILES_SUFFIX) {
                Some(attr) => {
                    let empty = FileSet::new();
                    files_changed(
                        old.files.get(attr).unwrap_or(&empty),
                        self.files.get(attr).unwrap_or(&empty),
                        out,
                    );
                }
                None => leaf_changes(
                    &format!("inputs.{name}"),
                    old.values.get(&name),
                    self.values.get(&name),
                    out,
                ),
            }
        }
    }
}

fn changed<T: Serialize>(path: &str, old: &T, new: &T) -> RebuildReason {
    RebuildReason::InputChanged {
        path: path.to_owned(),
        old: serde_json::to_value(old).ok(),
        new: serde_json::to_value(new).ok(),
    }
}

/// The union of two maps' keys, sorted.
fn keys<'a, K: Ord, V>(a: &'a BTreeMap<K, V>, b: &'a BTreeMap<K, V>) -> BTreeSet<&'a K> {
    a.keys().chain(b.keys()).collect()
}

fn compare_list(
    list: &str,
    old: &[ProvisionerEntry],
    new: &[ProvisionerEntry],
    out: &mut Vec<RebuildReason>,
) {
    let same_shape = old.len() == new.len() && old.iter().zip(new).all(|(x, y)| x.kind == y.kind);
    if !same_shape {
        let kinds = |items: &[ProvisionerEntry]| {
            Value::Array(
                items
                    .iter()
                    .map(|p| Value::String(p.kind.clone()))
                    .collect(),
            )
        };
        out.push(RebuildReason::InputChanged {
            path: list.into(),
            old: Some(kinds(old)),
            new: Some(kinds(new)),
        });
    }
    for (i, (x, y)) in old.iter().zip(new).enumerate() {
        if x.kind != y.kind {
            continue;
        }
        files_changed(&x.files, &y.files, out);
        if x.chain != y.chain {
            out.push(changed(&format!("{list}[{i}].chain"), &x.chain, &y.chain));
        }
        for name in keys(&x.config, &y.config) {
            leaf_changes(
                &format!("{list}[{i}].config.{name}"),
                x.config.get(name),
                y.config.get(name),
                out,
            );
        }
    }
    if !same_shape {
        // Files of added/removed provisioners.
        let empty = FileSet::new();
        for p in old.iter().skip(new.len()) {
            files_changed(&p.files, &empty, out);
        }
        for p in new.iter().skip(old.len()) {
            files_changed(&empty, &p.files, out);
        }
    }
}

fn files_changed(old: &FileSet, new: &FileSet, out: &mut Vec<RebuildReason>) {
    for path in keys(old, new) {
        let (a, b) = (old.get(path), new.get(path));
        // A directory's tree entry changes whenever a file in it does; the
        // files say more.
        if a != b && !path.ends_with('/') {
            out.push(RebuildReason::FileChanged {
                path: path.clone(),
                old: a.cloned(),
                new: b.cloned(),
            });
        }
    }
}

/// A value with image references reduced to the parent's address: a change
/// of a parent's content address is reported as `ParentRebuilt`, not as a
/// change of every string that mentions the parent.
fn without_ref_addresses(value: &Value) -> Value {
    match value {
        Value::String(s) => {
            let refs = ImageRef::find(s);
            if refs.is_empty() {
                return value.clone();
            }
            let mut out = String::new();
            let mut last = 0;
            for (addr, _, range) in refs {
                out.push_str(&s[last..range.start]);
                out.push_str(&format!("${{image.{addr}.id}}"));
                last = range.end;
            }
            out.push_str(&s[last..]);
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(without_ref_addresses).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), without_ref_addresses(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn leaf_changes(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<RebuildReason>,
) {
    if old == new {
        return;
    }
    let (old_plain, new_plain) = (
        old.map(without_ref_addresses),
        new.map(without_ref_addresses),
    );
    if old_plain == new_plain {
        return;
    }
    match (old_plain.as_ref(), new_plain.as_ref()) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in names {
                leaf_changes(&format!("{path}.{k}"), a.get(k), b.get(k), out);
            }
        }
        (old, new) => out.push(RebuildReason::InputChanged {
            path: path.to_owned(),
            old: old.cloned(),
            new: new.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(doc: Value) -> Manifest {
        serde_json::from_value(doc).expect("a manifest")
    }

    fn base() -> Value {
        json!({
            "imgform_manifest": 1, "address": "null.a", "builder": "null",
            "inputs": {"base": "a", "user_data_file": "u.txt", "user_data_file@files": {"u.txt": "sha256:1"}},
            "files": {}, "modules": {}, "variables": {"v": 1}, "parents": {"null.p": "sha256:1"},
            "provisioners": [{"type": "shell-local", "config": {"inline": ["x"]}, "files": {"s.sh": "sha256:1"}}]
        })
    }

    #[test]
    fn round_trips_to_the_same_canonical_bytes() {
        let doc = base();
        let typed = manifest(doc.clone());
        assert_eq!(typed.canonical_bytes(), canonical_json(&doc));
        assert_eq!(typed.inputs.files["user_data_file"]["u.txt"], "sha256:1");
    }

    #[test]
    fn reasons_are_typed() {
        let old = manifest(base());
        let mut doc = base();
        doc["inputs"]["base"] = json!("b");
        doc["inputs"]["user_data_file@files"]["u.txt"] = json!("sha256:2");
        doc["variables"]["v"] = json!(2);
        doc["parents"]["null.p"] = json!("sha256:2");
        doc["provisioners"][0]["config"]["inline"] = json!(["y"]);
        doc["provisioners"][0]["files"]["s.sh"] = json!("sha256:2");
        let r = manifest(doc).compare(&old);
        assert!(r.contains(&RebuildReason::InputChanged {
            path: "inputs.base".into(),
            old: Some(json!("a")),
            new: Some(json!("b"))
        }));
        assert!(r.contains(&RebuildReason::VariableChanged { name: "v".into() }));
        assert!(r.contains(&RebuildReason::ParentRebuilt {
            address: "null.p".into()
        }));
        for file in ["s.sh", "u.txt"] {
            assert!(
                r.iter()
                    .any(|x| matches!(x, RebuildReason::FileChanged { path, .. } if path == file)),
                "{file}: {r:?}"
            );
        }
        assert!(r.iter().any(|x| matches!(x, RebuildReason::InputChanged { path, .. } if path == "provisioners[0].config.inline")));
    }

    #[test]
    fn a_data_source_answer_is_its_own_reason() {
        let mut doc = base();
        doc["data"] = json!({"data.amazon-ami.ubuntu": "ami-1"});
        let old = manifest(doc.clone());
        doc["data"]["data.amazon-ami.ubuntu"] = json!("ami-2");
        doc["data"]["data.git-commit.head"] = json!("abc");
        assert_eq!(
            manifest(doc).compare(&old),
            vec![
                RebuildReason::DataChanged {
                    address: "data.amazon-ami.ubuntu".into(),
                    old: Some(json!("ami-1")),
                    new: Some(json!("ami-2")),
                },
                RebuildReason::DataChanged {
                    address: "data.git-commit.head".into(),
                    old: None,
                    new: Some(json!("abc")),
                },
            ]
        );
        // No data: the field is left out, so older addresses stay.
        let plain = manifest(base());
        assert!(!String::from_utf8(plain.canonical_bytes())
            .unwrap()
            .contains("\"data\""));
    }

    #[test]
    fn an_unexplained_difference_is_never_nothing() {
        let old = manifest(base());
        let mut new = old.clone();
        assert!(new.compare(&old).is_empty());
        // A directory's tree entry alone is not reported as a file...
        new.files.insert("dir/".into(), "tree:abc".into());
        // ...so the difference has its own reason.
        assert_eq!(new.compare(&old), vec![RebuildReason::UnknownChange]);
    }

    #[test]
    fn a_file_read_twice_is_one_reason_with_its_mode() {
        let mut doc = base();
        doc["modules"] = json!({"m": {"m/s.sh": "sha256:1+x"}});
        doc["provisioners"][0]["files"] = json!({"m/s.sh": "sha256:1"});
        let old = manifest(doc.clone());
        doc["modules"]["m"]["m/s.sh"] = json!("sha256:2+x");
        doc["provisioners"][0]["files"]["m/s.sh"] = json!("sha256:2");
        assert_eq!(
            manifest(doc).compare(&old),
            vec![RebuildReason::FileChanged {
                path: "m/s.sh".into(),
                old: Some("sha256:1+x".into()),
                new: Some("sha256:2+x".into()),
            }]
        );
    }
}
