//! What a disk image file is, read from its first bytes: qcow2 or raw, and
//! the backing file a qcow2 overlay names. No `qemu-img` needed.

use std::io::Read;
use std::path::Path;

/// `qcow2` when the file starts with qcow2's magic, else `raw` (ISOs and
/// raw disks alike).
pub fn disk_format(path: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let is_qcow2 = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"QFI\xfb";
    if is_qcow2 {
        "qcow2"
    } else {
        "raw"
    }
}

/// The backing file a qcow2 names, as written in its header.
pub fn backing_file(path: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 20];
    f.read_exact(&mut header).ok()?;
    if header[..4] != *b"QFI\xfb" {
        return None;
    }
    let offset = u64::from_be_bytes(header[8..16].try_into().ok()?);
    let size = u32::from_be_bytes(header[16..20].try_into().ok()?);
    if offset == 0 || size == 0 || size > 4096 {
        return None;
    }
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut name = vec![0u8; size as usize];
    f.read_exact(&mut name).ok()?;
    String::from_utf8(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_qcow2_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("a.img");
        std::fs::write(&raw, [0u8; 512]).unwrap();
        assert_eq!(disk_format(&raw), "raw");
        let mut q = b"QFI\xfb".to_vec();
        q.resize(512, 0);
        let qcow = dir.path().join("b");
        std::fs::write(&qcow, q).unwrap();
        assert_eq!(disk_format(&qcow), "qcow2");
        assert_eq!(backing_file(&qcow), None);
    }
}
