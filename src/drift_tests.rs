//! Drift on hand-made manifests and states: one snapshot per status and
//! per reason kind (`src/snapshots/`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::*;
use crate::state::{BaseRecord, ParentRef};
use crate::testing::{self, address_of, record};

fn manifest(addr: &str, inputs: Value, parents: Value) -> Manifest {
    testing::manifest(addr, inputs, json!([]), json!({}), parents)
}

/// Everything a drift report reads, owned.
struct World {
    /// Defined now: manifest and `max_age`.
    defined: Vec<(Manifest, Option<(&'static str, Duration)>)>,
    state: StateFile,
    old_manifests: BTreeMap<ContentAddress, Manifest>,
    missing: BTreeSet<ImageAddr>,
    changed: BTreeMap<ImageAddr, crate::state::ArtifactChange>,
    untracked: Vec<Untracked>,
}

impl World {
    fn new() -> World {
        World {
            defined: Vec::new(),
            state: StateFile::new("local"),
            old_manifests: BTreeMap::new(),
            missing: BTreeSet::new(),
            changed: BTreeMap::new(),
            untracked: Vec::new(),
        }
    }

    fn recorded(&mut self, m: &Manifest, artifact: &str) -> &mut ImageRecord {
        self.old_manifests.insert(address_of(m), m.clone());
        self.state
            .images
            .entry(m.address.clone())
            .or_insert_with(|| record(m, artifact))
    }

    fn report(&self) -> DriftReport {
        let target = TargetAddr::local();
        let addresses: Vec<ContentAddress> =
            self.defined.iter().map(|(m, _)| address_of(m)).collect();
        let images: BTreeMap<ImageAddr, CurrentImage> = self
            .defined
            .iter()
            .zip(&addresses)
            .map(|((m, max_age), ca)| {
                (
                    m.address.clone(),
                    CurrentImage {
                        target: &target,
                        content_address: ca,
                        manifest: m,
                        max_age: *max_age,
                    },
                )
            })
            .collect();
        let states = BTreeMap::from([(target.clone(), self.state.clone())]);
        drift(DriftInput {
            states: &states,
            images: &images,
            old_manifests: &self.old_manifests,
            missing: &self.missing,
            changed: &self.changed,
            untracked: &self.untracked,
            now: chrono::DateTime::parse_from_rfc3339("2026-03-04T00:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
        })
    }
}

fn plain(addr: &str) -> Manifest {
    manifest(addr, json!({"base": "a"}), json!({}))
}

#[test]
fn current() {
    let mut w = World::new();
    let m = plain("null.a");
    w.recorded(&m, "null:aaaa");
    w.defined.push((m, None));
    let report = w.report();
    assert!(!report.has_drift());
    insta::assert_json_snapshot!(report);
}

#[test]
fn stale_inputs_changed() {
    let mut w = World::new();
    w.recorded(&plain("null.a"), "null:aaaa");
    w.defined
        .push((manifest("null.a", json!({"base": "b"}), json!({})), None));
    insta::assert_json_snapshot!(w.report());
}

#[test]
fn stale_base_updated_even_without_the_old_manifest() {
    let mut w = World::new();
    let mut old = plain("null.a");
    old.base = Some("ami-old".into());
    w.recorded(&old, "null:aaaa").base = Some(BaseRecord {
        query: "{}".into(),
        id: "ami-old".into(),
    });
    w.old_manifests.clear();
    let mut now = plain("null.a");
    now.base = Some("ami-new".into());
    w.defined.push((now, None));
    let report = w.report();
    // The reason shared with plans reads back as it was written.
    let text = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<DriftReport>(&text).unwrap(), report);
    insta::assert_json_snapshot!(report);
}

#[test]
fn stale_parent_rebuilt() {
    let mut w = World::new();
    let parent = plain("null.p");
    let child = manifest("null.c", json!({}), json!({"null.p": address_of(&parent)}));
    w.recorded(&parent, "null:pppp-new");
    w.recorded(&child, "null:cccc").parents.insert(
        "null.p".parse().unwrap(),
        ParentRef {
            content_address: address_of(&parent),
            artifact_id: "null:pppp-old".into(),
        },
    );
    w.defined.push((parent, None));
    w.defined.push((child, None));
    insta::assert_json_snapshot!(w.report());
}

#[test]
fn stale_too_old() {
    let mut w = World::new();
    let m = plain("null.a");
    w.recorded(&m, "null:aaaa");
    w.defined
        .push((m, Some(("30d", Duration::from_secs(30 * 86400)))));
    insta::assert_json_snapshot!(w.report());
}

#[test]
fn stale_removed_from_config() {
    let mut w = World::new();
    w.recorded(&plain("null.gone"), "null:gggg");
    insta::assert_json_snapshot!(w.report());
}

#[test]
fn stale_unknown_change() {
    let mut w = World::new();
    let m = plain("null.a");
    let stored = ContentAddress::from_recorded(format!("sha256:{}", "e".repeat(64)));
    w.recorded(&m, "null:aaaa").content_address = stored.clone();
    w.old_manifests.insert(stored, m.clone());
    w.defined.push((m, None));
    insta::assert_json_snapshot!(w.report());
}

#[test]
fn missing() {
    let mut w = World::new();
    let m = plain("null.a");
    w.recorded(&m, "null:gone");
    w.missing.insert(m.address.clone());
    w.defined.push((m, None));
    insta::assert_json_snapshot!(w.report());
}

#[test]
fn stale_artifact_changed() {
    let mut w = World::new();
    let m = plain("null.a");
    w.recorded(&m, "output/a-0123456789ab.qcow2");
    w.changed.insert(
        m.address.clone(),
        crate::state::ArtifactChange {
            recorded: format!("sha256:{}", "1".repeat(64)),
            found: format!("sha256:{}", "2".repeat(64)),
        },
    );
    w.defined.push((m, None));
    let report = w.report();
    assert_eq!(report.images[0].status, DriftStatus::Stale);
    insta::assert_json_snapshot!(report);
}

#[test]
fn untracked() {
    let mut w = World::new();
    let m = plain("null.a");
    w.untracked.push(Untracked {
        address: m.address.clone(),
        target: TargetAddr::local(),
        artifact_id: "null:stray".into(),
    });
    w.defined.push((m, None));
    insta::assert_json_snapshot!(w.report());
}
