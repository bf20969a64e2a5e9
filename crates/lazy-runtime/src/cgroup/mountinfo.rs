//! Where the cgroup hierarchies are mounted, from `/proc/self/mountinfo`.

use std::io;
use std::path::{Path, PathBuf};

/// A controller the runtime can limit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// `memory`.
    Memory,
    /// `cpu` (CFS quota).
    Cpu,
    /// `pids`.
    Pids,
}

impl Controller {
    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// The cgroup mounts of the host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The cgroup2 mount point and the controllers its root offers.
    pub v2: Option<(PathBuf, Vec<String>)>,
    /// v1 mount points with the controllers mounted there.
    pub v1: Vec<(PathBuf, Vec<String>)>,
}

impl CgroupMounts {
    /// Reads this process's mount table and the v2 root's controller list.
    pub fn from_host() -> io::Result<Self> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        let mut mounts = Self::parse(&text);
        if let Some((root, controllers)) = &mut mounts.v2 {
            let list = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            *controllers = list.split_whitespace().map(str::to_string).collect();
        }
        Ok(mounts)
    }

    /// Parses mountinfo text. The v2 controller list is left empty.
    pub fn parse(mountinfo: &str) -> Self {
        let mut mounts = CgroupMounts::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let (Some(fstype), Some(_source), Some(options)) =
                (right.next(), right.next(), right.next())
            else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mount_point));
            match fstype {
                "cgroup2" if mounts.v2.is_none() => mounts.v2 = Some((mount_point, Vec::new())),
                "cgroup" => {
                    let controllers = options.split(',').map(str::to_string).collect();
                    mounts.v1.push((mount_point, controllers));
                }
                _ => {}
            }
        }
        mounts
    }

    /// The v2 mount point, if v2 offers `controller`.
    pub fn v2_root_with(&self, controller: Controller) -> Option<&Path> {
        self.v2
            .as_ref()
            .filter(|(_, list)| list.iter().any(|c| c == controller.name()))
            .map(|(root, _)| root.as_path())
    }

    /// The v1 mount point of `controller`.
    pub fn v1_root_of(&self, controller: Controller) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(_, list)| list.iter().any(|c| c == controller.name()))
            .map(|(root, _)| root.as_path())
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
36 30 0:32 / /mnt/with\\040space rw - ext4 /dev/sda1 rw
";

    #[test]
    fn hybrid_host_uses_v1_for_missing_v2_controllers() {
        let mut mounts = CgroupMounts::parse(HYBRID);
        assert_eq!(
            mounts.v2.as_ref().unwrap().0,
            Path::new("/sys/fs/cgroup/unified")
        );
        mounts.v2.as_mut().unwrap().1 = vec!["hugetlb".into(), "pids".into()];
        assert_eq!(
            mounts.v1_root_of(Controller::Cpu),
            Some(Path::new("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(
            mounts.v1_root_of(Controller::Memory),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(mounts.v2_root_with(Controller::Memory), None);
        assert_eq!(
            mounts.v2_root_with(Controller::Pids),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn escapes_are_decoded() {
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
