//! Evaluated images: what `config` hands to the rest of the pipeline.
//!
//! No HCL type crosses this boundary: values are `serde_json::Value`, with
//! attributes split by role (inputs vs build settings vs secrets) as the
//! builder's schema says. References to other images are still symbolic
//! here: an `image.<ADDR>.id` expression evaluates to [`ImageRef::token`], a
//! string carrying the parent's content address, and `apply` swaps in the
//! parent's real artifact id with [`substitute_image_refs`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::addr::{ImageAddr, TargetAddr};
use crate::diag::SourceLoc;

pub type Attrs = BTreeMap<String, Value>;

/// One image to produce, fully evaluated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSpec {
    pub addr: ImageAddr,
    pub builder: String,
    pub target: TargetAddr,
    /// Builder attributes that are inputs (part of the content address).
    pub inputs: Attrs,
    /// Builder attributes that are build settings (not part of the address).
    pub settings: Attrs,
    /// Secret settings. Never serialized: a saved plan must ask for them again.
    #[serde(skip)]
    pub secrets: Attrs,
    pub provisioners: Vec<ProvisionerSpec>,
    /// Provisioners of `test` blocks: run against the finished image; the
    /// image is recorded only if they pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<ProvisionerSpec>,
    /// Module folders this image uses, relative to the definition dir.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// `post-processor` blocks in order, each with its sequence (`chain`).
    /// Those imgform runs (see `postprocess::KINDS`) split their attributes
    /// by role like provisioners; the others keep every attribute in
    /// `config`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_processors: Vec<ProvisionerSpec>,
    /// Images this one is built from (through `image.<ADDR>.id`).
    pub parents: BTreeSet<ImageAddr>,
    /// Variables whose values reach this image's inputs, with the value as it
    /// enters the manifest (sensitive values redacted).
    pub variables: BTreeMap<String, Value>,
    /// Files read by functions (`file()`, `templatefile()`, ...): path
    /// relative to the definition dir → sha256 hex.
    pub files_read: BTreeMap<String, String>,
    /// Settings whose value is only known when the build runs (they call
    /// `timestamp()`/`uuidv4()`); re-evaluated at apply time.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub apply_time_settings: BTreeSet<String>,
    /// The base image a filter resolved to at plan time (`resolve`); part of
    /// the manifest, used by the builder instead of the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<crate::state::BaseRecord>,
    /// The data sources whose results reach this image's inputs, as the
    /// resolve stage found them (`data.KIND.NAME` → record): their
    /// summaries are part of the manifest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, crate::state::DataRecord>,
    pub keep_previous: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// The definition dir, absolute. Not part of any content address.
    pub def_dir: PathBuf,
    /// Folders outside the definition dir that manifests name by a label
    /// instead of their absolute path (the installed diskimage-builder
    /// elements: `<diskimage-builder>`), so that where a package is
    /// installed does not change a content address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path_labels: Vec<(PathBuf, String)>,
    /// Where the source block is, for messages.
    pub loc: SourceLoc,
    /// Where each attribute was written, for messages from later stages.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attr_locs: BTreeMap<String, SourceLoc>,
    /// Sensitive values, to scrub from output. Never serialized.
    #[serde(skip)]
    pub sensitive_values: Vec<String>,
}

impl ImageSpec {
    /// An attribute of the source, whatever its role.
    pub fn attr(&self, name: &str) -> Option<&Value> {
        self.inputs
            .get(name)
            .or_else(|| self.settings.get(name))
            .or_else(|| self.secrets.get(name))
    }

    pub fn attr_str(&self, name: &str) -> Option<&str> {
        self.attr(name).and_then(Value::as_str)
    }

