//! `compress`: writes the files of the artifact it is given into one
//! archive at `output` (default `packer_{{.BuildName}}_{{.BuilderType}}`,
//! relative to the current directory), the format chosen from `output`'s
//! extension (or `format`) as Packer chooses it: `.tar`, `.zip`, `.gz`
//! (one file, gzip) and `.tar.gz`; an output with no extension imgform
//! knows is a `.tar.gz`. `compression_level` (-1 to 9; 0 and -1 mean the
//! default, 6; above 9 means 9) sets gzip's level. lz4, xz, bzip2 and bgzf
//! are Packer formats imgform does not write: an error at plan time naming
//! them. Its artifact is the archive; it does not keep its input
//! (Packer's default) unless `keep_input_artifact = true`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Files, PostProcessorKind, Step};
use crate::build::BuildError;
use crate::diag::Diagnostic;
use crate::schema::{input, Schema};
use crate::spec::ProvisionerSpec;

pub static KIND: PostProcessorKind = PostProcessorKind {
    schema: Schema {
        kind: "compress",
        attrs: &[
            &[
                input("output").string(),
                input("format").string(),
                input("compression_level"),
            ],
            super::COMMON,
        ],
        blocks: &[],
    },
    keeps_input: false,
    forces_keep: false,
    check,
    run: |step| Box::pin(run(step)),
};

const DEFAULT_OUTPUT: &str = "packer_{{.BuildName}}_{{.BuilderType}}";

/// How the archive is made: a container (tar, zip or none) and gzip or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Format {
    archive: Archive,
    gzip: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archive {
    Tar,
    Zip,
    /// One file, compressed as it is.
    None,
}

/// Packer's choice from the extensions of `output` (plus `.format`): the
/// last one decides; `.tar` before a compression also tars. `Err` names a
/// format Packer has and imgform does not write.
fn format_of(output: &str, format: Option<&str>) -> Result<Format, String> {
    static EXTENSION: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\.([a-z0-9]+)").expect("regex"));
    let name = match format {
        Some(f) if !f.is_empty() => format!("{output}.{f}"),
        _ => output.to_owned(),
    };
    let found: Vec<&str> = EXTENSION
        .captures_iter(&name)
        .map(|c| c.get(1).map_or("", |m| m.as_str()))
        .collect();
    let default = Format {
        archive: Archive::Tar,
        gzip: true,
    };
    let Some(last) = found.last() else {
        return Ok(default);
    };
    let tarred = found.len() > 1 && found[found.len() - 2] == "tar";
    let archive = if tarred { Archive::Tar } else { Archive::None };
    match *last {
        "tar" => Ok(Format {
            archive: Archive::Tar,
            gzip: false,
        }),
        "zip" => Ok(Format {
            archive: Archive::Zip,
            gzip: false,
        }),
        "gz" => Ok(Format {
            archive,
            gzip: true,
        }),
        "lz4" | "xz" | "bzip2" | "bgzf" => Err((*last).to_owned()),
        _ => Ok(default),
    }
}

