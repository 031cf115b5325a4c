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
    let run = p.run(&["plan", "--json", "--refresh=false"]);
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

#[test]
fn every_manifest_field_keeps_its_address() {
    assert_eq!(
        addresses(&repo("tests/fixtures/addresses")),
        pinned(&[
            (
                "golden.null.base",
                "sha256:96e069ebbde923d2fb62b2b4b0b83b76dbc82a632aab0cfd51606d834be57cd9"
            ),
            (
                "app.amazon-ebs.web",
                "sha256:912920b9d4cd6428fb3485b73bda6d094e1a1c0b0d56db494af3d25747eb68e1"
            ),
            (
                "app.openstack.web",
                "sha256:f1664bc3f4e13b49d6e7dabfdd1959576d5fd610b3b037f4f5c78cc6f3d4a1e4"
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
