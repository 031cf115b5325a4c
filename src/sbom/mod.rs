//! What is inside an image: the packages its package database lists, as a
//! software bill of materials (CycloneDX 1.5 JSON, the stored form, and SPDX
//! 2.3 JSON on request), and what changed between two builds.
//!
//! Pure data: reading the database from a tree or over a communicator is
//! `provision::inventory`'s job; storing the document is `apply`'s. An
//! inventory is always sorted (by name, then architecture, then version), so
//! the same packages give the same document bytes.

mod cyclonedx;
mod diff;
mod parse;
mod spdx;

pub use cyclonedx::{from_cyclonedx, to_cyclonedx, Subject};
pub use diff::{changes, Changed, PackageChanges, PackageVersion};
pub use parse::{
    parse_apk_installed, parse_dpkg_status, parse_os_release, parse_rpm_lines, RPM_QUERY,
};
pub use spdx::to_spdx;

use serde::{Deserialize, Serialize};

/// Which package manager a package came from (its purl type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    Deb,
    Rpm,
    Apk,
}

impl PackageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Rpm => "rpm",
            PackageKind::Apk => "apk",
        }
    }

    fn parse(text: &str) -> Option<PackageKind> {
        match text {
            "deb" => Some(PackageKind::Deb),
            "rpm" => Some(PackageKind::Rpm),
            "apk" => Some(PackageKind::Apk),
            _ => None,
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub arch: String,
    pub version: String,
    pub kind: PackageKind,
    /// The source package (deb `Source:`, rpm source rpm, apk origin) when it
    /// differs from the binary package's name.
    pub source: Option<String>,
}

/// The operating system, from `/etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12`.
    pub version_id: String,
    /// `PRETTY_NAME`, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub pretty_name: String,
}

/// The packages of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub os: OsRelease,
    pub packages: Vec<Package>,
}

impl Inventory {
    pub fn new(os: OsRelease, mut packages: Vec<Package>) -> Inventory {
        packages.sort();
        packages.dedup();
        Inventory { os, packages }
    }

    /// `debian-12`, the purl `distro` qualifier (empty when unknown).
    fn distro(&self) -> String {
        match (self.os.id.as_str(), self.os.version_id.as_str()) {
            ("", _) => String::new(),
            (id, "") => id.to_owned(),
            (id, v) => format!("{id}-{v}"),
        }
    }

    /// The package URL of `p` (purl spec: `pkg:deb/debian/openssl@3.0.11-1?arch=amd64`).
    pub fn purl(&self, p: &Package) -> String {
        let namespace = if self.os.id.is_empty() {
            match p.kind {
                PackageKind::Apk => "alpine",
                _ => "unknown",
            }
        } else {
            self.os.id.as_str()
        };
        let mut purl = format!(
            "pkg:{}/{}/{}@{}?arch={}",
            p.kind.as_str(),
            purl_escape(namespace),
            purl_escape(&p.name),
            purl_escape(&p.version),
            purl_escape(&p.arch)
        );
        let distro = self.distro();
        if !distro.is_empty() {
            purl.push_str("&distro=");
            purl.push_str(&purl_escape(&distro));
        }
        if let Some(source) = &p.source {
            purl.push_str("&upstream=");
            purl.push_str(&purl_escape(source));
        }
        purl
    }
}

/// Percent-encodes everything but the characters a purl component may
/// carry as they are (letters, digits, `.`, `-`, `_`, `~`).
fn purl_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("not an SBOM imgform wrote: {0}")]
pub struct SbomError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Inventory {
        Inventory::new(
            OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            vec![
                Package {
                    name: "openssl".into(),
                    arch: "amd64".into(),
                    version: "3.0.11-1~deb12u2".into(),
                    kind: PackageKind::Deb,
                    source: None,
                },
                Package {
                    name: "libc6".into(),
                    arch: "amd64".into(),
                    version: "2.36-9+deb12u4".into(),
                    kind: PackageKind::Deb,
                    source: Some("glibc".into()),
                },
            ],
        )
    }

    #[test]
    fn purls_escape_what_a_purl_must_and_name_the_distro() {
        let inv = sample();
        assert_eq!(
            inv.purl(&inv.packages[0]),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        assert_eq!(
            inv.purl(&inv.packages[1]),
            "pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"
        );
        let epoch = Package {
            version: "1:2.3".into(),
            ..inv.packages[1].clone()
        };
        assert!(inv.purl(&epoch).contains("@1%3A2.3?"));
    }

    #[test]
    fn inventories_are_sorted_and_deduplicated() {
        let inv = sample();
        let names: Vec<&str> = inv.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["libc6", "openssl"]);
        let twice = Inventory::new(
            inv.os.clone(),
            [inv.packages.clone(), inv.packages].concat(),
        );
        assert_eq!(twice.packages.len(), 2);
    }
}
