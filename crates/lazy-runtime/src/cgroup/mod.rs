//! Per-container cgroups for `--memory`, `--cpus` and `--pids-limit`.
//!
//! Each controller is taken from cgroup v2 when the v2 hierarchy offers it
//! (`cgroup.controllers` of its root), otherwise from the v1 hierarchy it is
//! mounted on — hosts in "hybrid" mode have v2 mounted with few or no
//! controllers and the rest on v1. A container gets `<mount>/lazyrun/<id>` in
//! each hierarchy it needs (like docker's cgroupfs driver `/docker/<id>`).
//! Only hierarchies of requested limits are used: a container without limits
//! gets no cgroup.

mod mountinfo;
mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::RuntimeError;
use crate::spec::Resources;

pub use mountinfo::{CgroupMounts, Controller};

/// Name of the parent cgroup of all containers in each hierarchy.
pub const PARENT: &str = "lazyrun";

/// The cgroup directories of one container; removed by [`ContainerCgroup::remove`]
/// or, best effort, on drop.
#[derive(Debug)]
pub struct ContainerCgroup {
    dirs: Vec<PathBuf>,
}

impl ContainerCgroup {
    /// Creates the container's cgroups for the limits in `resources` and
    /// writes the limits. `None` when no limit is set.
    pub fn create(id: &str, resources: &Resources) -> Result<Option<Self>, RuntimeError> {
        if !resources.any() {
            return Ok(None);
        }
        let mounts = CgroupMounts::from_host().map_err(|source| RuntimeError::Cgroup {
            path: PathBuf::from("/proc/self/mountinfo"),
            op: "read cgroup mounts",
            source,
        })?;
        let mut cgroup = ContainerCgroup { dirs: Vec::new() };
        let wanted = [
            (
                Controller::Memory,
                resources.memory_bytes.is_some(),
                "--memory",
            ),
            (Controller::Cpu, resources.cpus.is_some(), "--cpus"),
            (
                Controller::Pids,
                resources.pids_limit.is_some(),
                "--pids-limit",
            ),
        ];
        for (controller, requested, limit) in wanted {
            if !requested {
                continue;
            }
            let unavailable = RuntimeError::CgroupControllerUnavailable {
                controller: controller.name(),
                limit,
            };
            if let Some(root) = mounts.v2_root_with(controller) {
                let dir = v2::create(root, id, controller)?;
                cgroup.add_dir(dir.clone());
                v2::apply(&dir, controller, resources)?;
            } else if let Some(root) = mounts.v1_root_of(controller) {
                let dir = v1::create(root, id)?;
                cgroup.add_dir(dir.clone());
                v1::apply(&dir, controller, resources)?;
            } else {
                return Err(unavailable);
            }
        }
        tracing::debug!(dirs = ?cgroup.dirs, "container cgroups created");
        Ok(Some(cgroup))
    }

    /// The container's cgroup directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Moves process `pid` (with its future children) into every cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), RuntimeError> {
        for dir in &self.dirs {
            write_file(&dir.join("cgroup.procs"), &pid.to_string(), "join cgroup")?;
        }
        Ok(())
    }

    /// Removes the directories. Call after the container's processes are
    /// gone; a directory still busy is retried for a short while.
    pub fn remove(mut self) -> Result<(), RuntimeError> {
        let dirs = std::mem::take(&mut self.dirs);
        for dir in dirs {
            remove_dir(&dir).map_err(|source| RuntimeError::Cgroup {
                path: dir.clone(),
                op: "remove cgroup",
                source,
            })?;
        }
        Ok(())
    }

    fn add_dir(&mut self, dir: PathBuf) {
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Err(e) = remove_dir(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "leaving cgroup behind");
            }
        }
    }
}

/// `rmdir` that waits (up to 2 s) for the kernel to let go of exited tasks.
fn remove_dir(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes a cgroup control file.
fn write_file(path: &Path, value: &str, op: &'static str) -> Result<(), RuntimeError> {
    std::fs::write(path, value).map_err(|source| RuntimeError::Cgroup {
        path: path.to_path_buf(),
        op,
        source,
    })
}

/// Creates `dir` and its parents.
fn make_dir(dir: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Cgroup {
        path: dir.to_path_buf(),
        op: "create cgroup",
        source,
    })
}

/// CFS period used for `--cpus`, as docker: 100 ms.
pub(crate) const CFS_PERIOD_US: u64 = 100_000;

/// The CFS quota for `cpus` CPUs per [`CFS_PERIOD_US`] (at least 1 ms).
pub(crate) fn cfs_quota_us(cpus: f64) -> u64 {
    let quota = (cpus * 100_000.0).round();
    // cpus is validated positive and finite; the clamp keeps the conversion exact.
    let quota = quota.clamp(1_000.0, 1e15);
    format!("{quota:.0}").parse().unwrap_or(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_is_cpus_times_period() {
        assert_eq!(cfs_quota_us(1.5), 150_000);
        assert_eq!(cfs_quota_us(0.5), 50_000);
        assert_eq!(cfs_quota_us(0.001), 1_000);
    }
}
