//! The planner on hand-made manifests and states: one snapshot per action
//! and per reason kind (`src/plan/snapshots/`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::*;
use crate::state::{BaseRecord, ParentRef};
use crate::testing::{self, address_of, record};

/// A manifest of a `null` image at `addr` with `inputs`, one provisioner
/// reading `files`, `variables` and `parents`.
fn manifest(addr: &str, inputs: Value, files: Value, variables: Value, parents: Value) -> Manifest {
    let provisioners =
        json!([{"type": "shell-local", "config": {"script": "s.sh"}, "files": files}]);
    testing::manifest(addr, inputs, provisioners, variables, parents)
}

fn simple(addr: &str) -> Manifest {
    manifest(
        addr,
        json!({"base": "a"}),
        json!({"s.sh": "sha256:1"}),
        json!({"v": 1}),
        json!({}),
    )
}

/// Everything a planner run reads, owned.
struct World {
    images: Vec<(ImageAddr, Manifest, Vec<ImageAddr>)>,
    state: StateFile,
    old_manifests: BTreeMap<ContentAddress, Manifest>,
    old_texts: BTreeMap<String, Vec<u8>>,
    texts: BTreeMap<String, Vec<u8>>,
    missing: BTreeSet<ImageAddr>,
    changed: BTreeMap<ImageAddr, crate::state::ArtifactChange>,
    replace: BTreeSet<ImageAddr>,
}

impl World {
    fn new() -> World {
        let mut state = StateFile::new("local");
        state.lineage = "00000000-0000-0000-0000-000000000000".to_owned();
        state.serial = 3;
        World {
            images: Vec::new(),
            state,
            old_manifests: BTreeMap::new(),
            old_texts: BTreeMap::new(),
            texts: BTreeMap::new(),
            missing: BTreeSet::new(),
            changed: BTreeMap::new(),
            replace: BTreeSet::new(),
        }
    }

    fn define(&mut self, m: Manifest, parents: &[&str]) -> &mut World {
        let parents = parents.iter().map(|p| p.parse().unwrap()).collect();
        self.images.push((m.address.clone(), m, parents));
        self
    }

    /// Records `m` as built into `artifact`, its manifest in the object store.
    fn recorded(&mut self, m: &Manifest, artifact: &str) -> &mut ImageRecord {
        self.old_manifests.insert(address_of(m), m.clone());
        self.state
            .images
            .entry(m.address.clone())
            .or_insert_with(|| record(m, artifact))
    }

    fn plan(&self) -> Plan {
        let target = TargetAddr::local();
        let addresses: Vec<ContentAddress> =
            self.images.iter().map(|(_, m, _)| address_of(m)).collect();
        let images = self
            .images
            .iter()
            .zip(&addresses)
            .map(|((addr, m, parents), ca)| PlannedImage {
                addr,
                target: &target,
                builder: "null",
                content_address: ca,
                manifest: m,
                texts: self
                    .texts
                    .iter()
                    .map(|(p, b)| (p.clone(), b.as_slice()))
                    .collect(),
                parents: parents.clone(),
            })
            .collect();
        let states = BTreeMap::from([(target.clone(), self.state.clone())]);
        plan(PlanInput {
            images,
            states: &states,
            old_manifests: &self.old_manifests,
            old_texts: &self.old_texts,
            missing: &self.missing,
            changed: &self.changed,
            replace: &self.replace,
            only: None,
            refresh: true,
        })
    }
}

