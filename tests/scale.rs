//! Behaviour that only shows with many images (timings live in benches/,
//! never here).

mod util;

use std::process::Command;

use util::Project;

/// Each image's log file is closed when the image ends: an apply of more
/// images than the process may open files still logs every one.
#[test]
fn more_images_than_open_files_still_log_every_image() {
    let p = Project::new();
    let mut hcl = String::new();
    for i in 0..80 {
        hcl.push_str(&format!(
            "source \"null\" \"img{i}\" {{\n  communicator = \"none\"\n}}\n\
             build {{\n  sources = [\"source.null.img{i}\"]\n  \
             provisioner \"shell-local\" {{\n    inline = [\"echo hello from img{i}\"]\n  }}\n}}\n"
        ));
    }
    p.file("images.pkr.hcl", &hcl);
    let status = Command::new("sh")
        .current_dir(p.path())
        .arg("-c")
        .arg(format!(
            "ulimit -n 48 && exec {} apply --auto-approve --parallelism 4 >/dev/null 2>&1",
            util::bin().display()
        ))
        .env("NO_COLOR", "1")
        .status()
        .unwrap();
    assert!(status.success());
    for i in 0..80 {
        let log = p.read(&format!(".imgform/logs/null-img{i}.log"));
        assert!(
            log.contains(&format!("hello from img{i}")),
            "img{i}: {log:?}"
        );
    }
}
