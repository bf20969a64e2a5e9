//! The container's mount table: rootfs, /proc, /sys, binds, pivot_root, and
//! docker's masked and read-only paths. Runs in the init, in its own mount
//! namespace, before the workload exists.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::statvfs::{FsFlags, statvfs};

use crate::init::{SetupError, Step};
use crate::securejoin::secure_join;
use crate::spec::{BindMount, ContainerSpec};

/// Hidden from the container, as docker does (bind of /dev/null on files,
/// read-only tmpfs on directories).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Read-only in the container, as docker does.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Mounts everything under the rootfs, then pivots into it. Afterwards `/`
/// is the container's root and the host's mounts are gone from view.
pub fn setup_before_pivot(spec: &ContainerSpec) -> Result<(), SetupError> {
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).step("make / private")?;
    let root = &spec.rootfs;
    mount(
        Some(root),
        root,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .step_path("bind rootfs onto itself", root)?;

    let proc_dir = dir_in_rootfs(root, "/proc")?;
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        nosuid_nodev_noexec,
        none,
    )
    .step_path("mount proc", &proc_dir)?;

    crate::devices::setup(root)?;

    let sys_dir = dir_in_rootfs(root, "/sys")?;
    let sysfs = mount(
        Some("sysfs"),
        &sys_dir,
        Some("sysfs"),
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        none,
    );
    if sysfs.is_err() {
        // No sysfs of our own (e.g. the network namespace is not ours to
        // show): the host's, recursively, read-only.
        mount(
            Some("/sys"),
            &sys_dir,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .step_path("bind /sys", &sys_dir)?;
        remount_read_only(&sys_dir)?;
    }

    for bind in &spec.binds {
        mount_bind(root, bind)?;
    }
    pivot(root)
}

/// After the pivot: masked and read-only paths, the working directory, and
/// the read-only rootfs if asked.
pub fn setup_after_pivot(spec: &ContainerSpec) -> Result<(), SetupError> {
    let none: Option<&str> = None;
    for path in MASKED_PATHS {
        let path = Path::new(path);
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0,mode=0555"),
            )
            .step_path("mask directory", path)?;
        } else {
            mount(Some("/dev/null"), path, none, MsFlags::MS_BIND, none)
                .step_path("mask file", path)?;
        }
    }
    for path in READONLY_PATHS {
        let path = Path::new(path);
        if !path.exists() {
            continue;
        }
        mount(
            Some(path),
            path,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .step_path("bind read-only path", path)?;
        remount_read_only(path)?;
    }
    std::fs::create_dir_all(&spec.cwd).step_path("create working directory", &spec.cwd)?;
    if spec.read_only_rootfs {
        remount_read_only(Path::new("/"))?;
    }
    Ok(())
}

/// Bind-mounts a host path to its destination under the rootfs.
fn mount_bind(root: &Path, bind: &BindMount) -> Result<(), SetupError> {
    let none: Option<&str> = None;
    let target =
        secure_join(root, &bind.destination).step_path("resolve bind", &bind.destination)?;
    if bind.source.is_dir() {
        std::fs::create_dir_all(&target).step_path("create bind target", &target)?;
    } else if !target.exists() {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).step_path("create bind target", parent)?;
        }
        std::fs::File::create(&target).step_path("create bind target", &target)?;
    }
    mount(
        Some(&bind.source),
        &target,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .step_path("bind mount", &bind.source)?;
    if bind.read_only {
        remount_read_only(&target)?;
    }
    Ok(())
}

/// Remounts the bind mount at `path` read-only, keeping its nosuid, nodev,
/// noexec and atime flags.
pub fn remount_read_only(path: &Path) -> Result<(), SetupError> {
    let none: Option<&str> = None;
    let current = statvfs(path).step_path("statvfs", path)?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    let keep = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    for (st, ms) in keep {
        if current.contains(st) {
            flags |= ms;
        }
    }
    mount(none, path, none, flags, none).step_path("remount read-only", path)
}

/// A directory under the rootfs, created if missing, resolved safely.
pub fn dir_in_rootfs(root: &Path, path: &str) -> Result<PathBuf, SetupError> {
    let dir = secure_join(root, Path::new(path)).step_path("resolve", Path::new(path))?;
    std::fs::create_dir_all(&dir).step_path("create directory", &dir)?;
    Ok(dir)
}

/// `pivot_root(".", ".")` then a lazy unmount of the old root stacked on top
/// (runc's trick: no directory for the old root is needed).
fn pivot(root: &Path) -> Result<(), SetupError> {
    nix::unistd::chdir(root).step_path("chdir to rootfs", root)?;
    nix::unistd::pivot_root(".", ".").step("pivot_root")?;
    umount2(".", MntFlags::MNT_DETACH).step("unmount old root")?;
    nix::unistd::chdir("/").step("chdir to new root")?;
    Ok(())
}
