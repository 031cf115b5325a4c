//! Package changes between two builds of an image: versions changed,
//! packages added, packages removed (a package is its name and
//! architecture).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Inventory;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageChanges {
    pub changed: Vec<Changed>,
    pub added: Vec<PackageVersion>,
    pub removed: Vec<PackageVersion>,
}

impl PackageChanges {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }

    /// `2 changed, 1 added, 0 removed`.
    pub fn summary(&self) -> String {
        format!(
            "{} changed, {} added, {} removed",
            self.changed.len(),
            self.added.len(),
            self.removed.len()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub name: String,
    pub arch: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageVersion {
    pub name: String,
    pub arch: String,
    pub version: String,
}

/// What changed from `old` to `new`, each list sorted by name.
pub fn changes(old: &Inventory, new: &Inventory) -> PackageChanges {
    let index = |inv: &Inventory| -> BTreeMap<(String, String), String> {
        inv.packages
            .iter()
            .map(|p| ((p.name.clone(), p.arch.clone()), p.version.clone()))
            .collect()
    };
    let (old, new) = (index(old), index(new));
    let mut out = PackageChanges::default();
    for ((name, arch), version) in &new {
        match old.get(&(name.clone(), arch.clone())) {
            None => out.added.push(PackageVersion {
                name: name.clone(),
                arch: arch.clone(),
                version: version.clone(),
            }),
            Some(before) if before != version => out.changed.push(Changed {
                name: name.clone(),
                arch: arch.clone(),
                from: before.clone(),
                to: version.clone(),
            }),
            Some(_) => {}
        }
    }
    for ((name, arch), version) in &old {
        if !new.contains_key(&(name.clone(), arch.clone())) {
            out.removed.push(PackageVersion {
                name: name.clone(),
                arch: arch.clone(),
                version: version.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::tests::sample;
    use crate::sbom::{Package, PackageKind};

    #[test]
    fn upgrades_additions_and_removals_are_told_apart() {
        let old = sample();
        let mut packages = old.packages.clone();
        packages[1].version = "3.0.15-1~deb12u1".into(); // openssl upgraded
        packages.remove(0); // libc6 gone
        packages.push(Package {
            name: "curl".into(),
            arch: "amd64".into(),
            version: "7.88.1-10+deb12u8".into(),
            kind: PackageKind::Deb,
            source: None,
        });
        let new = Inventory::new(old.os.clone(), packages);
        let c = changes(&old, &new);
        assert_eq!(
            c.changed,
            [Changed {
                name: "openssl".into(),
                arch: "amd64".into(),
                from: "3.0.11-1~deb12u2".into(),
                to: "3.0.15-1~deb12u1".into(),
            }]
        );
        assert_eq!(c.added[0].name, "curl");
        assert_eq!(c.removed[0].name, "libc6");
        assert_eq!(c.summary(), "1 changed, 1 added, 1 removed");
        assert!(changes(&old, &old).is_empty());
    }
}
