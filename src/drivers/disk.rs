//! Bootable disk images without loop devices or mounts: the partition
//! layout (GPT with a BIOS boot partition and optionally an EFI system
//! partition, as diskimage-builder's `block-device-gpt` / `block-device-efi`
//! elements; or MBR, as its `vm` default), the partition table (written by
//! `sfdisk` into the image file), filesystems written in place (`mke2fs
//! -E offset=`, `mkfs.vfat --offset`, mtools' `image@@offset`), and GRUB's
//! BIOS boot code installed the way `grub-bios-setup` does it — boot.img in
//! the MBR with the partition table kept, core.img in its embedding area,
//! the two sector pointers patched.
//!
//! Everything here is a function of its inputs: identifiers (disk GUID,
//! partition UUIDs, filesystem UUIDs) are passed in, derived by the caller
//! from the content address, so the same inputs give the same bytes.

use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

/// Bytes per sector (what the images use and every hypervisor expects).
pub const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries.
const ALIGN: u64 = 2048;
/// The EFI system partition: room for GRUB's EFI image and more.
const ESP_SECTORS: u64 = 32 * 2048;
/// The BIOS boot partition GRUB embeds its core image in.
const BIOS_BOOT_SECTORS: u64 = 2048;
/// What GPT needs at the end of the disk (backup table and header).
const GPT_TAIL: u64 = 34;

/// GPT partition types.
const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const TYPE_BIOS_BOOT: &str = "21686148-6E6F-744E-6565-644546494249";
const TYPE_LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// How the disk is partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionTable {
    /// GPT: a BIOS boot partition (GRUB's core image), the EFI system
    /// partition when asked, the root filesystem.
    Gpt,
    /// MBR: one bootable root partition; GRUB's core image sits in the gap
    /// before it. No UEFI.
    Mbr,
}

impl PartitionTable {
    pub fn parse(text: &str) -> Option<PartitionTable> {
        match text {
            "gpt" => Some(PartitionTable::Gpt),
            "mbr" | "msdos" | "dos" => Some(PartitionTable::Mbr),
            _ => None,
        }
    }
}

/// What a partition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    Esp,
    BiosBoot,
    Root,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as the kernel names it (`vda1`).
    pub number: u32,
    pub holds: Holds,
    /// First sector.
    pub start: u64,
    pub sectors: u64,
    /// Its GPT partition UUID (unused on MBR).
    pub uuid: String,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.start * SECTOR
    }

    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR
    }
}

/// Identifiers of the disk and its partitions, derived by the caller.
#[derive(Debug, Clone)]
pub struct DiskIds {
    /// GPT disk GUID.
    pub disk_guid: String,
    /// MBR disk signature (8 hex digits).
    pub mbr_signature: String,
    pub esp: String,
    pub bios_boot: String,
    pub root: String,
}

/// The disk: its size and partitions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub table: PartitionTable,
    pub total_sectors: u64,
    pub partitions: Vec<Partition>,
    pub disk_guid: String,
    pub mbr_signature: String,
}

impl DiskPlan {
    /// Lays out a disk with a root filesystem of at least `root_bytes`
    /// (and an ESP with `efi`). With `disk_bytes`, the disk has that size and
    /// the root partition takes what is left; it is an error when that is
    /// less than `root_bytes`.
    pub fn new(
        table: PartitionTable,
        efi: bool,
        root_bytes: u64,
        disk_bytes: Option<u64>,
        ids: DiskIds,
    ) -> Result<DiskPlan, String> {
        if efi && table == PartitionTable::Mbr {
            return Err("UEFI boot needs a GPT partition table".to_owned());
        }
        let mut parts: Vec<(Holds, u64, String)> = Vec::new();
        if table == PartitionTable::Gpt {
            if efi {
                parts.push((Holds::Esp, ESP_SECTORS, ids.esp.clone()));
            }
            parts.push((Holds::BiosBoot, BIOS_BOOT_SECTORS, ids.bios_boot.clone()));
        }
        let fixed: u64 = parts.iter().map(|p| p.1).sum();
        let tail = match table {
            PartitionTable::Gpt => GPT_TAIL,
            PartitionTable::Mbr => 0,
        };
        let root_min = root_bytes.div_ceil(SECTOR).div_ceil(ALIGN) * ALIGN;
        // Leading MiB, fixed partitions, root, and the tail rounded up to a MiB.
        let needed = ALIGN + fixed + root_min + tail.div_ceil(ALIGN) * ALIGN;
        let total = match disk_bytes {
            None => needed,
            Some(bytes) => {
                let total = bytes.div_ceil(SECTOR).div_ceil(ALIGN) * ALIGN;
                if total < needed {
                    return Err(format!(
                        "disk_size {} MiB is too small: the root filesystem needs {} MiB, the disk at least {} MiB",
                        total / ALIGN,
                        root_min / ALIGN,
                        needed / ALIGN
                    ));
                }
                total
            }
        };
        let mut partitions = Vec::new();
        let mut next = ALIGN;
        for (holds, sectors, uuid) in parts {
            partitions.push(Partition {
                number: partitions.len() as u32 + 1,
                holds,
                start: next,
                sectors,
                uuid,
            });
            next += sectors;
        }
        let last_usable = total - tail;
        let root_sectors = (last_usable - next) / ALIGN * ALIGN;
        partitions.push(Partition {
            number: partitions.len() as u32 + 1,
            holds: Holds::Root,
            start: next,
            sectors: root_sectors,
            uuid: ids.root,
        });
        Ok(DiskPlan {
            table,
            total_sectors: total,
            partitions,
            disk_guid: ids.disk_guid,
            mbr_signature: ids.mbr_signature,
        })
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_sectors * SECTOR
    }

