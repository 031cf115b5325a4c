//! Addresses: [`ImageAddr`] names one image (a build × source pair),
//! [`TargetAddr`] names where images live and so which state file holds them,
//! [`ContentAddress`] names what an image is made of (its manifest's hash).
//!
//! An image address is `BUILD.TYPE.NAME` (e.g. `golden.amazon-ebs.test_aws`),
//! or `TYPE.NAME` for an unnamed build, exactly as Packer names its builds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageAddr {
    pub build: Option<String>,
    pub source_type: String,
    pub source_name: String,
}

impl ImageAddr {
    pub fn new(build: Option<&str>, source_type: &str, source_name: &str) -> ImageAddr {
        ImageAddr {
            build: build.map(str::to_owned),
            source_type: source_type.to_owned(),
            source_name: source_name.to_owned(),
        }
    }

    /// A filesystem- and tag-friendly form: `build-type-name`.
    pub fn slug(&self) -> String {
        let mut out = String::new();
        if let Some(build) = &self.build {
            out.push_str(build);
            out.push('-');
        }
        out.push_str(&self.source_type);
        out.push('-');
        out.push_str(&self.source_name);
        let kept = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if out.chars().all(kept) {
            return out;
        }
        // Something was replaced (`cloudimg.deps`): `a.b` and `a_b` must not
        // share a slug (their artifacts share an output folder), so a lossy
        // slug ends with a short digest of the address.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(self.to_string().as_bytes());
        let mut slug: String = out.chars().map(|c| if kept(c) { c } else { '_' }).collect();
        slug.push('-');
        slug.push_str(&hex::encode(&digest[..4]));
        slug
    }
}

impl ImageAddr {
    /// The printed form (`build.type.name`) in pieces, without building it.
    fn printed(&self) -> [&[u8]; 5] {
        let (build, dot) = match &self.build {
            Some(b) => (b.as_bytes(), &b"."[..]),
            None => (&b""[..], &b""[..]),
        };
        [
            build,
            dot,
            self.source_type.as_bytes(),
            b".",
            self.source_name.as_bytes(),
        ]
    }
}

/// Compares two byte strings given in pieces as their concatenations
/// compare, a run of bytes at a time (addresses are compared a great many
/// times while planning thousands of images).
fn cmp_pieces(a: &[&[u8]], b: &[&[u8]]) -> std::cmp::Ordering {
    let mut a = a.iter().copied().filter(|p| !p.is_empty());
    let mut b = b.iter().copied().filter(|p| !p.is_empty());
    let (mut x, mut y) = (a.next(), b.next());
    loop {
        match (x, y) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(p), Some(q)) => {
                let n = p.len().min(q.len());
                match p[..n].cmp(&q[..n]) {
                    std::cmp::Ordering::Equal => {}
                    unequal => return unequal,
                }
                x = if n == p.len() {
                    a.next()
                } else {
                    Some(&p[n..])
                };
                y = if n == q.len() {
                    b.next()
                } else {
                    Some(&q[n..])
                };
            }
        }
    }
}

/// Addresses sort as they print, so that lists, state files and plans are
/// in the order a reader expects.
impl Ord for ImageAddr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // The common case, one build and builder type: only the names differ.
        if self.build == other.build && self.source_type == other.source_type {
            return self.source_name.cmp(&other.source_name);
        }
        cmp_pieces(&self.printed(), &other.printed()).then_with(|| {
            (&self.build, &self.source_type, &self.source_name).cmp(&(
                &other.build,
                &other.source_type,
                &other.source_name,
            ))
        })
    }
}

impl PartialOrd for ImageAddr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ImageAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(build) = &self.build {
            write!(f, "{build}.")?;
        }
        write!(f, "{}.{}", self.source_type, self.source_name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an image address; expected BUILD.TYPE.NAME or TYPE.NAME (e.g. golden.null.base)"
)]
pub struct ParseAddrError(pub String);

impl FromStr for ImageAddr {
    type Err = ParseAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(ParseAddrError(s.to_owned()));
        }
        // A source type and name never hold a dot; a build name may
        // (`cloudimg.deps`): the last two parts are the source's.
        match parts.as_slice() {
            [t, n] => Ok(ImageAddr::new(None, t, n)),
            [build @ .., t, n] if !build.is_empty() => {
                Ok(ImageAddr::new(Some(&build.join(".")), t, n))
            }
            _ => Err(ParseAddrError(s.to_owned())),
        }
    }
}

