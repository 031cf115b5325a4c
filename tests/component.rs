//! `provisioner "component"`: EC2 Image Builder component documents run
//! inside a real chroot image.

mod util;

use std::path::Path;
use std::process::Command;

use util::Project;

fn project(doc: &str) -> Project {
    let p = Project::new();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-busybox-rootfs.sh");
    assert!(Command::new(script)
        .arg(p.path().join("rootfs/busybox.tar.gz"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success());
    p.file("components/doc.yml", doc);
    p.file(
        "images.pkr.hcl",
        r#"
variable "port" {
  default = "0"
}
source "chroot" "c" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.c"]
  provisioner "component" {
    document   = "components/doc.yml"
    parameters = { greeting = "bonjour", port = var.port }
  }
}
"#,
    );
    p
}

fn read(p: &Project, path: &str) -> String {
    let tar = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|e| e == "tar"))
        .unwrap();
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&tar)
        .arg(format!(".{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const DOC: &str = r#"
name: everything
description: exercises every supported action
schemaVersion: 1.0
parameters:
  - greeting:
      type: string
      default: hello
      description: what to say
  - unused:
      type: string
      default: fallback
phases:
  - name: build
    steps:
      - name: Say
        action: ExecuteBash
        inputs:
          commands:
            - echo "{{ greeting }} {{ unused }}"
      - name: UseOutput
        action: CreateFile
        inputs:
          - path: /etc/said
            content: "said: {{ build.Say.outputs.stdout }}"
            permissions: "0640"
      - name: Folder
        action: CreateFolder
        inputs:
          - path: /opt/app/data
            permissions: "0750"
      - name: Copy
        action: CopyFile
        inputs:
          - source: /etc/said
            destination: /opt/app/copied
      - name: Move
        action: MoveFile
        inputs:
          - source: /opt/app/copied
            destination: /opt/app/moved
      - name: Perms
        action: SetFilePermissions
        inputs:
          - path: /opt/app/moved
            permissions: "0600"
      - name: Owner
        action: SetFileOwner
        inputs:
          - path: /opt/app/data
            owner: nobody
      - name: Binary
        action: ExecuteBinary
        inputs:
          path: /bin/touch
          arguments: ["/etc/from-binary"]
      - name: Each
        action: ExecuteBash
        loop:
          name: item
          forEach: [a, b, c]
        inputs:
          commands:
            - echo "{{ item.index }}={{ item.value }}" >> /etc/loop
      - name: Count
        action: ExecuteBash
        loop:
          name: n
          for:
            start: 1
            end: 5
            updateBy: 2
        inputs:
          commands:
            - echo "{{ n.value }}" >> /etc/count
      - name: Flaky
        action: ExecuteBash
        maxAttempts: 3
        inputs:
          commands:
            - echo try >> /etc/tries
            - test "$(wc -l < /etc/tries)" -ge 2
      - name: Broken
        action: ExecuteBash
        onFailure: Ignore
        inputs:
          commands:
            - exit 9
      - name: NoPackageManager
        action: UpdateOS
        onFailure: Ignore
      - name: Restart
        action: Reboot
      - name: Remove
        action: DeleteFile
        inputs:
          - path: /etc/tries
  - name: validate
    steps:
      - name: Check
        action: ExecuteBash
        inputs:
          commands:
            - test -f /etc/said
            - echo validated > /etc/validated
  - name: test
    steps:
      - name: NotDuringBuild
        action: ExecuteBash
        inputs:
          commands:
            - echo test-phase > /etc/test-phase
"#;

#[test]
fn every_action_parameters_outputs_loops_and_failure_modes() {
    if !util::is_root() {
        eprintln!("skipped: needs root for the chroot builder");
        return;
    }
    let p = project(DOC);
    let run = p.run(&["apply", "--auto-approve"]);
    run.success();
    assert_eq!(read(&p, "/etc/said"), "said: bonjour fallback");
    assert_eq!(read(&p, "/opt/app/moved"), "said: bonjour fallback");
    assert_eq!(read(&p, "/etc/loop"), "0=a\n1=b\n2=c\n");
    assert_eq!(read(&p, "/etc/count"), "1\n3\n5\n");
    assert_eq!(read(&p, "/etc/validated"), "validated\n");
    assert_eq!(read(&p, "/etc/tries"), "", "DeleteFile removed it");
    assert_eq!(
        read(&p, "/etc/test-phase"),
        "",
        "the test phase does not run during the build"
    );
    let listing = Command::new("tar")
        .arg("-tvf")
        .arg(
            std::fs::read_dir(p.path().join("output"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|f| f.extension().is_some_and(|e| e == "tar"))
                .unwrap(),
        )
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-------") && l.ends_with("./opt/app/moved")),
        "{listing}"
    );
    assert!(
        listing.lines().any(|l| l.starts_with("drwxr-x---")
            && l.contains("65534/0")
            && l.ends_with("./opt/app/data/")),
        "{listing}"
    );
    assert!(listing.contains("./etc/from-binary"));
    assert!(
        run.stderr
            .contains("step Broken failed (exit status 9); onFailure: Ignore"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Reboot skipped"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Flaky (ExecuteBash), attempt 2"),
        "{}",
        run.stderr
    );
}

#[test]
fn abort_fails_the_image_and_web_download_fetches_over_http() {
    if !util::is_root() {
        eprintln!("skipped: needs root for the chroot builder");
        return;
    }
    // A real HTTP server on 127.0.0.1 (the chroot shares the host's network).
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("payload.txt"), "downloaded\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(served.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let doc = r#"
name: fetch
schemaVersion: 1.0
parameters:
  - port:
      type: string
phases:
  - name: build
    steps:
      - name: Get
        action: WebDownload
        inputs:
          - source: http://127.0.0.1:{{ port }}/payload.txt
            destination: /opt/payload.txt
      - name: Stop
        action: ExecuteBash
        inputs:
          commands:
            - echo failing on purpose >&2
            - exit 4
      - name: Never
        action: CreateFile
        inputs:
          - path: /etc/never
            content: x
"#;
    let p = project(doc);
    let run = p.run(&["apply", "--auto-approve", "--var", &format!("port={port}")]);
    run.code(1);
    assert!(
        run.stderr
            .contains("fetch: step build/Stop (ExecuteBash) failed: exit status 4"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("failing on purpose"), "{}", run.stderr);
    // onFailure: Continue runs the phase's other steps, then fails the
    // document (AWSTOE marks it Failed): nothing is recorded.
    p.file(
        "components/doc.yml",
        &doc.replace(
            "      - name: Stop\n        action: ExecuteBash\n",
            "      - name: Stop\n        action: ExecuteBash\n        onFailure: Continue\n",
        ),
    );
    let run = p.run(&["apply", "--auto-approve", "--var", &format!("port={port}")]);
    run.code(1);
    assert!(
        run.stderr.contains("build/Never (CreateFile)")
            && run.stderr.contains("phase build failed (onFailure: Continue ran its other steps): build/Stop (ExecuteBash) failed: exit status 4"),
        "{}",
        run.stderr
    );
    // Without the failing step the download lands in the image.
    p.file(
        "components/doc.yml",
        &doc.replace("            - exit 4\n", ""),
    );
    p.run(&["apply", "--auto-approve", "--var", &format!("port={port}")])
        .success();
    assert_eq!(read(&p, "/opt/payload.txt"), "downloaded\n");
    server.kill().ok();
    server.wait().ok();
}

/// AWSTOE's variables and chaining: constants, a `forEach` over a
/// delimited list (from a parameter, and from an earlier step's output),
/// named loops with `{{ loop.* }}` too, and inputs chained from other steps.
const CHAINED: &str = r#"
name: chained
schemaVersion: 1.0
parameters:
  - Hosts:
      type: string
      default: alpha;beta
constants:
  - AppDir:
      type: string
      value: /opt/chained
phases:
  - name: build
    steps:
      - name: Folder
        action: CreateFolder
        inputs:
          - path: "{{ AppDir }}/data"
      - name: Config
        action: CreateFile
        inputs:
          - path: "{{ build.Folder.inputs[0].path }}/app.conf"
            content: "dir={{ AppDir }}"
      - name: PerHost
        action: ExecuteBash
        timeoutSeconds: -1
        loop:
          name: host
          forEach:
            list: "{{ Hosts }}"
            delimiter: ";"
        inputs:
          commands:
            - echo "{{ host.index }} {{ loop.value }}" >> "{{ AppDir }}/hosts"
      - name: List
        action: ExecuteBash
        inputs:
          commands:
            - printf 'one\ntwo\n'
      - name: OnlyWithoutApt
        action: CreateFile
        if:
          and:
            - binaryExists: sh
            - not:
                binaryExists: apt-get
            - stringEquals: 'ALPHA;BETA'
              value: "{{ Hosts }}"
        inputs:
          - path: /etc/no-apt
            content: busybox
      - name: OnlyWithApt
        action: CreateFile
        if:
          binaryExists: apt-get
        inputs:
          - path: /etc/with-apt
            content: debian
      - name: NeverWhenFolderExists
        action: CreateFile
        if:
          folderExists: "{{ AppDir }}"
          then: Skip
          else: Execute
        inputs:
          - path: /etc/never
            content: x
      - name: PerLine
        action: ExecuteBash
        loop:
          forEach:
            list: "{{ build.List.outputs.stdout }}"
            delimiter: "\n"
        inputs:
          commands:
            - echo "line {{ loop.index }}={{ loop.value }}" >> "{{ build.Folder.inputs[0].path }}/lines"
            - cp "{{ build.Config.inputs[0].path }}" /etc/chained.conf
"#;

#[test]
fn constants_delimited_loops_and_chained_inputs_and_outputs() {
    if !util::is_root() {
        eprintln!("skipped: needs root for the chroot builder");
        return;
    }
    let p = project(CHAINED);
    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(read(&p, "/opt/chained/data/app.conf"), "dir=/opt/chained");
    assert_eq!(read(&p, "/opt/chained/hosts"), "0 alpha\n1 beta\n");
    assert_eq!(
        read(&p, "/opt/chained/data/lines"),
        "line 0=one\nline 1=two\n"
    );
    assert_eq!(read(&p, "/etc/chained.conf"), "dir=/opt/chained");
    // Conditions: decided on the machine (binaryExists, folderExists) and
    // here (stringEquals ignores case); a false `if` skips the step.
    assert_eq!(read(&p, "/etc/no-apt"), "busybox");
    assert_eq!(read(&p, "/etc/with-apt"), "");
    assert_eq!(read(&p, "/etc/never"), "");
}

#[test]
fn references_awstoe_would_leave_as_written_are_located_errors() {
    let p = project(
        "name: bad\nschemaVersion: 1.0\nconstants:\n  - Greeting:\n      type: string\n      value: hi\nphases:\n  - name: build\n    steps:\n      - name: One\n        action: ExecuteBash\n        inputs:\n          commands: [\"echo {{ Greting }}\"]\n      - name: Two\n        action: ExecuteBash\n        if:\n          binaryExists: sh\n          then: Run\n        inputs:\n          commands: [\"echo {{ build.Three.outputs.stdout }}\"]\n      - name: Three\n        action: ExecuteBash\n        inputs:\n          commands: [\"echo {{ loop.value }}\"]\n",
    );
    let run = p.run(&["plan"]);
    run.code(1);
    for needle in [
        "components/doc.yml:13:1",
        "`{{ Greting }}` is nothing this document declares",
        "did you mean `{{ Greeting }}`?",
        "components/doc.yml:16:1",
        "`then: Run` is not Execute, Skip or Abort",
        "components/doc.yml:20:1",
        "refers to the outputs of a step that has not run yet",
        "components/doc.yml:24:1",
        "is used outside a loop",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
}

#[test]
fn unknown_actions_are_diagnostics_with_the_documents_line_and_documents_are_inputs() {
    let p = Project::new();
    p.file("rootfs/.keep", "");
    p.file(
        "components/bad.yml",
        "name: bad\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: One\n        action: ExecuteBash\n        inputs:\n          commands: [\"true\"]\n      - name: Two\n        action: DownloadThing\n",
    );
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "c" {
  base = "rootfs"
}
build {
  sources = ["source.chroot.c"]
  provisioner "component" {
    document = "components/bad.yml"
  }
}
"#,
    );
    let run = p.run(&["validate"]);
    run.code(1);
    assert!(
        run.stderr
            .contains("unsupported action `DownloadThing` in step `Two`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("components/bad.yml:11:1"),
        "{}",
        run.stderr
    );

    // The document's bytes and the parameters are inputs.
    p.file("components/bad.yml", "name: ok\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: One\n        action: ExecuteBash\n        inputs:\n          commands: [\"true\"]\n");
    let first = p.run(&["plan", "--json"]).json()["changes"][0]["content"]["new"].clone();
    p.file("components/bad.yml", "name: ok\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: One\n        action: ExecuteBash\n        inputs:\n          commands: [\"false\"]\n");
    let second = p.run(&["plan", "--json"]).json()["changes"][0]["content"]["new"].clone();
    assert_ne!(first, second);
}

#[test]
fn the_test_phase_gates_recording_and_deletes_a_failed_image() {
    if !util::is_root() {
        eprintln!("skipped: needs root for the chroot builder");
        return;
    }
    let p = project(
        r#"
name: with-tests
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Install
        action: CreateFile
        inputs:
          - path: /etc/app.conf
            content: "port=80"
  - name: test
    steps:
      - name: ConfigPresent
        action: ExecuteBash
        inputs:
          commands:
            - grep -q port=80 /etc/app.conf
            - echo ran > /etc/component-test-ran
"#,
    );
    let defs = |check: &str| {
        format!(
            r#"
source "chroot" "c" {{
  base   = "rootfs/busybox.tar.gz"
  format = "qcow2"
}}
build {{
  sources = ["source.chroot.c"]
  provisioner "component" {{
    document = "components/doc.yml"
  }}
  test {{
    provisioner "shell" {{
      inline = ["{check}", "echo tested > /etc/test-block-ran"]
    }}
  }}
}}
"#
        )
    };
    p.file("images.pkr.hcl", &defs("test -f /etc/app.conf"));
    let run = p.run(&["apply", "--auto-approve"]);
    run.success();
    assert!(
        run.stderr
            .contains("test phase: running the tests on a fresh unpack of the new image"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("ConfigPresent"), "{}", run.stderr);
    let state = p.read("state/local.json");
    assert!(state.contains("chroot.c"));
    // Tests run on a throwaway copy: what they write is not in the image.
    let image = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|e| e == "qcow2"))
        .unwrap();
    let raw = image.with_extension("check.raw");
    assert!(Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&image)
        .arg(&raw)
        .status()
        .unwrap()
        .success());
    let ls = Command::new("debugfs")
        .args(["-R", "ls -l /etc"])
        .arg(&raw)
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("app.conf")
            && !ls.contains("test-block-ran")
            && !ls.contains("component-test-ran"),
        "{ls}"
    );
    std::fs::remove_file(&raw).ok();

    // The test definitions are inputs: a failing test changes the address,
    // and a failed test phase records nothing and deletes the new image.
    p.file("images.pkr.hcl", &defs("test -f /etc/does-not-exist"));
    let json = p.run(&["plan", "--json"]).json();
    assert_eq!(json["changes"][0]["action"], "rebuild");
    assert!(
        json["changes"][0]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "tests[0].config.inline"),
        "{json}"
    );
    let before = p.read("state/local.json");
    let failed = p.run(&["apply", "--auto-approve"]);
    failed.code(1);
    assert!(
        failed
            .stderr
            .contains("tests failed, the image is not recorded (the new image was deleted)"),
        "{}",
        failed.stderr
    );
    assert_eq!(p.read("state/local.json"), before, "state unchanged");
    let files: Vec<_> = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".qcow2")).count(),
        1,
        "only the previous image: {files:?}"
    );

    // --keep-failed keeps the file but still records nothing.
    let kept = p.run(&["apply", "--auto-approve", "--keep-failed"]);
    kept.code(1);
    assert!(kept.stderr.contains("kept at output/"), "{}", kept.stderr);
    assert_eq!(p.read("state/local.json"), before);
    let files: Vec<_> = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".qcow2")).count(),
        2,
        "{files:?}"
    );
}

