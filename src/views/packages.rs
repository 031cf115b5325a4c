//! Package changes between two builds of an image: for `imgform diff`, the
//! apply summary and the Markdown after an apply.

use super::Style;
use crate::addr::ImageAddr;
use crate::sbom::PackageChanges;

/// How many package lines the apply summary shows per image before it
/// points at `imgform diff`.
const SUMMARY_LINES: usize = 15;

/// `imgform diff ADDR`: every change, one per line.
pub fn diff(addr: &ImageAddr, changes: &PackageChanges, style: Style) -> String {
    if changes.is_empty() {
        return format!("No package changes in {addr} since its previous build.\n");
    }
    let mut out = format!(
        "Package changes in {} since its previous build: {}.\n\n",
        style.bold(&addr.to_string()),
        changes.summary()
    );
    for line in lines(changes, style) {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// The apply summary's lines for one rebuilt image (empty when nothing
/// changed).
pub fn summary(addr: &ImageAddr, changes: &PackageChanges, style: Style) -> String {
    if changes.is_empty() {
        return String::new();
    }
    let mut out = format!("  {addr}: packages {}\n", changes.summary());
    let all = lines(changes, style);
    for line in all.iter().take(SUMMARY_LINES) {
        out.push_str(&format!("      {line}\n"));
    }
    if all.len() > SUMMARY_LINES {
        out.push_str(&format!(
            "      … and {} more (imgform diff {addr})\n",
            all.len() - SUMMARY_LINES
        ));
    }
    out
}

/// `~ openssl 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1`, `+ curl 7.88.1`, `- libfoo 1.0`.
fn lines(changes: &PackageChanges, style: Style) -> Vec<String> {
    let changed = changes
        .changed
        .iter()
        .map(|c| format!("{} {} {} → {}", style.yellow("~"), c.name, c.from, c.to));
    let added = changes
        .added
        .iter()
        .map(|p| format!("{} {} {}", style.green("+"), p.name, p.version));
    let removed = changes
        .removed
        .iter()
        .map(|p| format!("{} {} {}", style.red("-"), p.name, p.version));
    changed.chain(added).chain(removed).collect()
}

/// A collapsed Markdown section for a PR comment (empty when nothing
/// changed).
pub fn markdown(addr: &ImageAddr, changes: &PackageChanges) -> String {
    if changes.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "<details><summary><code>{addr}</code> packages: {}</summary>\n\n| package | before | after |\n| --- | --- | --- |\n",
        changes.summary()
    );
    for c in &changes.changed {
        out.push_str(&format!("| `{}` | `{}` | `{}` |\n", c.name, c.from, c.to));
    }
    for p in &changes.added {
        out.push_str(&format!("| `{}` | — | `{}` |\n", p.name, p.version));
    }
    for p in &changes.removed {
        out.push_str(&format!("| `{}` | `{}` | — |\n", p.name, p.version));
    }
    out.push_str("\n</details>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::{Changed, PackageVersion};

    fn sample() -> PackageChanges {
        PackageChanges {
            changed: vec![Changed {
                name: "openssl".into(),
                arch: "amd64".into(),
                from: "3.0.11-1~deb12u2".into(),
                to: "3.0.15-1~deb12u1".into(),
            }],
            added: vec![PackageVersion {
                name: "curl".into(),
                arch: "amd64".into(),
                version: "7.88.1-10+deb12u8".into(),
            }],
            removed: vec![],
        }
    }

    #[test]
    fn changes_render_for_humans_and_for_pull_requests() {
        let addr: ImageAddr = "local.chroot.app".parse().unwrap();
        let plain = Style { color: false };
        insta::assert_snapshot!(diff(&addr, &sample(), plain), @r"
        Package changes in local.chroot.app since its previous build: 1 changed, 1 added, 0 removed.

          ~ openssl 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1
          + curl 7.88.1-10+deb12u8
        ");
        insta::assert_snapshot!(markdown(&addr, &sample()), @r"
        <details><summary><code>local.chroot.app</code> packages: 1 changed, 1 added, 0 removed</summary>

        | package | before | after |
        | --- | --- | --- |
        | `openssl` | `3.0.11-1~deb12u2` | `3.0.15-1~deb12u1` |
        | `curl` | — | `7.88.1-10+deb12u8` |

        </details>
        ");
        assert_eq!(
            diff(&addr, &PackageChanges::default(), plain),
            "No package changes in local.chroot.app since its previous build.\n"
        );
    }
}
