//! `provisioner "ansible"`: real ansible-core against a chroot image of a
//! minimal Debian (Ansible modules need Python in the target), and the
//! playbook's reach as the image's input.

mod util;

use std::path::Path;
use std::process::Command;

use util::Project;

const DEFS: &str = r#"
source "chroot" "web" {
  base   = "rootfs/debian.tar.gz"
  format = "tar"
}
source "chroot" "plain" {
  base   = "rootfs/debian.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.web"]
  provisioner "ansible" {
    playbook_file   = "ansible/site.yml"
    extra_arguments = ["--extra-vars", "greeting=bonjour"]
    groups          = ["webservers"]
  }
}
build {
  sources = ["source.chroot.plain"]
  provisioner "ansible" {
    playbook_file = "ansible/other.yml"
  }
}
"#;

fn project(with_rootfs: bool) -> Project {
    let p = Project::new();
    if with_rootfs {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-debian-rootfs.sh");
        assert!(Command::new(script)
            .arg(p.path().join("rootfs/debian.tar.gz"))
            .status()
            .unwrap()
            .success());
    } else {
        p.file("rootfs/debian.tar.gz", "not used: plans only");
    }
    p.file("images.pkr.hcl", DEFS);
    p.file(
        "ansible/site.yml",
        "- hosts: webservers\n  become: true\n  gather_facts: false\n  roles:\n    - web\n",
    );
    p.file(
        "ansible/other.yml",
        "- hosts: all\n  gather_facts: false\n  roles:\n    - unused-by-web\n",
    );
    p.file(
        "ansible/roles/web/meta/main.yml",
        "dependencies:\n  - role: common\n",
    );
    p.file(
        "ansible/roles/web/tasks/main.yml",
        "- name: web config\n  ansible.builtin.template:\n    src: web.conf.j2\n    dest: /etc/web.conf\n    mode: \"0644\"\n",
    );
    p.file(
        "ansible/roles/web/templates/web.conf.j2",
        "greeting={{ greeting }}\nhost={{ inventory_hostname }}\n",
    );
    p.file(
        "ansible/roles/common/tasks/main.yml",
        "- name: common dir\n  ansible.builtin.file:\n    path: /opt/common\n    state: directory\n",
    );
    p.file(
        "ansible/roles/unused-by-web/tasks/main.yml",
        "- ansible.builtin.debug:\n    msg: other\n",
    );
    p
}

fn action<'a>(json: &'a serde_json::Value, addr: &str) -> &'a serde_json::Value {
    json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == addr)
        .unwrap()
}

#[test]
fn a_role_edit_rebuilds_exactly_the_images_that_reach_it() {
    let p = project(false);
    let before = p.run(&["plan", "--json", "--refresh=false"]).json();
    let ca = |j: &serde_json::Value, a: &str| action(j, a)["content"]["new"].clone();
    // A role only the other playbook uses: web's address does not move.
    p.file(
        "ansible/roles/unused-by-web/tasks/main.yml",
        "- ansible.builtin.debug:\n    msg: changed\n",
    );
    let after = p.run(&["plan", "--json", "--refresh=false"]).json();
    assert_eq!(ca(&before, "chroot.web"), ca(&after, "chroot.web"));
    assert_ne!(ca(&before, "chroot.plain"), ca(&after, "chroot.plain"));
    // A role web reaches through meta dependencies: web moves, plain does not.
    p.file(
        "ansible/roles/common/tasks/main.yml",
        "- ansible.builtin.file:\n    path: /opt/common2\n    state: directory\n",
    );
    let again = p.run(&["plan", "--json", "--refresh=false"]).json();
    assert_ne!(ca(&after, "chroot.web"), ca(&again, "chroot.web"));
    assert_eq!(ca(&after, "chroot.plain"), ca(&again, "chroot.plain"));
    // A dynamic include: the whole playbook dir, and the plan says so.
    p.file(
        "ansible/other.yml",
        "- hosts: all\n  tasks:\n    - include_tasks: \"{{ which }}.yml\"\n",
    );
    let run = p.run(&["validate"]);
    run.success();
    assert!(
        run.stderr.contains("reach is not known statically")
            && run.stderr.contains("includes tasks by a variable name"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_playbook_with_a_role_provisions_a_chroot_image() {
    if !util::is_root() {
        eprintln!("skipped: needs root for the chroot builder");
        return;
    }
    let p = project(true);
    p.file(
        "images.pkr.hcl",
        &DEFS[..DEFS
            .find("build {\n  sources = [\"source.chroot.plain\"]")
            .unwrap()],
    );
    let run = p.run(&["apply", "--auto-approve"]);
    run.success();
    assert!(
        run.stderr.contains("TASK [web : web config]"),
        "Ansible's output streams with the image prefix: {}",
        run.stderr
    );
    let tar = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|e| e == "tar"))
        .unwrap();
    let conf = Command::new("tar")
        .args(["-xOf"])
        .arg(&tar)
        .arg("./etc/web.conf")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&conf.stdout),
        "greeting=bonjour\nhost=default\n"
    );
    let list = Command::new("tar")
        .args(["-tf"])
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l == "./opt/common/"),
        "the dependency role ran"
    );
    assert!(
        !Path::new("/etc/web.conf").exists()
            || std::fs::read_to_string("/etc/web.conf").unwrap_or_default()
                != "greeting=bonjour\nhost=default\n",
        "nothing was written to the host"
    );

    // A failing task fails the image with Ansible's message.
    p.file(
        "ansible/roles/web/tasks/main.yml",
        "- name: broken\n  ansible.builtin.command: /bin/false\n",
    );
    let failed = p.run(&["apply", "--auto-approve"]);
    failed.code(1);
    assert!(
        failed
            .stderr
            .contains("ansible-playbook exited with status 2")
            && failed.stderr.contains("FAILED!"),
        "{}",
        failed.stderr
    );

    // ansible-playbook missing: a clear error naming what to install.
    p.file("images.pkr.hcl", &DEFS.replace("groups          = [\"webservers\"]", "groups          = [\"webservers\"]\n    command         = \"ansible-playbook-not-installed\"").replace("build {\n  sources = [\"source.chroot.plain\"]", "build {\n  name = \"x\"\n  sources = [\"source.chroot.plain\"]"));
    let missing = p.run(&["apply", "--auto-approve", "--target", "chroot.web"]);
    missing.code(1);
    assert!(
        missing.stderr.contains("install Ansible"),
        "{}",
        missing.stderr
    );
}