impl Serialize for ImageAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where an image lives: `local`, `aws/<region>`, `openstack/<cloud>/<region>`.
/// State is kept per target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TargetAddr(pub String);

impl TargetAddr {
    pub fn local() -> TargetAddr {
        TargetAddr("local".to_owned())
    }

    /// The state file stem for this target: `aws/us-east-1` → `aws-us-east-1`.
    pub fn slug(&self) -> String {
        self.0
            .chars()
            .map(|c| match c {
                '/' => '-',
                c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' => c,
                _ => '_',
            })
            .collect()
    }
}

impl fmt::Display for TargetAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `sha256:<hex>` of an image's canonical manifest: what the image is made
/// of. Equal content addresses mean equal inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentAddress(String);

impl ContentAddress {
    /// The content address of `bytes` (a canonical manifest).
    pub fn of(bytes: &[u8]) -> ContentAddress {
        use sha2::Digest;
        ContentAddress(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(bytes))
        ))
    }

    /// An address as recorded (a state, a plan file, a tag). Not checked.
    pub fn from_recorded(text: impl Into<String>) -> ContentAddress {
        ContentAddress(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex digest without `sha256:` (the object store's key).
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }

    /// `sha256:abcdef123456` — enough to recognise, short enough to read.
    pub fn short(&self) -> String {
        let hex = self.hex();
        format!("sha256:{}", &hex[..hex.len().min(12)])
    }
}

impl std::ops::Deref for ContentAddress {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for ContentAddress {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ContentAddress {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_as_their_printed_forms_do() {
        let names = [
            (None, "null", "a"),
            (None, "null", "a.b"),
            (Some("null"), "a", "b"),
            (Some("a"), "null", "b"),
            (Some("a.null"), "b", "c"),
            (Some("a"), "null.b", "c"),
            (Some("ab"), "c", "d"),
            (Some("a"), "b", "c.d"),
            (None, "nul", "l"),
            (None, "null", ""),
            (Some(""), "null", "a"),
            (None, "null", "img10"),
            (None, "null", "img9"),
            (None, "amazon-ebs", "x"),
            (Some("cloudimg.deps"), "null", "x"),
        ];
        let addrs: Vec<ImageAddr> = names
            .iter()
            .map(|(b, t, n)| ImageAddr::new(*b, t, n))
            .collect();
        for a in &addrs {
            for b in &addrs {
                let expected = a.to_string().cmp(&b.to_string()).then_with(|| {
                    (&a.build, &a.source_type, &a.source_name).cmp(&(
                        &b.build,
                        &b.source_type,
                        &b.source_name,
                    ))
                });
                assert_eq!(a.cmp(b), expected, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn parses_and_prints_addresses() {
        let a: ImageAddr = "golden.null.base".parse().unwrap();
        assert_eq!(a.build.as_deref(), Some("golden"));
        assert_eq!(a.to_string(), "golden.null.base");
        let b: ImageAddr = "null.base".parse().unwrap();
        assert_eq!(b.build, None);
        assert_eq!(b.slug(), "null-base");
        // A slug that had to replace something is told apart by a digest.
        let dotted: ImageAddr = "a.b.null.base".parse().unwrap();
        let underscored: ImageAddr = "a_b.null.base".parse().unwrap();
        assert_eq!(underscored.slug(), "a_b-null-base");
        assert!(
            dotted.slug().starts_with("a_b-null-base-"),
            "{}",
            dotted.slug()
        );
        assert_ne!(dotted.slug(), underscored.slug());
        // A dotted build name: the last two parts are the source's.
        let c: ImageAddr = "cloudimg.deps.null.base".parse().unwrap();
        assert_eq!(c.build.as_deref(), Some("cloudimg.deps"));
        assert_eq!(
            (c.source_type.as_str(), c.source_name.as_str()),
            ("null", "base")
        );
        assert_eq!(c.to_string(), "cloudimg.deps.null.base");
        assert!("a..c".parse::<ImageAddr>().is_err());
        assert!("base".parse::<ImageAddr>().is_err());
    }

    #[test]
    fn addresses_sort_as_they_print() {
        let mut addrs: Vec<ImageAddr> = ["null.b", "golden.null.a", "a.null.z", "null.a"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        addrs.sort();
        let printed: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        assert_eq!(printed, ["a.null.z", "golden.null.a", "null.a", "null.b"]);
    }

    #[test]
    fn target_slug() {
        assert_eq!(TargetAddr("aws/us-east-1".into()).slug(), "aws-us-east-1");
        assert_eq!(TargetAddr::local().slug(), "local");
    }
}
