//! Package databases as their package managers write them: dpkg's `status`
//! file, apk's `installed` file, and the lines of an `rpm -qa --qf` query
//! (rpm's own database is binary; `provision::inventory` asks rpm).

use super::{OsRelease, Package, PackageKind};

/// The installed packages of a dpkg `status` file (`/var/lib/dpkg/status`):
/// paragraphs of `Field: value`, continuation lines indented. Packages that
/// are only known (removed, config-files, half-installed) are left out.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    paragraphs(text)
        .filter_map(|fields| {
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim())
            };
            let status = field("Status")?;
            if !status.ends_with(" installed") {
                return None;
            }
            let name = field("Package")?.to_owned();
            // `Source: glibc` or `Source: glibc (2.36-9)`.
            let source = field("Source")
                .and_then(|s| s.split_whitespace().next())
                .filter(|s| *s != name)
                .map(str::to_owned);
            Some(Package {
                version: field("Version")?.to_owned(),
                arch: field("Architecture").unwrap_or("").to_owned(),
                kind: PackageKind::Deb,
                source,
                name,
            })
        })
        .collect()
}

/// The packages of apk's `installed` database (`/lib/apk/db/installed`):
/// paragraphs of one-letter `K:value` lines.
pub fn parse_apk_installed(text: &str) -> Vec<Package> {
    text.split("\n\n")
        .filter_map(|para| {
            let field = |key: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
                    .map(str::trim)
            };
            let name = field("P")?.to_owned();
            Some(Package {
                version: field("V")?.to_owned(),
                arch: field("A").unwrap_or("").to_owned(),
                kind: PackageKind::Apk,
                source: field("o").filter(|o| *o != name).map(str::to_owned),
                name,
            })
        })
        .collect()
}

/// The query `provision::inventory` runs on rpm systems, one package per
/// line: name, `[epoch:]version-release`, arch, source rpm, tab-separated.
pub const RPM_QUERY: &str =
    "%{NAME}\\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n";

/// The lines of [`RPM_QUERY`]'s output. rpm's pseudo-packages (the
/// `gpg-pubkey` entries of imported keys) are left out.
pub fn parse_rpm_lines(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let name = cols.next()?.trim().to_owned();
            let version = cols.next()?.trim().to_owned();
            let arch = cols.next().unwrap_or("").trim();
            if name.is_empty() || version.is_empty() || name == "gpg-pubkey" {
                return None;
            }
            let source = cols
                .next()
                .and_then(source_rpm_name)
                .filter(|s| *s != name)
                .map(str::to_owned);
            Some(Package {
                name,
                version,
                arch: if arch == "(none)" { "" } else { arch }.to_owned(),
                kind: PackageKind::Rpm,
                source,
            })
        })
        .collect()
}

/// `openssl-3.0.7-24.el9.src.rpm` → `openssl`.
fn source_rpm_name(file: &str) -> Option<&str> {
    let stem = file.trim().strip_suffix(".rpm")?;
    let stem = stem.rsplit_once('.')?.0; // the arch: src / nosrc
    let stem = stem.rsplit_once('-')?.0; // release
    let name = stem.rsplit_once('-')?.0; // version
    (!name.is_empty()).then_some(name)
}

/// `/etc/os-release`: `KEY=value` lines, values optionally quoted.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value)
            .replace("\\\"", "\"");
        match key {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

/// The paragraphs of a deb822 file as (field, value) lists; continuation
/// lines are appended to the field they continue.
fn paragraphs(text: &str) -> impl Iterator<Item = Vec<(&str, String)>> + '_ {
    text.split("\n\n").map(|para| {
        let mut fields: Vec<(&str, String)> = Vec::new();
        for line in para.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some((_, v)) = fields.last_mut() {
                    v.push('\n');
                    v.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim(), v.trim().to_owned()));
            }
        }
        fields
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u4)
Version: 2.36-9+deb12u4
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.

Package: old-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2
Source: openssl

Package: tzdata
Status: hold ok installed
Architecture: all
Version: 2024a-0+deb12u1
";

    #[test]
    fn dpkg_status_lists_installed_packages_with_their_source() {
        let pkgs = parse_dpkg_status(STATUS);
        let got: Vec<(&str, &str, &str, Option<&str>)> = pkgs
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.version.as_str(),
                    p.arch.as_str(),
                    p.source.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("libc6", "2.36-9+deb12u4", "amd64", Some("glibc")),
                ("openssl", "3.0.11-1~deb12u2", "amd64", None),
                ("tzdata", "2024a-0+deb12u1", "all", None),
            ]
        );
    }

    #[test]
    fn apk_installed_is_read() {
        let text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\nC:Q1def=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n";
        let pkgs = parse_apk_installed(text);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "musl");
        assert_eq!(pkgs[0].source, None);
        assert_eq!(pkgs[1].version, "3.1.4-r5");
        assert_eq!(pkgs[1].source.as_deref(), Some("openssl"));
    }

    #[test]
    fn rpm_lines_are_read_and_key_pseudo_packages_dropped() {
        let text = "openssl-libs\t1:3.0.7-24.el9\tx86_64\topenssl-3.0.7-24.el9.src.rpm\n\
                    gpg-pubkey\t8483c65d-5ccc5b19\t(none)\t(none)\n\
                    bash\t5.1.8-6.el9\tx86_64\tbash-5.1.8-6.el9.src.rpm\n";
        let pkgs = parse_rpm_lines(text);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "openssl-libs");
        assert_eq!(pkgs[0].version, "1:3.0.7-24.el9");
        assert_eq!(pkgs[0].source.as_deref(), Some("openssl"));
        assert_eq!(pkgs[1].source, None);
    }

    #[test]
    fn os_release_values_may_be_quoted() {
        let os = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        );
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }
}