    pub fn partition(&self, holds: Holds) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.holds == holds)
    }

    pub fn root(&self) -> &Partition {
        self.partition(Holds::Root).expect("every plan has a root")
    }

    /// Where GRUB's BIOS core image goes, in sectors: the BIOS boot
    /// partition on GPT, the gap between the MBR and the first partition
    /// on MBR.
    pub fn embed_region(&self) -> Range<u64> {
        match self.partition(Holds::BiosBoot) {
            Some(p) => p.start..p.start + p.sectors,
            None => 1..self.partitions[0].start,
        }
    }

    /// The partition table as an `sfdisk` script.
    pub fn sfdisk_script(&self) -> String {
        let mut out = String::new();
        match self.table {
            PartitionTable::Gpt => {
                out.push_str(&format!(
                    "label: gpt\nlabel-id: {}\nunit: sectors\nsector-size: 512\nfirst-lba: {ALIGN}\nlast-lba: {}\n\n",
                    self.disk_guid,
                    self.total_sectors - GPT_TAIL
                ));
                for p in &self.partitions {
                    let (kind, name) = match p.holds {
                        Holds::Esp => (TYPE_ESP, "ESP"),
                        Holds::BiosBoot => (TYPE_BIOS_BOOT, "BSP"),
                        Holds::Root => (TYPE_LINUX, "root"),
                    };
                    out.push_str(&format!(
                        "start={}, size={}, type={kind}, uuid={}, name=\"{name}\"\n",
                        p.start, p.sectors, p.uuid
                    ));
                }
            }
            PartitionTable::Mbr => {
                out.push_str(&format!(
                    "label: dos\nlabel-id: 0x{}\nunit: sectors\nsector-size: 512\n\n",
                    self.mbr_signature
                ));
                for p in &self.partitions {
                    out.push_str(&format!(
                        "start={}, size={}, type=83, bootable\n",
                        p.start, p.sectors
                    ));
                }
            }
        }
        out
    }
}

/// GRUB's i386-pc boot sector layout (`include/grub/i386/pc/boot.h`).
mod boot_sector {
    /// The BIOS parameter block: kept from the disk.
    pub const BPB: std::ops::Range<usize> = 0x03..0x5a;
    /// LBA of core.img's first sector (8 bytes, little endian).
    pub const KERNEL_SECTOR: usize = 0x5c;
    /// Drive to boot from; 0xff: the one the BIOS passed.
    pub const BOOT_DRIVE: usize = 0x64;
    /// A jump over the floppy probe; two NOPs on a hard disk.
    pub const DRIVE_CHECK: usize = 0x66;
    /// From the disk signature to the end: kept from the disk (partition
    /// table, 0x55aa).
    pub const DISK_TAIL: std::ops::Range<usize> = 0x1b8..0x200;
    /// The blocklist at the end of core.img's first sector (diskboot.img):
    /// start LBA (8), sector count (2), load segment (2).
    pub const BLOCKLIST: usize = 0x200 - 12;
}

