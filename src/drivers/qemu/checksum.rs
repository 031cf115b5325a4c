//! Packer's `iso_checksum`: `sha256:<hex>` (or `sha512:`, or bare hex whose
//! length says which), `file:<location of a checksums file>` (a
//! `SHA256SUMS`-style or BSD-style list, searched for the ISO's file name),
//! or `none`. The base image's bytes are checked before anything boots.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256, Sha512};

/// A digest algorithm imgform can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Sha256,
    Sha512,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }

    fn by_len(len: usize) -> Option<Algo> {
        [Algo::Sha256, Algo::Sha512]
            .into_iter()
            .find(|a| a.hex_len() == len)
    }
}

/// What `iso_checksum` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `none`: nothing to check.
    None,
    Digest {
        algo: Algo,
        hex: String,
    },
    /// `file:<location>`: look the digest up in that checksums file.
    File(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("iso_checksum `{0}` is not a checksum imgform can check")]
    Unreadable(String),
    #[error("iso_checksum uses {0}, which imgform does not check")]
    Unsupported(String),
    #[error("the checksums file {file} has no line for {name}")]
    NotListed { file: String, name: String },
    #[error("cannot read the checksums file {file}: {message}")]
    NoFile { file: String, message: String },
    #[error("{what} has {algo}:{actual}, but iso_checksum says {algo}:{expected}")]
    Mismatch {
        what: String,
        algo: &'static str,
        expected: String,
        actual: String,
    },
}

impl ChecksumError {
    pub fn hint(&self) -> &'static str {
        match self {
            ChecksumError::Unreadable(_) | ChecksumError::Unsupported(_) => {
                "write iso_checksum = \"sha256:<64 hex>\", \"sha512:<128 hex>\", \"file:<url or path of a SHA256SUMS file>\" or \"none\""
            }
            ChecksumError::NotListed { .. } | ChecksumError::NoFile { .. } => {
                "check the checksums file's location and that it lists the image's file name"
            }
            ChecksumError::Mismatch { .. } => {
                "the image is not the one the checksum names: fix iso_checksum, or iso_url if it points at the wrong file"
            }
        }
    }
}

/// Reads an `iso_checksum` value.
pub fn parse(text: &str) -> Result<Expected, ChecksumError> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") || text.is_empty() {
        return Ok(Expected::None);
    }
    if let Some(location) = text.strip_prefix("file:") {
        return Ok(Expected::File(location.to_owned()));
    }
    let (algo, hex) = match text.split_once(':') {
        Some((name, hex)) => match name.to_ascii_lowercase().as_str() {
            "sha256" => (Some(Algo::Sha256), hex),
            "sha512" => (Some(Algo::Sha512), hex),
            "md5" | "sha1" | "sha384" => return Err(ChecksumError::Unsupported(name.to_owned())),
            _ => return Err(ChecksumError::Unreadable(text.to_owned())),
        },
        None => (None, text),
    };
    let hex = hex.trim().to_ascii_lowercase();
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ChecksumError::Unreadable(text.to_owned()));
    }
    let algo = match algo {
        Some(a) if a.hex_len() == hex.len() => a,
        Some(_) => return Err(ChecksumError::Unreadable(text.to_owned())),
        None => Algo::by_len(hex.len()).ok_or_else(|| match hex.len() {
            32 => ChecksumError::Unsupported("md5".to_owned()),
            40 => ChecksumError::Unsupported("sha1".to_owned()),
            _ => ChecksumError::Unreadable(text.to_owned()),
        })?,
    };
    Ok(Expected::Digest { algo, hex })
}

/// The digest for file `name` in a checksums file's text: GNU lines
/// (`<hex>  name`, `<hex> *name`) or BSD lines (`SHA256 (name) = <hex>`).
pub fn find_in_list(list: &str, name: &str) -> Option<(Algo, String)> {
    for line in list.lines().map(str::trim) {
        let (hex, file) = if let Some((head, hex)) = line.split_once(") = ") {
            let Some((_, file)) = head.split_once(" (") else {
                continue;
            };
            (hex.trim(), file)
        } else {
            let mut parts = line.splitn(2, char::is_whitespace);
            let hex = parts.next().unwrap_or("");
            let file = parts.next().unwrap_or("").trim().trim_start_matches('*');
            (hex, file)
        };
        let file = file.trim_start_matches("./");
        let base = file.rsplit('/').next().unwrap_or(file);
        if file == name || base == name {
            if let Some(algo) = Algo::by_len(hex.len()) {
                if hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Some((algo, hex.to_ascii_lowercase()));
                }
            }
        }
    }
    None
}

/// The hex digest of a file's bytes.
pub fn digest_file(path: &Path, algo: Algo) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    match algo {
        Algo::Sha256 => {
            let mut h = Sha256::new();
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(hex::encode(h.finalize()))
        }
        Algo::Sha512 => {
            let mut h = Sha512::new();
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(hex::encode(h.finalize()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packer_checksum_forms() {
        let sha = "a".repeat(64);
        assert_eq!(
            parse(&format!("sha256:{sha}")).unwrap(),
            Expected::Digest {
                algo: Algo::Sha256,
                hex: sha.clone()
            }
        );
        assert_eq!(
            parse(&sha.to_uppercase()).unwrap(),
            Expected::Digest {
                algo: Algo::Sha256,
                hex: sha.clone()
            }
        );
        assert_eq!(parse("none").unwrap(), Expected::None);
        assert_eq!(
            parse("file:https://x/SHA256SUMS").unwrap(),
            Expected::File("https://x/SHA256SUMS".into())
        );
        assert!(matches!(
            parse("md5:0123"),
            Err(ChecksumError::Unsupported(_))
        ));
        assert!(matches!(
            parse("sha256:xyz"),
            Err(ChecksumError::Unreadable(_))
        ));
        assert!(matches!(
            parse("sha256:abcd"),
            Err(ChecksumError::Unreadable(_))
        ));
    }

    #[test]
    fn checksums_files_gnu_and_bsd() {
        let a = "1".repeat(64);
        let b = "2".repeat(64);
        let list = format!("{a}  debian-12.iso\n{b} *other.qcow2\nSHA256 (third.img) = {a}\n");
        assert_eq!(
            find_in_list(&list, "debian-12.iso"),
            Some((Algo::Sha256, a.clone()))
        );
        assert_eq!(find_in_list(&list, "other.qcow2"), Some((Algo::Sha256, b)));
        assert_eq!(find_in_list(&list, "third.img"), Some((Algo::Sha256, a)));
        assert_eq!(find_in_list(&list, "missing.iso"), None);
    }
}
