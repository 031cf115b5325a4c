//! Post-processors on the real binary: `shell-local`, `artifice`,
//! `compress` and `checksum` run after the image is built and before it is
//! recorded, with Packer's chains, template data and environment; their
//! settings are part of the image's identity; a failing one fails the
//! image and leaves nothing behind. Legacy JSON templates: a templated
//! builder name, and the secret-reading template functions
//! (`aws_secretsmanager` against moto; `vault`, `consul_key`, `sed` as
//! located errors).

mod util;

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use util::moto::Moto;
use util::Project;

/// A null image whose post-processors make a disk file, archive it three
/// ways and checksum the archive. Each chain starts from the builder's
/// artifact; `artifice` hands the file the shell-local step wrote on.
fn definition(level: u32) -> String {
    format!(
        r#"
variable "payload" {{
  default = "disk bytes"
}}

source "null" "disk" {{
  communicator = "none"
}}

build {{
  name    = "golden"
  sources = ["source.null.disk"]

  post-processor "shell-local" {{
    name   = "env"
    inline = ["echo \"$PACKER_BUILD_NAME/$PACKER_BUILDER_TYPE/$IMGFORM_ARTIFACT_ID\" > env.txt"]
  }}

  post-processors {{
    post-processor "shell-local" {{
      inline = ["mkdir -p out", "printf '%s' '${{var.payload}}' > out/disk.img"]
    }}
    post-processor "artifice" {{
      files = ["out/disk.img"]
    }}
    post-processor "compress" {{
      output              = "dist/disk.zip"
      keep_input_artifact = true
    }}
  }}

  post-processors {{
    post-processor "artifice" {{
      files = ["out/disk.img"]
    }}
    post-processor "compress" {{
      output            = "dist/{{{{.BuildName}}}}-{{{{.BuilderType}}}}.tar.gz"
      compression_level = {level}
    }}
    post-processor "checksum" {{
      checksum_types = ["sha256", "md5"]
      output         = "dist/{{{{.BuildName}}}}_{{{{.ChecksumType}}}}.checksum"
    }}
  }}

  post-processor "manifest" {{
    output = "manifest.json"
  }}
}}
"#
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `tool args...` in `dir`, its stdout.
fn tool(dir: &Path, program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Files under `dir` whose names say they are temporary or set aside.
fn leftovers(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".old") || n.ends_with(".part"))
        .collect()
}

fn reasons(plan: &serde_json::Value) -> Vec<serde_json::Value> {
    plan["changes"][0]["reasons"].as_array().unwrap().clone()
}

#[test]
fn chains_run_with_packer_data_and_are_part_of_the_identity() {
    let p = Project::new();
    p.file("images.pkr.hcl", &definition(9));
    let applied = p.run(&["apply", "--auto-approve"]);
    applied.success();

    // Packer's environment in shell-local.
    let env = p.read("env.txt");
    assert!(env.starts_with("disk/null/null:"), "{env}");

    // compress: a .tar.gz holding the file artifice named, by base name.
    let dir = p.path();
    let listing = String::from_utf8(tool(dir, "tar", &["-tzf", "dist/disk-null.tar.gz"])).unwrap();
    assert_eq!(listing.trim(), "disk.img");
    let inside = tool(dir, "tar", &["-xzOf", "dist/disk-null.tar.gz", "disk.img"]);
    assert_eq!(inside, b"disk bytes");
    // A zip too, by the name the artifact gives the file.
    let zip_inside = tool(dir, "unzip", &["-p", "dist/disk.zip", "out/disk.img"]);
    assert_eq!(zip_inside, b"disk bytes");
    // The second compress did not keep its input (Packer's default): the
    // file artifice handed it is gone; the first kept it for the second.
    assert!(!dir.join("out/disk.img").exists());

    // checksum: one file per type, `<hex>\t<name>` of the archive.
    let archive = std::fs::read(dir.join("dist/disk-null.tar.gz")).unwrap();
    assert_eq!(
        p.read("dist/disk_sha256.checksum"),
        format!("{}\tdisk-null.tar.gz\n", sha256_hex(&archive))
    );
    let md5 = String::from_utf8(tool(dir, "md5sum", &["dist/disk-null.tar.gz"])).unwrap();
    let md5 = md5.split_whitespace().next().unwrap().to_owned();
    assert_eq!(
        p.read("dist/disk_md5.checksum"),
        format!("{md5}\tdisk-null.tar.gz\n")
    );
    // manifest still runs, after the image is recorded.
    assert!(p
        .read("manifest.json")
        .contains("\"builder_type\": \"null\""));
    assert!(leftovers(dir).is_empty(), "{:?}", leftovers(dir));

    // Unchanged: nothing to do.
    let plan = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    // A changed post-processor setting rebuilds the image, and says why.
    p.file("images.pkr.hcl", &definition(1));
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    let why = reasons(&plan.json());
    assert!(
        why.iter().any(|r| r["kind"] == "input_changed"
            && r["path"] == "post_processors[5].config.compression_level"
            && r["old"] == 9
            && r["new"] == 1),
        "{why:?}"
    );
    let human = p.run(&["plan", "--no-color"]);
    assert!(
        human
            .stdout
            .contains("post_processors[5].config.compression_level"),
        "{}",
        human.stdout
    );

    // A manifest post-processor's settings are not part of the identity.
    p.file(
        "images.pkr.hcl",
        &definition(9).replace("output = \"manifest.json\"", "output = \"other.json\""),
    );
    let plan = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);

    // A new post-processor is a change of the list.
    p.file(
        "images.pkr.hcl",
        &definition(9).replace(
            "  post-processor \"manifest\"",
            "  post-processor \"checksum\" {\n  }\n\n  post-processor \"manifest\"",
        ),
    );
    let plan = p.run(&["plan", "--json"]);
    plan.success();
    let why = reasons(&plan.json());
    assert!(
        why.iter()
            .any(|r| r["kind"] == "input_changed" && r["path"] == "post_processors"),
        "{why:?}"
    );
}