/// Installs GRUB's BIOS boot code into the disk image at `disk`: `boot_img`
/// (GRUB's `boot.img`) into the MBR, keeping the disk's BPB, signature and
/// partition table; `core_img` (from `grub-mkimage -O i386-pc`) into the
/// sectors of `embed`, with boot.img pointing at it and its first sector's
/// blocklist pointing at the rest — what `grub-bios-setup` writes.
pub fn install_grub_bios(
    disk: &Path,
    boot_img: &[u8],
    core_img: &[u8],
    embed: Range<u64>,
) -> std::io::Result<()> {
    use boot_sector::*;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if boot_img.len() != SECTOR as usize {
        return Err(invalid(format!(
            "boot.img is {} bytes, not 512",
            boot_img.len()
        )));
    }
    let core_sectors = (core_img.len() as u64).div_ceil(SECTOR);
    if core_sectors < 2 || core_sectors > embed.end - embed.start {
        return Err(invalid(format!(
            "core.img needs {core_sectors} sectors; the embedding area has {}",
            embed.end - embed.start
        )));
    }
    let mut core = core_img.to_vec();
    core.resize((core_sectors * SECTOR) as usize, 0);
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(embed.start + 1).to_le_bytes());
    let rest = u16::try_from(core_sectors - 1).map_err(|_| invalid("core.img too large".into()))?;
    core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&rest.to_le_bytes());

    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)?;
    let mut mbr = [0u8; SECTOR as usize];
    file.read_exact(&mut mbr)?;
    let mut boot = boot_img.to_vec();
    boot[BPB].copy_from_slice(&mbr[BPB]);
    boot[DISK_TAIL].copy_from_slice(&mbr[DISK_TAIL]);
    boot[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&embed.start.to_le_bytes());
    boot[BOOT_DRIVE] = 0xff;
    boot[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);

    file.seek(SeekFrom::Start(0))?;
    file.write_all(&boot)?;
    file.seek(SeekFrom::Start(embed.start * SECTOR))?;
    file.write_all(&core)?;
    file.sync_all()
}

/// What the bootloader starts.
#[derive(Debug, Clone)]
pub struct BootEntry {
    /// Paths in the root filesystem, e.g. `/boot/vmlinuz-6.1.0-28-amd64`.
    pub kernel: String,
    pub initrd: Option<String>,
    pub root_uuid: String,
    /// Appended to `root=UUID=… ro console=tty0 console=ttyS0,115200`.
    pub kernel_args: Vec<String>,
    /// Seconds GRUB waits at its menu.
    pub timeout: u32,
    pub title: String,
}

/// The kernel command line: the root by UUID, read-only until fsck, the
/// console on the screen and the first serial port (as diskimage-builder's
/// bootloader element), then `kernel_args`.
pub fn kernel_cmdline(entry: &BootEntry) -> String {
    let mut args = vec![
        format!("root=UUID={}", entry.root_uuid),
        "ro".to_owned(),
        "console=tty0".to_owned(),
        "console=ttyS0,115200".to_owned(),
    ];
    args.extend(entry.kernel_args.iter().cloned());
    args.join(" ")
}

/// `/boot/grub/grub.cfg`: GRUB on the serial port and the screen, one
/// entry. Written by imgform (not `grub-mkconfig`, which needs the disk as
/// a device), the same for BIOS and UEFI.
pub fn grub_cfg(entry: &BootEntry) -> String {
    let mut out = format!(
        "# Written by imgform.\n\
         serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         set timeout={}\n\
         set default=0\n\n\
         menuentry '{}' {{\n\
         \x20   search --no-floppy --fs-uuid --set=root {}\n\
         \x20   linux {} {}\n",
        entry.timeout,
        entry.title.replace('\'', ""),
        entry.root_uuid,
        entry.kernel,
        kernel_cmdline(entry)
    );
    if let Some(initrd) = &entry.initrd {
        out.push_str(&format!("    initrd {initrd}\n"));
    }
    out.push_str("}\n");
    out
}

/// The early configuration embedded in GRUB's core image: find the root
/// filesystem by UUID and load `/boot/grub/grub.cfg` from it, whatever the
/// disk's order.
pub fn grub_early_cfg(root_uuid: &str) -> String {
    format!(
        "search --no-floppy --fs-uuid --set=root {root_uuid}\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n"
    )
}