fn level(p: &ProvisionerSpec) -> Result<u32, String> {
    let value = match p.config.get("compression_level") {
        None | Some(Value::Null) => return Ok(6),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    match value {
        Some(-1 | 0) => Ok(6),
        Some(n @ 1..=9) => Ok(n as u32),
        Some(n) if n > 9 => Ok(9),
        _ => Err("compression_level must be a whole number from -1 to 9".to_owned()),
    }
}

fn check(p: &ProvisionerSpec) -> Vec<Diagnostic> {
    let mut diags = super::check_output(p, &["BuildName", "BuilderType"]);
    let output = super::str_attr(p, "output").unwrap_or(DEFAULT_OUTPUT);
    if let Err(ext) = format_of(output, super::str_attr(p, "format")) {
        let at = if p.config.contains_key("format") {
            "format"
        } else {
            "output"
        };
        diags.push(
            Diagnostic::error(format!(
                "post-processor \"compress\": imgform does not write .{ext} archives"
            ))
            .at(Some(super::loc_of(p, at)))
            .hint("imgform's compress writes .tar, .tar.gz, .gz and .zip; pick one of those, or compress in a shell-local post-processor"),
        );
    }
    if let Err(message) = level(p) {
        diags.push(
            Diagnostic::error(format!("post-processor \"compress\": {message}"))
                .at(Some(super::loc_of(p, "compression_level")))
                .hint("0 or -1 is gzip's default (6), 1 the fastest, 9 the smallest"),
        );
    }
    diags
}

async fn run(step: Step<'_>) -> Result<Files, BuildError> {
    let template = super::str_attr(step.p, "output").unwrap_or(DEFAULT_OUTPUT);
    let build = super::build_fields(step.ctx);
    let fields: Vec<(&str, &str)> = build.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let target = super::output_path(&super::render_fields(template, &fields).map_err(fail)?);
    let format = format_of(template, super::str_attr(step.p, "format"))
        .map_err(|ext| fail(format!("imgform does not write .{ext} archives")))?;
    let level = level(step.p).map_err(fail)?;
    let inputs = step.input.files.clone();
    if format.archive == Archive::None && inputs.len() != 1 {
        return Err(fail(format!(
            "without tar or zip it compresses exactly one file, and the artifact has {} ({})",
            inputs.len(),
            if inputs.is_empty() {
                "the builder made no local file".to_owned()
            } else {
                inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    let pending = step
        .outputs
        .create(&target)
        .map_err(super::io_error(format!("creating {}", target.display())))?;
    let def_dir = step.ctx.spec.def_dir.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut pending = pending;
        let result = write_archive(&mut pending.file, format, level, &inputs, &def_dir);
        (pending, result)
    })
    .await
    .map_err(|e| fail(e.to_string()))?;
    let (pending, result) = written;
    if let Err(e) = result {
        super::Outputs::abandon(pending);
        return Err(fail(format!("writing {}: {e}", target.display())));
    }
    let path = step
        .outputs
        .finish(pending)
        .map_err(super::io_error(format!("writing {}", target.display())))?;
    step.ctx
        .events
        .step(format!("compress: wrote {}", path.display()));
    Ok(Files {
        files: vec![path],
        produced: true,
    })
}

fn fail(message: String) -> BuildError {
    BuildError::Provisioner {
        kind: "compress".to_owned(),
        message,
    }
}

fn write_archive(
    out: &mut std::fs::File,
    format: Format,
    level: u32,
    inputs: &[PathBuf],
    def_dir: &Path,
) -> std::io::Result<()> {
    let out = std::io::BufWriter::new(out);
    if format.gzip {
        let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
        write_body(&mut encoder, format.archive, inputs, def_dir)?;
        encoder.finish()?.flush()
    } else {
        let mut out = out;
        write_body(&mut out, format.archive, inputs, def_dir)?;
        out.flush()
    }
}

fn write_body(
    out: &mut dyn Write,
    archive: Archive,
    inputs: &[PathBuf],
    def_dir: &Path,
) -> std::io::Result<()> {
    match archive {
        Archive::Tar => {
            for input in inputs {
                tar_entry(out, input)?;
            }
            // The end of a tar: two zero blocks.
            out.write_all(&[0u8; 1024])
        }
        Archive::Zip => zip(out, inputs, def_dir),
        Archive::None => {
            std::io::copy(&mut std::fs::File::open(&inputs[0])?, out)?;
            Ok(())
        }
    }
}

/// One regular file in a tar (ustar; its base name, as Packer's tar has;
/// sizes beyond ustar's 8 GiB in GNU's base-256 form).
fn tar_entry(out: &mut dyn Write, path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.len() > 100 {
        return Err(std::io::Error::other(format!(
            "{name}: a name longer than 100 bytes does not fit a tar header"
        )));
    }
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}", width = field.len() - 1);
        field[..text.len()].copy_from_slice(text.as_bytes());
    };
    use std::os::unix::fs::PermissionsExt;
    octal(
        &mut header[100..108],
        u64::from(meta.permissions().mode() & 0o7777),
    );
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    let size = meta.len();
    if size < 8u64.pow(11) {
        octal(&mut header[124..136], size);
    } else {
        header[124] = 0x80;
        header[128..136].copy_from_slice(&size.to_be_bytes());
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    octal(&mut header[136..148], mtime);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    out.write_all(&header)?;
    let copied = std::io::copy(&mut (&mut file).take(size), out)?;
    if copied != size {
        return Err(std::io::Error::other(format!(
            "{} changed size while it was archived",
            path.display()
        )));
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&vec![0u8; pad as usize])
}

/// A zip of `inputs` (deflated; names relative to the definition dir as
/// the artifact names them). Entries of 4 GiB or more would need ZIP64,
/// which imgform does not write: an error that says so.
fn zip(out: &mut dyn Write, inputs: &[PathBuf], def_dir: &Path) -> std::io::Result<()> {
    let mut offset: u64 = 0;
    let mut central = Vec::new();
    let too_big = || {
        std::io::Error::other(
            "a zip entry of 4 GiB or more needs ZIP64, which imgform does not write; use .tar.gz",
        )
    };
    let u32_of = |n: u64| u32::try_from(n).map_err(|_| too_big());
    for input in inputs {
        let name = input
            .strip_prefix(def_dir)
            .unwrap_or(input)
            .to_string_lossy()
            .replace('\\', "/");
        // Local header with the data descriptor flag: sizes follow the data.
        let mut local = Vec::with_capacity(30 + name.len());
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&20u16.to_le_bytes());
        local.extend_from_slice(&0x0008u16.to_le_bytes());
        local.extend_from_slice(&8u16.to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes()); // time 00:00
        local.extend_from_slice(&0x0021u16.to_le_bytes()); // 1980-01-01
        local.extend_from_slice(&[0u8; 12]); // crc, sizes: in the descriptor
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        out.write_all(&local)?;
        let mut counter = Counted {
            inner: &mut *out,
            written: 0,
        };
        let mut crc = flate2::Crc::new();
        let mut size = 0u64;
        {
            let mut encoder =
                flate2::write::DeflateEncoder::new(&mut counter, flate2::Compression::default());
            let mut file = std::fs::File::open(input)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                crc.update(&buf[..n]);
                size += n as u64;
                encoder.write_all(&buf[..n])?;
            }
            encoder.finish()?;
        }
        let compressed = counter.written;
        let (crc, csize, usize_) = (crc.sum(), u32_of(compressed)?, u32_of(size)?);
        let mut descriptor = Vec::with_capacity(16);
        descriptor.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        descriptor.extend_from_slice(&crc.to_le_bytes());
        descriptor.extend_from_slice(&csize.to_le_bytes());
        descriptor.extend_from_slice(&usize_.to_le_bytes());
        out.write_all(&descriptor)?;
        let mut entry = Vec::with_capacity(46 + name.len());
        entry.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        entry.extend_from_slice(&(0x0300u16 | 20).to_le_bytes()); // made on Unix
        entry.extend_from_slice(&20u16.to_le_bytes());
        entry.extend_from_slice(&0x0008u16.to_le_bytes());
        entry.extend_from_slice(&8u16.to_le_bytes());
        entry.extend_from_slice(&0u16.to_le_bytes());
        entry.extend_from_slice(&0x0021u16.to_le_bytes());
        entry.extend_from_slice(&crc.to_le_bytes());
        entry.extend_from_slice(&csize.to_le_bytes());
        entry.extend_from_slice(&usize_.to_le_bytes());
        entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
        entry.extend_from_slice(&[0u8; 8]); // extra, comment, disk, internal attrs
        entry.extend_from_slice(&((0o100_644u32) << 16).to_le_bytes());
        entry.extend_from_slice(&u32_of(offset)?.to_le_bytes());
        entry.extend_from_slice(name.as_bytes());
        central.extend_from_slice(&entry);
        offset += local.len() as u64 + compressed + descriptor.len() as u64;
    }
    let count = inputs.len() as u16;
    let mut end = Vec::with_capacity(22);
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&[0u8; 4]);
    end.extend_from_slice(&count.to_le_bytes());
    end.extend_from_slice(&count.to_le_bytes());
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&u32_of(offset)?.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    out.write_all(&central)?;
    out.write_all(&end)
}

/// Counts the bytes written through it.
struct Counted<'a> {
    inner: &'a mut dyn Write,
    written: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_packer_extensions() {
        let f = |o: &str, fmt: Option<&str>| format_of(o, fmt);
        let tar_gz = Format {
            archive: Archive::Tar,
            gzip: true,
        };
        assert_eq!(f("out/{{.BuildName}}.tar.gz", None), Ok(tar_gz));
        assert_eq!(
            f("packer_{{.BuildName}}_{{.BuilderType}}", None),
            Ok(tar_gz)
        );
        assert_eq!(f("disk.box", None), Ok(tar_gz));
        assert_eq!(
            f("disk.img.gz", None),
            Ok(Format {
                archive: Archive::None,
                gzip: true
            })
        );
        assert_eq!(
            f("x", Some("zip")),
            Ok(Format {
                archive: Archive::Zip,
                gzip: false
            })
        );
        assert_eq!(f("disk.tar.xz", None), Err("xz".to_owned()));
        assert_eq!(f("disk.lz4", None), Err("lz4".to_owned()));
    }
}