#[test]
fn a_failing_post_processor_fails_the_image_and_leaves_nothing_behind() {
    let p = Project::new();
    p.file("sums.txt", "kept as it was\n");
    p.file(
        "images.pkr.hcl",
        r#"
source "null" "disk" {
  communicator = "none"
}

build {
  sources = ["source.null.disk"]

  post-processors {
    post-processor "shell-local" {
      inline = ["echo data > disk.img"]
    }
    post-processor "artifice" {
      files = ["disk.img"]
    }
    post-processor "compress" {
      output              = "new/dir/disk.tar"
      keep_input_artifact = true
    }
    post-processor "checksum" {
      output = "sums.txt"
    }
    post-processor "shell-local" {
      inline = ["echo failing on purpose >&2", "exit 3"]
    }
  }
}
"#,
    );
    let applied = p.run(&["apply", "--auto-approve"]);
    applied
        .code(1)
        // The archive and the sums were written before the last step failed.
        .stderr_has("compress: wrote new/dir/disk.tar")
        .stderr_has("checksum: md5 of disk.tar in sums.txt")
        .stderr_has("post-processor \"shell-local\" failed")
        .stderr_has("failing on purpose");
    // Nothing the post-processors wrote is left; what was there is back.
    assert!(!p.path().join("new").exists());
    assert_eq!(p.read("sums.txt"), "kept as it was\n");
    assert!(leftovers(p.path()).is_empty(), "{:?}", leftovers(p.path()));
    // The image was not recorded: it is still to be built.
    let plan = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("null.disk"), "{}", plan.stdout);
}

