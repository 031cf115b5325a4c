//! The SSH communicator (russh) against a real OpenSSH sshd on 127.0.0.1,
//! through the `null` builder (an existing machine, as in Packer): password
//! and key auth, host key checking, uploads of a tree, exit status and
//! stderr of commands, a bastion hop.

mod util;

use std::os::unix::fs::PermissionsExt;

use util::sshd::{Sshd, PASSWORD, USER};
use util::Project;

fn null_ssh(sshd: &Sshd, auth: &str, host_key: &str, provisioners: &str) -> String {
    format!(
        r#"
source "null" "box" {{
  communicator = "ssh"
  ssh_host     = "127.0.0.1"
  ssh_port     = {port}
  ssh_username = "{USER}"
  ssh_timeout  = "20s"
  {auth}
  {host_key}
}}
build {{
  sources = ["source.null.box"]
  {provisioners}
}}
"#,
        port = sshd.port
    )
}

/// Runs imgform with HOME pointing at an empty dir (no ~/.ssh/known_hosts).
fn run(p: &Project, args: &[&str]) -> util::Run {
    p.run_isolated(args, &[])
}

#[test]
fn password_auth_with_pinned_host_key_runs_commands_and_streams_output() {
    if !util::is_root() {
        eprintln!("skipped: sshd and a test user need root");
        return;
    }
    let sshd = Sshd::start();
    let scratch = Sshd::scratch("ssh-password");
    let p = Project::new();
    p.file(
        "box.pkr.hcl",
        &null_ssh(
            &sshd,
            &format!("ssh_password = \"{PASSWORD}\""),
            &format!(
                "ssh_host_key_fingerprint = \"{}\"",
                sshd.host_key_fingerprint
            ),
            &format!(
                r#"provisioner "shell" {{
    environment_vars = ["GREETING=hello from imgform"]
    inline = ["echo \"$GREETING\" > {dir}/greeting", "id -un", "echo to-stderr >&2"]
  }}"#,
                dir = scratch.display()
            ),
        ),
    );
    let out = run(&p, &["apply", "--auto-approve"]);
    out.success();
    assert_eq!(
        std::fs::read_to_string(scratch.join("greeting")).unwrap(),
        "hello from imgform\n"
    );
    // Output lines stream into the log with the image address as prefix.
    out.stderr_has(&format!("null.box: {USER}"));
    out.stderr_has("to-stderr");
    // The password never shows up.
    assert!(!out.stderr.contains(PASSWORD) && !out.stdout.contains(PASSWORD));
    let state = std::fs::read_to_string(p.path().join("state/local.json")).unwrap();
    assert!(!state.contains(PASSWORD));

    // The machine's packages, read over SSH at the end of the build: this
    // test machine is Debian, with the sshd the test talks to.
    out.stderr_has("null.box: package list read:");
    let sbom = run(&p, &["sbom", "null.box"]);
    sbom.success();
    let doc = sbom.json();
    assert_eq!(doc["specVersion"], "1.5");
    let components = doc["components"].as_array().unwrap();
    let sshd_pkg = components
        .iter()
        .find(|c| c["name"] == "openssh-server")
        .unwrap_or_else(|| panic!("no openssh-server in {}", sbom.stdout));
    assert!(
        sshd_pkg["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:deb/debian/openssh-server@"),
        "{sshd_pkg}"
    );
    assert!(components.len() > 50, "a real package list");
}

#[test]
fn wrong_host_key_is_refused_and_nothing_is_recorded() {
    if !util::is_root() {
        return;
    }
    let sshd = Sshd::start();
    let scratch = Sshd::scratch("ssh-wrong-key");
    let p = Project::new();
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    p.file(
        "box.pkr.hcl",
        &null_ssh(
            &sshd,
            &format!("ssh_password = \"{PASSWORD}\""),
            &format!("ssh_host_key_fingerprint = \"{wrong}\""),
            &format!(
                r#"provisioner "shell" {{ inline = ["touch {}/touched"] }}"#,
                scratch.display()
            ),
        ),
    );
    let out = run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("not the configured ssh_host_key_fingerprint");
    out.stderr_has(&sshd.host_key_fingerprint);
    assert!(!scratch.join("touched").exists());
    assert!(
        !p.path().join("state/local.json").exists()
            || !p.read("state/local.json").contains("null.box")
    );

    // A known_hosts file with another key for this host: refused as a mismatch.
    let other = p.path().join("other_known_hosts");
    std::fs::write(
        &other,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGcbRH9n2vgxIaGuY8xm4RqNV3ZX0Yc9lbcUp4IcQJ0a\n",
            sshd.port
        ),
    )
    .unwrap();
    p.file(
        "box.pkr.hcl",
        &null_ssh(
            &sshd,
            &format!("ssh_password = \"{PASSWORD}\""),
            &format!("ssh_known_hosts_file = \"{}\"", other.display()),
            r#"provisioner "shell" { inline = ["true"] }"#,
        ),
    );
    let out = run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("HOST KEY MISMATCH");
}

#[test]
fn a_configured_host_with_unknown_key_is_never_trusted_silently() {
    if !util::is_root() {
        return;
    }
    let sshd = Sshd::start();
    let p = Project::new();
    p.file(
        "box.pkr.hcl",
        &null_ssh(
            &sshd,
            &format!("ssh_password = \"{PASSWORD}\""),
            "",
            r#"provisioner "shell" { inline = ["true"] }"#,
        ),
    );
    let out = run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("host key must be known");
    out.stderr_has("ssh_host_key_fingerprint");
}

