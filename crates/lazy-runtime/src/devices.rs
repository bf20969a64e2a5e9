//! A minimal /dev: tmpfs with the usual character devices, a private devpts
//! instance, /dev/shm, /dev/mqueue and the /proc/self/fd links.

use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::init::{SetupError, Step};
use crate::mounts::dir_in_rootfs;

/// Name, major, minor of the device nodes every container gets.
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Builds `/dev` under `root`.
pub fn setup(root: &Path) -> Result<(), SetupError> {
    let none: Option<&str> = None;
    let dev = dir_in_rootfs(root, "/dev")?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .step_path("mount tmpfs", &dev)?;

    let rw_all = Mode::from_bits_truncate(0o666);
    for (name, major, minor) in DEVICES {
        let node = dev.join(name);
        mknod(&node, SFlag::S_IFCHR, rw_all, makedev(major, minor)).step_path("mknod", &node)?;
        // mknod honours the umask; the nodes must be 0666.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &node,
            rw_all,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .step_path("chmod", &node)?;
    }

    let pts = dev.join("pts");
    std::fs::create_dir(&pts).step_path("mkdir", &pts)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .step_path("mount devpts", &pts)?;

    let shm = dev.join("shm");
    std::fs::create_dir(&shm).step_path("mkdir", &shm)?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .step_path("mount shm", &shm)?;

    let mqueue = dev.join("mqueue");
    std::fs::create_dir(&mqueue).step_path("mkdir", &mqueue)?;
    mount(
        Some("mqueue"),
        &mqueue,
        Some("mqueue"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        none,
    )
    .step_path("mount mqueue", &mqueue)?;

    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ];
    for (name, target) in links {
        let link = dev.join(name);
        symlink(target, &link).step_path("symlink", &link)?;
    }
    Ok(())
}