#[test]
fn build_not_in_state() {
    let mut w = World::new();
    w.define(simple("null.a"), &[]);
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn no_op_when_nothing_changed() {
    let mut w = World::new();
    let m = simple("null.a");
    w.recorded(&m, "null:aaaa");
    w.define(m, &[]);
    let plan = w.plan();
    assert!(!plan.has_changes());
    insta::assert_json_snapshot!(plan);
}

#[test]
fn rebuild_input_changed() {
    let mut w = World::new();
    w.recorded(&simple("null.a"), "null:aaaa");
    w.define(
        manifest(
            "null.a",
            json!({"base": "b", "size": "2G"}),
            json!({"s.sh": "sha256:1"}),
            json!({"v": 1}),
            json!({}),
        ),
        &[],
    );
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_file_changed_with_a_diff() {
    let mut w = World::new();
    let old = simple("null.a");
    w.recorded(&old, "null:aaaa")
        .text_inputs
        .insert("s.sh".into(), "1".into());
    w.old_texts.insert("1".into(), b"echo one\n".to_vec());
    w.texts.insert("s.sh".into(), b"echo two\n".to_vec());
    w.define(
        manifest(
            "null.a",
            json!({"base": "a"}),
            json!({"s.sh": "sha256:2", "new.sh": "sha256:3"}),
            json!({"v": 1}),
            json!({}),
        ),
        &[],
    );
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_variable_changed() {
    let mut w = World::new();
    w.recorded(&simple("null.a"), "null:aaaa");
    w.define(
        manifest(
            "null.a",
            json!({"base": "a"}),
            json!({"s.sh": "sha256:1"}),
            json!({"v": 2}),
            json!({}),
        ),
        &[],
    );
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_parent_rebuilt_in_this_plan() {
    let mut w = World::new();
    let parent_old = simple("null.p");
    let child = |parent: &Manifest| {
        manifest(
            "null.c",
            json!({"base": format!("imgform-image://null.p@{}", address_of(parent))}),
            json!({"s.sh": "sha256:1"}),
            json!({}),
            json!({"null.p": address_of(parent)}),
        )
    };
    w.recorded(&parent_old, "null:pppp");
    w.recorded(&child(&parent_old), "null:cccc");
    let parent_new = manifest(
        "null.p",
        json!({"base": "z"}),
        json!({"s.sh": "sha256:1"}),
        json!({"v": 1}),
        json!({}),
    );
    let child_new = child(&parent_new);
    w.define(parent_new, &[]).define(child_new, &["null.p"]);
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_parent_rebuilt_since_it_was_built() {
    let mut w = World::new();
    let parent = simple("null.p");
    let child = manifest(
        "null.c",
        json!({}),
        json!({"s.sh": "sha256:1"}),
        json!({}),
        json!({"null.p": address_of(&parent)}),
    );
    w.recorded(&parent, "null:pppp-new");
    w.recorded(&child, "null:cccc").parents.insert(
        "null.p".parse().unwrap(),
        ParentRef {
            content_address: address_of(&parent),
            artifact_id: "null:pppp-old".into(),
        },
    );
    w.define(parent, &[]).define(child, &["null.p"]);
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_base_updated() {
    let mut w = World::new();
    let with_base = |id: &str| {
        let mut m = simple("null.a");
        m.base = Some(id.to_owned());
        m
    };
    w.recorded(&with_base("ami-old"), "null:aaaa").base = Some(BaseRecord {
        query: "{}".into(),
        id: "ami-old".into(),
    });
    w.define(with_base("ami-new"), &[]);
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_artifact_missing() {
    let mut w = World::new();
    let m = simple("null.a");
    w.recorded(&m, "null:gone");
    w.missing.insert(m.address.clone());
    w.define(m, &[]);
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_artifact_changed() {
    let mut w = World::new();
    let m = simple("null.a");
    w.recorded(&m, "output/a-0123456789ab.qcow2");
    w.changed.insert(
        m.address.clone(),
        crate::state::ArtifactChange {
            recorded: format!("sha256:{}", "1".repeat(64)),
            found: format!("sha256:{}", "2".repeat(64)),
        },
    );
    w.define(m, &[]);
    let plan = w.plan();
    assert_eq!(plan.changes[0].action, Action::Rebuild);
    insta::assert_json_snapshot!(plan);
}

#[test]
fn rebuild_tainted() {
    let mut w = World::new();
    let m = simple("null.a");
    w.recorded(&m, "null:aaaa").tainted = true;
    w.define(m, &[]);
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_forced() {
    let mut w = World::new();
    let m = simple("null.a");
    w.recorded(&m, "null:aaaa");
    w.replace.insert(m.address.clone());
    w.define(m, &[]);
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn destroy_removed_from_config() {
    let mut w = World::new();
    w.recorded(&simple("null.gone"), "null:gggg");
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_content_changed_without_the_old_manifest() {
    let mut w = World::new();
    let old = simple("null.a");
    w.recorded(&old, "null:aaaa");
    w.old_manifests.clear();
    w.define(
        manifest(
            "null.a",
            json!({"base": "b"}),
            json!({}),
            json!({}),
            json!({}),
        ),
        &[],
    );
    insta::assert_json_snapshot!(w.plan());
}

#[test]
fn rebuild_unknown_change_is_never_a_no_op() {
    let mut w = World::new();
    let m = simple("null.a");
    // The recorded address is not this manifest's, yet the stored manifest
    // under it is equal to it (written by another version, or by hand).
    let stored = ContentAddress::from_recorded(format!("sha256:{}", "e".repeat(64)));
    w.recorded(&m, "null:aaaa").content_address = stored.clone();
    w.old_manifests.insert(stored, m.clone());
    w.define(m, &[]);
    let plan = w.plan();
    assert_eq!(plan.changes[0].action, Action::Rebuild);
    insta::assert_json_snapshot!(plan);
}