#[test]
fn key_auth_uploads_a_tree_and_reports_exit_status_and_stderr() {
    if !util::is_root() {
        return;
    }
    let sshd = Sshd::start();
    let scratch = Sshd::scratch("ssh-upload");
    let p = Project::new();
    p.file("files/app/config.ini", "[app]\nport = 8080\n");
    p.file("files/app/bin/run.sh", "#!/bin/sh\necho running\n");
    std::fs::set_permissions(
        p.path().join("files/app/bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.file("files/app/nested/deep/data.txt", "deep\n");
    let defs = null_ssh(
        &sshd,
        &format!("ssh_private_key_file = \"{}\"", sshd.client_key.display()),
        &format!("ssh_known_hosts_file = \"{}\"", sshd.known_hosts.display()),
        &format!(
            r#"provisioner "file" {{
    source      = "files/app"
    destination = "{dir}/"
  }}
  provisioner "shell" {{
    inline = ["{dir}/app/bin/run.sh > {dir}/ran"]
  }}
  provisioner "file" {{
    direction   = "download"
    source      = "{dir}/ran"
    destination = "fetched/ran.txt"
  }}"#,
            dir = scratch.display()
        ),
    );
    p.file("box.pkr.hcl", &defs);
    run(&p, &["apply", "--auto-approve"]).success();
    assert_eq!(
        std::fs::read_to_string(scratch.join("app/config.ini")).unwrap(),
        "[app]\nport = 8080\n"
    );
    assert_eq!(
        std::fs::read_to_string(scratch.join("app/nested/deep/data.txt")).unwrap(),
        "deep\n"
    );
    let mode = std::fs::metadata(scratch.join("app/bin/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "exec bits kept: {mode:o}");
    assert_eq!(
        std::fs::read_to_string(scratch.join("ran")).unwrap(),
        "running\n"
    );
    // Downloaded back over SFTP.
    assert_eq!(p.read("fetched/ran.txt"), "running\n");

    // A failing command: its exit status and stderr reach the user.
    let failing = defs.replace(
        "inline = [",
        "inline = [\"echo 'disk is full' >&2\", \"exit 3\", ",
    );
    p.file("box.pkr.hcl", &failing);
    let out = run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("exited with status 3");
    out.stderr_has("disk is full");

    // Packer's sudo form of execute_command runs the script as root, with
    // the provisioner's variables.
    p.file(
        "box.pkr.hcl",
        &defs.replace(
            "inline = [",
            &format!(
                "execute_command = \"sudo -n sh -c '{{{{ .Vars }}}} {{{{ .Path }}}}'\"\n    environment_vars = [\"WHO=root-via-sudo\"]\n    inline = [\"id -un > {dir}/whoami\", \"echo $WHO >> {dir}/whoami\", ",
                dir = scratch.display()
            ),
        ),
    );
    run(&p, &["apply", "--auto-approve"]).success();
    assert_eq!(
        std::fs::read_to_string(scratch.join("whoami")).unwrap(),
        "root\nroot-via-sudo\n"
    );

    // valid_exit_codes accepts it.
    p.file(
        "box.pkr.hcl",
        &failing.replace("inline = [", "valid_exit_codes = [0, 3]\n    inline = ["),
    );
    run(&p, &["apply", "--auto-approve"]).success();
}

#[test]
fn through_a_bastion_host() {
    if !util::is_root() {
        return;
    }
    // The same sshd is both the bastion and (through a direct-tcpip
    // forward from itself) the target.
    let sshd = Sshd::start();
    let scratch = Sshd::scratch("ssh-bastion");
    let p = Project::new();
    p.file(
        "box.pkr.hcl",
        &null_ssh(
            &sshd,
            &format!(
                "ssh_private_key_file = \"{key}\"\n  ssh_bastion_host = \"127.0.0.1\"\n  ssh_bastion_port = {port}\n  ssh_bastion_username = \"{USER}\"\n  ssh_bastion_private_key_file = \"{key}\"",
                key = sshd.client_key.display(),
                port = sshd.port
            ),
            &format!("ssh_known_hosts_file = \"{}\"", sshd.known_hosts.display()),
            &format!(
                r#"provisioner "shell" {{ inline = ["echo via-bastion > {}/hop"] }}"#,
                scratch.display()
            ),
        ),
    );
    let out = run(&p, &["apply", "--auto-approve"]);
    out.success();
    out.stderr_has("via bastion 127.0.0.1");
    assert_eq!(
        std::fs::read_to_string(scratch.join("hop")).unwrap(),
        "via-bastion\n"
    );
    // Two logins: the bastion's, then the target's through the forward.
    assert!(
        sshd.log().matches("Accepted publickey").count() >= 2,
        "{}",
        sshd.log()
    );
}

#[test]
fn a_refused_password_on_a_configured_host_fails_at_once() {
    if !util::is_root() {
        return;
    }
    let sshd = Sshd::start();
    let p = Project::new();
    p.file(
        "box.pkr.hcl",
        &null_ssh(
            &sshd,
            "ssh_password = \"not-the-password\"",
            &format!("ssh_known_hosts_file = \"{}\"", sshd.known_hosts.display()),
            r#"provisioner "shell" { inline = ["true"] }"#,
        ),
    );
    let started = std::time::Instant::now();
    let out = run(&p, &["apply", "--auto-approve"]);
    out.code(1);
    out.stderr_has("refused the password authentication");
    assert!(!out.stderr.contains("not-the-password"), "{}", out.stderr);
    // Not retried until ssh_timeout (20s): a configured host will not change its mind.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}
