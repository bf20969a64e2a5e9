//! cgroup v1: one hierarchy per controller (or per group of controllers).

use std::path::{Path, PathBuf};

use super::{CFS_PERIOD_US, Controller, PARENT, cfs_quota_us, make_dir, write_file};
use crate::error::RuntimeError;
use crate::spec::Resources;

/// Creates `<root>/lazyrun/<id>`.
pub fn create(root: &Path, id: &str) -> Result<PathBuf, RuntimeError> {
    let dir = root.join(PARENT).join(id);
    make_dir(&dir)?;
    Ok(dir)
}

/// Writes the limits of `controller` into `dir`.
pub fn apply(
    dir: &Path,
    controller: Controller,
    resources: &Resources,
) -> Result<(), RuntimeError> {
    match controller {
        Controller::Memory => {
            if let Some(bytes) = resources.memory_bytes {
                let value = bytes.to_string();
                write_file(
                    &dir.join("memory.limit_in_bytes"),
                    &value,
                    "set memory limit",
                )?;
                // No swap on top of the limit (memsw = memory + swap).
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_file(&memsw, &value, "set memory+swap limit")?;
                }
            }
        }
        Controller::Pids => {
            if let Some(max) = resources.pids_limit {
                write_file(&dir.join("pids.max"), &max.to_string(), "set pids limit")?;
            }
        }
        Controller::Cpu => {
            if let Some(cpus) = resources.cpus {
                let period = CFS_PERIOD_US.to_string();
                let quota = cfs_quota_us(cpus).to_string();
                write_file(&dir.join("cpu.cfs_period_us"), &period, "set cpu period")?;
                write_file(&dir.join("cpu.cfs_quota_us"), &quota, "set cpu quota")?;
            }
        }
    }
    Ok(())
}
