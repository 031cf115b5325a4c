//! Content addresses do not move: definitions that exercise every field of
//! a manifest (`tests/fixtures/addresses`) and the quickstart example plan
//! to the addresses imgform computed before the manifest became a typed
//! struct. A change that moves one makes every recorded image look stale.

mod util;

use std::path::Path;

use util::{copy_tree, Project};

/// (image, content address) of every image a plan of `dir` builds.
fn addresses(dir: &Path) -> Vec<(String, String)> {
    let p = Project::new();
    copy_tree(dir, p.path());
    // Digests of sensitive values are keyed: a fixed key pins them.
    let run = p.run_env(
        &["plan", "--json", "--refresh=false"],
        &[("IMGFORM_SENSITIVE_KEY", "the key of tests/addresses.rs")],
    );
    run.success();
    run.json()["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_owned(),
                c["content"]["new"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pinned(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, c)| ((*a).to_owned(), (*c).to_owned()))
        .collect()
}

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// (The fixture's secret is digested under a key since sensitive values'
/// digests became keyed; the three addresses moved once, then.)
#[test]
fn every_manifest_field_keeps_its_address() {
    assert_eq!(
        addresses(&repo("tests/fixtures/addresses")),
        pinned(&[
            (
                "golden.null.base",
                "sha256:d07b4ce253a6979d8aa5023fad6ae43f62de2b192a38645593da4d85e12aaec7"
            ),
            (
                "app.amazon-ebs.web",
                "sha256:6eb8d1d141de84c7c8e30f67793774f9ceff2a7b677bd7eb6cda98012809f9d0"
            ),
            (
                "app.openstack.web",
                "sha256:ae714b546280851eed04758f1afd7ca3d5969ff947d6a1ce8e0c3a24351e18fa"
            ),
        ])
    );
}

#[test]
fn the_quickstart_example_keeps_its_addresses() {
    assert_eq!(
        addresses(&repo("examples/quickstart")),
        pinned(&[
            (
                "golden.null.base",
                "sha256:779c8eefb324283c5965454873c5e08fb9c94666761ded72206e1da51b4682b9"
            ),
            (
                "layers.null.app",
                "sha256:a9eaed3e3d288e4bc3e906e4c06064e6ee7ccfdc3c7b467ee7a11d461113996b"
            ),
            (
                "layers.null.tools",
                "sha256:4243d39cc78cfb1dd8e2943e38e8b6828d4bebe625cc7fda86f63b54f068b5dd"
            ),
        ])
    );
}
