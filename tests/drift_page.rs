//! `imgform drift --html` in a real browser: Debian's Chromium, headless,
//! takes a screenshot of the page made from a real project with one image in
//! each status; the screenshot must show the graph's boxes in each status's
//! colour. `IMGFORM_UPDATE_DOCS=1` also copies the screenshot to
//! docs/drift-page.png (the README's picture).

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::Project;

const IMAGES: &str = r#"
source "chroot" "base" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
source "chroot" "gone" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
source "chroot" "loose" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
source "chroot" "app" {
  base   = image.golden.chroot.base.id
  format = "tar"
}

build {
  name    = "golden"
  sources = ["source.chroot.base", "source.chroot.gone", "source.chroot.loose"]
  provisioner "shell" {
    inline = ["echo golden > /etc/golden"]
  }
}

build {
  name    = "layer"
  sources = ["source.chroot.app"]
  provisioner "shell" {
    script = "app.sh"
  }
}
"#;

/// The fills of the graph's boxes (src/views/drift_html.rs).
const FILLS: [(&str, [u8; 3]); 4] = [
    ("current", [0xd7, 0xf5, 0xdd]),
    ("stale", [0xff, 0xf1, 0xc2]),
    ("missing", [0xfd, 0xd8, 0xd8]),
    ("untracked", [0xe4, 0xe7, 0xec]),
];

fn screenshot(page: &Path, out: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|c| Path::new(c).exists())
        .expect("Chromium (scripts/install-test-deps.sh installs Debian's chromium)");
    let run = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1100,760",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        run.status.success() && out.is_file(),
        "chromium failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// How many pixels of the screenshot have each colour.
fn pixels_of(png_file: &Path, colours: &[[u8; 3]]) -> Vec<usize> {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_file).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let mut counts = vec![0; colours.len()];
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        for (i, c) in colours.iter().enumerate() {
            if px[..3] == c[..] {
                counts[i] += 1;
            }
        }
    }
    counts
}

#[test]
fn the_drift_page_renders_its_graph_with_every_status_told_apart() {
    if !util::is_root() {
        eprintln!("skipped: the chroot builder needs root");
        return;
    }
    let p = Project::new();
    p.file("images.pkr.hcl", IMAGES);
    p.file("app.sh", "#!/bin/sh\necho app > /etc/app\n");
    p.with_busybox_rootfs();
    p.run(&["apply", "--auto-approve"]).success();

    // One image in each status: base current, app stale (its script
    // changed), gone missing (its artifact deleted), loose untracked (the
    // state forgot it).
    p.file("app.sh", "#!/bin/sh\necho app v2 > /etc/app\n");
    let gone: PathBuf = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("golden-chroot-gone-") && name.ends_with(".tar")
        })
        .expect("gone's artifact");
    std::fs::remove_file(gone).unwrap();
    p.run(&["state", "rm", "golden.chroot.loose"]).success();

    let drift = p.run(&["drift", "--html"]);
    drift.code(2);
    let html = &drift.stdout;
    assert!(
        html.contains("Drift: 1 current, 1 stale, 1 missing, 1 untracked."),
        "{html}"
    );
    assert!(!html.contains("<script"), "no JavaScript");
    let page = p.path().join("drift.html");
    std::fs::write(&page, html).unwrap();

    let shot = p.path().join("drift.png");
    screenshot(&page, &shot);
    let colours: Vec<[u8; 3]> = FILLS.iter().map(|(_, c)| *c).collect();
    let counts = pixels_of(&shot, &colours);
    for ((status, _), n) in FILLS.iter().zip(&counts) {
        // A box is 250×40 less its text and border; a badge adds a little.
        assert!(
            *n > 4_000,
            "the {status} box is not on the screenshot ({n} pixels of its colour): {counts:?}"
        );
    }
    if std::env::var_os("IMGFORM_UPDATE_DOCS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/drift-page.png");
        std::fs::create_dir_all(docs.parent().unwrap()).unwrap();
        std::fs::copy(&shot, docs).unwrap();
    }
}