#[test]
fn bad_post_processor_settings_are_located_errors_and_unknown_kinds_warnings() {
    let p = Project::new();
    let text = r#"source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  post-processor "compress" {
    output = "disk.tar.xz"
  }
  post-processor "checksum" {
    checksum_types = ["sha256", "crc32"]
    outptu         = "x"
  }
}
"#;
    p.file("images.pkr.hcl", text);
    p.run(&["validate"])
        .code(1)
        .stderr_has("imgform does not write .xz archives")
        .stderr_has("images.pkr.hcl:8:")
        .stderr_has("unknown attribute `outptu` in post-processor \"checksum\"")
        .stderr_has("did you mean `output`?");

    p.file(
        "images.pkr.hcl",
        r#"source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  post-processor "checksum" {
    checksum_types = ["crc32"]
    output = "{{.BuildName}}-{{.Nope}}.sum"
  }
}
"#,
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("unknown checksum type \"crc32\"")
        .stderr_has("{{.Nope}} is not a field");

    p.file(
        "images.pkr.hcl",
        r#"source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  post-processor "vagrant" {
    output = "box.box"
  }
  post-processor "compress" {
    keep_input_artifact = false
    output              = "a.tar"
  }
}
"#,
    );
    let valid = p.run(&["validate"]);
    valid
        .success()
        .stderr_has("post-processor \"vagrant\" is not run by imgform")
        .stderr_has("keep_input_artifact = false does not delete the built image");
    // The null builder has no file: compress without tar or zip says so,
    // and the image fails.
    p.file(
        "images.pkr.hcl",
        r#"source "null" "a" {
  communicator = "none"
}

build {
  sources = ["source.null.a"]
  post-processor "compress" {
    output = "a.img.gz"
  }
}
"#,
    );
    p.run(&["apply", "--auto-approve"])
        .code(1)
        .stderr_has("compresses exactly one file");
}

#[test]
fn legacy_json_builder_names_render_with_the_variables() {
    let p = Project::new();
    p.file(
        "packer.json",
        r#"{
  "variables": {"build_name": "ubuntu-2204", "kube": "1.30"},
  "builders": [
    {"type": "null", "name": "{{user `build_name`}}", "communicator": "none"}
  ],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo {{user `kube`}} > kube.txt"]}
  ],
  "post-processors": [
    {"type": "shell-local", "inline": ["echo $PACKER_BUILD_NAME > name.txt"]}
  ]
}
"#,
    );
    let valid = p.run(&["validate"]);
    valid.success();
    assert!(
        valid.stdout.contains("null.ubuntu-2204"),
        "{}",
        valid.stdout
    );
    let other = p.run(&["validate", "--var", "build_name=flatcar"]);
    other.success();
    assert!(other.stdout.contains("null.flatcar"), "{}", other.stdout);
    p.run(&["apply", "--auto-approve"]).success();
    assert_eq!(p.read("kube.txt").trim(), "1.30");
    assert_eq!(p.read("name.txt").trim(), "ubuntu-2204");

    // A name that cannot be an address, or changes on every run.
    p.file(
        "packer.json",
        r#"{"builders": [{"type": "null", "name": "img-{{timestamp}}", "communicator": "none"}]}"#,
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("cannot render the builder name")
        .stderr_has("packer.json:1:");
}

#[test]
fn legacy_json_vault_consul_and_sed_are_located_errors_with_what_to_use() {
    let p = Project::new();
    p.file(
        "packer.json",
        r#"{
  "variables": {
    "token": "{{vault `secret/data/ci` `token`}}"
  },
  "builders": [{"type": "null", "communicator": "none"}]
}
"#,
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("packer.json:3:")
        .stderr_has("{{vault}} reads HashiCorp Vault")
        .stderr_has("vault kv get");
    p.file(
        "packer.json",
        r#"{
  "variables": {"addr": "{{consul_key `ci/addr`}}"},
  "builders": [{"type": "null", "communicator": "none"}]
}
"#,
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("{{consul_key}} reads Consul")
        .stderr_has("consul kv get");
    // HCL2's vault() likewise, at the variable.
    p.remove("packer.json");
    p.file(
        "vars.pkr.hcl",
        "variable \"token\" {\n  default = vault(\"secret/data/ci\", \"token\")\n}\nsource \"null\" \"a\" {\n  communicator = \"none\"\n}\nbuild {\n  sources = [\"source.null.a\"]\n}\n",
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("vars.pkr.hcl:2:")
        .stderr_has("vault() reads HashiCorp Vault");
    p.remove("vars.pkr.hcl");
    p.file(
        "packer.json",
        r#"{
  "builders": [{"type": "null", "communicator": "none"}],
  "provisioners": [{"type": "shell-local", "inline": ["echo {{sed `s/a/b/` `abc`}}"]}]
}
"#,
    );
    p.run(&["validate"])
        .code(1)
        .stderr_has("`sed` was removed from Packer")
        .stderr_has("replace_all");
}