#[test]
fn s3_download_and_upload_against_moto() {
    if !util::is_root() {
        eprintln!("skipped: needs root for the chroot builder");
        return;
    }
    let moto = util::moto::Moto::start();
    moto.put("inputs/app.conf", b"from s3\n");
    moto.put("inputs/dir/a.txt", b"a\n");
    moto.put("inputs/dir/sub/b.txt", b"b\n");
    let p = project(
        r#"
name: s3
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: GetOne
        action: S3Download
        inputs:
          - source: s3://imgform-state/inputs/app.conf
            destination: /etc/app.conf
      - name: GetMany
        action: S3Download
        inputs:
          - source: s3://imgform-state/inputs/dir/*
            destination: /opt/dir
      - name: Report
        action: CreateFile
        inputs:
          - path: /var/report.txt
            content: "built"
      - name: PutOne
        action: S3Upload
        inputs:
          - source: /var/report.txt
            destination: s3://imgform-state/reports/
      - name: PutMany
        action: S3Upload
        inputs:
          - source: /opt/dir/*
            destination: s3://imgform-state/copy/
"#,
    );
    let endpoint = moto.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let run = p.run_env(&["apply", "--auto-approve"], &env);
    run.success();
    assert_eq!(read(&p, "/etc/app.conf"), "from s3\n");
    assert_eq!(read(&p, "/opt/dir/a.txt"), "a\n");
    assert_eq!(read(&p, "/opt/dir/sub/b.txt"), "b\n");
    assert_eq!(
        moto.get("reports/report.txt").as_deref(),
        Some(&b"built"[..])
    );
    assert_eq!(moto.get("copy/a.txt").as_deref(), Some(&b"a\n"[..]));
    assert_eq!(moto.get("copy/sub/b.txt").as_deref(), Some(&b"b\n"[..]));
}
