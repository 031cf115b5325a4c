//! Reading an image's package database at the end of its build, through the
//! communicator the provisioners used (a chroot reads the tree, SSH reads the
//! running machine before it is shut down): dpkg's `status`, apk's
//! `installed`, or rpm's answer to a query. Not finding one is not an error
//! (a busybox tree has none); the build then records no SBOM.

use std::path::Path;

use super::Communicator;
use crate::build::events::EventSink;
use crate::sbom::{self, Inventory};

const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const APK_INSTALLED: &str = "/lib/apk/db/installed";
const OS_RELEASE: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];
/// Where the rpm query's answer is written on the machine, then read and
/// removed.
const RPM_LIST: &str = "/tmp/.imgform-rpm-packages";

/// The packages of the machine behind `comm`, or `None` when it has no
/// package database imgform reads.
pub async fn collect(comm: &dyn Communicator, events: &EventSink) -> Option<Inventory> {
    // Private and named with this run's pid: a killed run's is swept.
    let tmp = crate::paths::PrivateTempDir::new("imgform-inventory").ok()?;
    let local = tmp.path().join("db");
    let mut os = sbom::OsRelease::default();
    for path in OS_RELEASE {
        if let Some(text) = read(comm, path, &local).await {
            os = sbom::parse_os_release(&text);
            break;
        }
    }
    let packages = if let Some(text) = read(comm, DPKG_STATUS, &local).await {
        sbom::parse_dpkg_status(&text)
    } else if let Some(text) = read(comm, APK_INSTALLED, &local).await {
        sbom::parse_apk_installed(&text)
    } else {
        rpm_packages(comm, events, &local).await?
    };
    if packages.is_empty() {
        return None;
    }
    Some(Inventory::new(os, packages))
}

/// Asks rpm (when the machine has it) for its packages.
async fn rpm_packages(
    comm: &dyn Communicator,
    events: &EventSink,
    local: &Path,
) -> Option<Vec<sbom::Package>> {
    let command = format!(
        "if command -v rpm >/dev/null 2>&1; then rpm -qa --qf '{}' > {RPM_LIST}; fi",
        sbom::RPM_QUERY
    );
    // The query prints nothing; its answer is in the file.
    let status = comm.exec(&command, &[], events).await.ok()?;
    if status != 0 {
        return None;
    }
    let text = read(comm, RPM_LIST, local).await;
    let _ = comm.exec(&format!("rm -f {RPM_LIST}"), &[], events).await;
    Some(sbom::parse_rpm_lines(&text?))
}

/// The text of `remote`, or `None` when it cannot be read.
async fn read(comm: &dyn Communicator, remote: &str, local: &Path) -> Option<String> {
    let _ = std::fs::remove_file(local);
    comm.download(remote, local).await.ok()?;
    let bytes = std::fs::read(local).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}