    /// A list-of-strings attribute; a single string is a list of one, empty
    /// strings are dropped.
    pub fn attr_strings(&self, name: &str) -> Vec<String> {
        match self.attr(name) {
            Some(Value::Array(items)) => {
                items.iter().map(scalar).filter(|s| !s.is_empty()).collect()
            }
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// A boolean attribute, also when written as `"true"`/`"false"`.
    pub fn attr_bool(&self, name: &str) -> Option<bool> {
        match self.attr(name) {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }

    /// Replaces every known secret value in `text` with `(sensitive value)`.
    pub fn scrub(&self, text: &str) -> String {
        crate::sensitive::scrub(text, &self.sensitive_values)
    }
}

/// A value as text: strings as they are, null as empty, anything else as JSON.
pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionerSpec {
    pub kind: String,
    /// Attributes that are inputs.
    pub config: Attrs,
    /// Attributes that are settings (not hashed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: Attrs,
    pub max_retries: u32,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub pause_before: Option<Duration>,
    pub loc: SourceLoc,
    /// Where each attribute was written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attr_locs: BTreeMap<String, SourceLoc>,
    /// For provisioners from a module: the module dir, relative to the
    /// definition dir; relative paths in the config resolve against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<String>,
    /// For a post-processor: the sequence it belongs to (Packer's chain;
    /// a lone `post-processor` block is a sequence of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<usize>,
}

impl ProvisionerSpec {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.config.get(name).and_then(Value::as_str)
    }

    /// A list-of-strings attribute; a single string counts as a list of one.
    pub fn strings(&self, name: &str) -> Vec<String> {
        match self.config.get(name) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
}

mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A reference to another image's artifact, as it appears in values before
/// the parent is built.
pub struct ImageRef;

impl ImageRef {
    const PREFIX: &'static str = "imgform-image://";

    /// The stand-in for `image.<addr>.id` while planning: it carries the
    /// parent's content address, so a parent's change changes the child's.
    pub fn token(addr: &ImageAddr, content_address: &str) -> String {
        format!("{}{addr}@{content_address}", Self::PREFIX)
    }

    /// All image references in a string: (addr, content address, byte range).
    pub fn find(text: &str) -> Vec<(ImageAddr, String, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(start) = text[from..].find(Self::PREFIX).map(|i| i + from) {
            let rest = &text[start + Self::PREFIX.len()..];
            let end_rel = rest
                .find(|c: char| {
                    !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':'))
                })
                .unwrap_or(rest.len());
            let body = &rest[..end_rel];
            if let Some((addr, content)) = body.split_once('@') {
                // A content address is `sha256:` + 64 hex; trim anything after it.
                let content: String = content.chars().take("sha256:".len() + 64).collect();
                if let Ok(addr) = addr.parse::<ImageAddr>() {
                    let end =
                        start + Self::PREFIX.len() + addr.to_string().len() + 1 + content.len();
                    out.push((addr, content, start..end));
                    from = end;
                    continue;
                }
            }
            from = start + Self::PREFIX.len();
        }
        out
    }
}

/// Replaces image reference tokens in every string of `value` using
/// `artifact_id(addr)`. Returns the addresses that could not be resolved.
pub fn substitute_image_refs(
    value: &mut Value,
    artifact_id: &dyn Fn(&ImageAddr) -> Option<String>,
) -> Vec<ImageAddr> {
    let mut missing = Vec::new();
    substitute_inner(value, artifact_id, &mut missing);
    missing
}

fn substitute_inner(
    value: &mut Value,
    artifact_id: &dyn Fn(&ImageAddr) -> Option<String>,
    missing: &mut Vec<ImageAddr>,
) {
    match value {
        Value::String(s) => {
            let refs = ImageRef::find(s);
            if refs.is_empty() {
                return;
            }
            let mut out = String::with_capacity(s.len());
            let mut last = 0;
            for (addr, _, range) in refs {
                out.push_str(&s[last..range.start]);
                match artifact_id(&addr) {
                    Some(id) => out.push_str(&id),
                    None => {
                        out.push_str(&s[range.clone()]);
                        missing.push(addr);
                    }
                }
                last = range.end;
            }
            out.push_str(&s[last..]);
            *s = out;
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| substitute_inner(v, artifact_id, missing)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| substitute_inner(v, artifact_id, missing)),
        _ => {}
    }
}

/// Parses Packer-style durations: `30s`, `5m`, `1h30m`, `2d` (imgform also
/// takes days and weeks for `max_age`), or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphabetic() || n == 'µ' {
                unit.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        let scale = match unit.as_str() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "w" => 7.0 * 86400.0,
            _ => return None,
        };
        total += n * scale;
    }
    if !number.is_empty() {
        return None;
    }
    // Too large for a Duration (or not a number) is no duration.
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        // Out of range is not a duration, never a panic.
        assert_eq!(parse_duration("99999999999999999999s"), None);
        assert_eq!(parse_duration("1e20"), None);
        assert_eq!(parse_duration("-5"), None);
        assert_eq!(parse_duration("NaN"), None);
    }

    #[test]
    fn image_refs_roundtrip() {
        let addr: ImageAddr = "golden.null.base".parse().unwrap();
        let ca = format!("sha256:{}", "a".repeat(64));
        let mut v =
            serde_json::json!({"base": format!("prefix-{}-suffix", ImageRef::token(&addr, &ca))});
        let missing = substitute_image_refs(&mut v, &|a| Some(format!("id-of-{a}")));
        assert!(missing.is_empty());
        assert_eq!(v["base"], "prefix-id-of-golden.null.base-suffix");
    }
}