const SECRET: &str = "s3cr3t-9f8e7d6c";

#[test]
fn legacy_json_aws_secretsmanager_reads_moto_and_stays_secret() {
    let moto = Moto::start();
    let env = moto.aws_env();
    moto.put_secret(
        "ci/registry",
        &format!(r#"{{"user":"ci","password":"{SECRET}"}}"#),
    );
    let p = Project::new();
    p.file(
        "packer.json",
        r#"{
  "variables": {
    "password": "{{aws_secretsmanager `ci/registry` `password`}}"
  },
  "builders": [{"type": "null", "communicator": "none"}],
  "provisioners": [
    {"type": "shell-local", "inline": ["echo pw={{user `password`}}", "echo {{user `password`}} > pw.txt"]}
  ]
}
"#,
    );
    let plan = p.run_isolated(&["plan"], &env);
    plan.success();
    assert!(!plan.stdout.contains(SECRET) && !plan.stderr.contains(SECRET));
    let applied = p.run_isolated(&["apply", "--auto-approve"], &env);
    applied.success().stderr_has("pw=(sensitive value)");
    assert!(!applied.stderr.contains(SECRET), "{}", applied.stderr);
    // The script got the real value.
    assert_eq!(p.read("pw.txt").trim(), SECRET);
    // Nothing imgform wrote holds it.
    for entry in walkdir::WalkDir::new(p.path().join("state")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned();
            assert!(!text.contains(SECRET), "{}", entry.path().display());
        }
    }
    // A new secret value rebuilds the image (its keyed digest is an input).
    moto.put_secret(
        "ci/registry",
        r#"{"user":"ci","password":"rotated-1a2b3c"}"#,
    );
    let plan = p.run_isolated(&["plan", "--detailed-exitcode"], &env);
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);

    // A missing secret is an error at the variable.
    let p = Project::new();
    p.file(
        "packer.json",
        r#"{
  "variables": {"password": "{{aws_secretsmanager `no/such` `password`}}"},
  "builders": [{"type": "null", "communicator": "none"}]
}
"#,
    );
    p.run_isolated(&["validate"], &env)
        .code(1)
        .stderr_has("packer.json:2:")
        .stderr_has("aws_secretsmanager(\"no/such\")");
}

/// A builder that makes a file: `checksum` sums it and `compress` gzips it
/// (Packer's default of not keeping the input does not delete the built
/// image: it is what the state records).
#[test]
fn a_chroot_image_file_is_checksummed_and_compressed() {
    if !util::is_root() {
        eprintln!("skipped: the chroot builder needs root");
        return;
    }
    let p = Project::new();
    p.with_busybox_rootfs();
    p.file(
        "images.pkr.hcl",
        r#"
source "chroot" "t" {
  base   = "rootfs/busybox.tar.gz"
  format = "tar"
}
build {
  sources = ["source.chroot.t"]
  provisioner "shell" {
    inline = ["echo marker > /etc/marker"]
  }
  post-processor "checksum" {
    checksum_types = ["sha256"]
    output         = "sums/{{.BuildName}}.sha256"
  }
  post-processor "compress" {
    output = "dist/{{.BuildName}}.tar.gz"
  }
}
"#,
    );
    p.run(&["apply", "--auto-approve"]).success();
    let built: Vec<_> = std::fs::read_dir(p.path().join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|e| e == "tar"))
        .collect();
    assert_eq!(built.len(), 1, "the built image is kept: {built:?}");
    let image = &built[0];
    let name = image.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(image).unwrap();
    assert_eq!(
        p.read("sums/t.sha256"),
        format!("{}\t{name}\n", sha256_hex(&bytes))
    );
    // compress tars the image (by its base name) and gzips the tar.
    let inside = tool(p.path(), "tar", &["-xzOf", "dist/t.tar.gz", &name]);
    assert_eq!(sha256_hex(&inside), sha256_hex(&bytes));
    let plan = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
}