/// `/etc/fstab`: the root (and the ESP at `/boot/efi`) by UUID.
pub fn fstab(root_uuid: &str, esp_volume_id: Option<&str>) -> String {
    let mut out = format!("# Written by imgform.\nUUID={root_uuid} / ext4 defaults 0 1\n");
    if let Some(id) = esp_volume_id {
        out.push_str(&format!("UUID={id} /boot/efi vfat umask=0077 0 1\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> DiskIds {
        DiskIds {
            disk_guid: "11111111-1111-4111-8111-111111111111".into(),
            mbr_signature: "1a2b3c4d".into(),
            esp: "22222222-2222-4222-8222-222222222222".into(),
            bios_boot: "33333333-3333-4333-8333-333333333333".into(),
            root: "44444444-4444-4444-8444-444444444444".into(),
        }
    }

    #[test]
    fn gpt_with_efi_is_esp_bios_boot_root_as_diskimage_builder() {
        let plan = DiskPlan::new(PartitionTable::Gpt, true, 100 << 20, None, ids()).unwrap();
        let holds: Vec<Holds> = plan.partitions.iter().map(|p| p.holds).collect();
        assert_eq!(holds, [Holds::Esp, Holds::BiosBoot, Holds::Root]);
        assert_eq!(plan.root().number, 3);
        assert!(plan.partitions.iter().all(|p| p.start % ALIGN == 0));
        assert!(plan.root().bytes() >= 100 << 20);
        let end = plan.root().start + plan.root().sectors;
        assert!(end <= plan.total_sectors - GPT_TAIL);
        assert_eq!(plan.embed_region(), 67584..69632);
        insta::assert_snapshot!(plan.sfdisk_script());
    }

    #[test]
    fn mbr_embeds_grub_before_its_only_partition() {
        let plan = DiskPlan::new(PartitionTable::Mbr, false, 10 << 20, None, ids()).unwrap();
        assert_eq!(plan.partitions.len(), 1);
        assert_eq!(plan.embed_region(), 1..2048);
        assert!(plan.sfdisk_script().contains("type=83, bootable"));
        assert!(DiskPlan::new(PartitionTable::Mbr, true, 1, None, ids()).is_err());
    }

    #[test]
    fn a_given_disk_size_is_filled_by_the_root_or_refused() {
        let plan =
            DiskPlan::new(PartitionTable::Gpt, false, 100 << 20, Some(1 << 30), ids()).unwrap();
        assert_eq!(plan.total_bytes(), 1 << 30);
        assert!(plan.root().bytes() > 1000 << 20);
        let err = DiskPlan::new(PartitionTable::Gpt, false, 100 << 20, Some(50 << 20), ids())
            .unwrap_err();
        assert!(err.contains("too small"), "{err}");
    }

    #[test]
    fn grub_bios_setup_keeps_the_table_and_points_at_core() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        let mut mbr = vec![0u8; 4096 * 512];
        mbr[0x1b8..0x1bc].copy_from_slice(&[1, 2, 3, 4]);
        mbr[0x1be] = 0x80; // a partition entry
        mbr[0x1fe] = 0x55;
        mbr[0x1ff] = 0xaa;
        std::fs::write(&disk, &mbr).unwrap();
        let mut boot = vec![0xccu8; 512];
        boot[0x5c] = 1;
        let core = vec![0xddu8; 3 * 512 + 10]; // four sectors once padded
        install_grub_bios(&disk, &boot, &core, 2048..4096).unwrap();
        let out = std::fs::read(&disk).unwrap();
        assert_eq!(&out[0x1b8..0x1bc], &[1, 2, 3, 4]);
        assert_eq!(out[0x1be], 0x80);
        assert_eq!(&out[0x1fe..0x200], &[0x55, 0xaa]);
        assert_eq!(&out[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(out[0x64], 0xff);
        assert_eq!(&out[0x66..0x68], &[0x90, 0x90]);
        let first = 2048 * 512;
        let blocklist = first + 0x200 - 12;
        assert_eq!(&out[blocklist..blocklist + 8], &2049u64.to_le_bytes());
        assert_eq!(&out[blocklist + 8..blocklist + 10], &3u16.to_le_bytes());
        assert_eq!(out[first], 0xdd);
    }

    #[test]
    fn grub_cfg_boots_the_kernel_on_the_serial_console() {
        let cfg = grub_cfg(&BootEntry {
            kernel: "/boot/vmlinuz-6.1.0-28-amd64".into(),
            initrd: Some("/boot/initrd.img-6.1.0-28-amd64".into()),
            root_uuid: "44444444-4444-4444-8444-444444444444".into(),
            kernel_args: vec!["net.ifnames=0".into()],
            timeout: 1,
            title: "golden.chroot.base".into(),
        });
        insta::assert_snapshot!(cfg);
    }
}
