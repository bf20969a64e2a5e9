//! cgroup v2: one unified hierarchy; controllers are enabled top-down.

use std::path::{Path, PathBuf};

use super::{CFS_PERIOD_US, Controller, PARENT, cfs_quota_us, make_dir, write_file};
use crate::error::RuntimeError;
use crate::spec::Resources;

/// Creates `<root>/lazyrun/<id>` with `controller` enabled for it.
pub fn create(root: &Path, id: &str, controller: Controller) -> Result<PathBuf, RuntimeError> {
    let parent = root.join(PARENT);
    make_dir(&parent)?;
    let enable = format!("+{}", controller.name());
    write_file(
        &root.join("cgroup.subtree_control"),
        &enable,
        "enable controller",
    )?;
    write_file(
        &parent.join("cgroup.subtree_control"),
        &enable,
        "enable controller",
    )?;
    let dir = parent.join(id);
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
                write_file(
                    &dir.join("memory.max"),
                    &bytes.to_string(),
                    "set memory limit",
                )?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0", "set swap limit")?;
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
                let value = format!("{} {CFS_PERIOD_US}", cfs_quota_us(cpus));
                write_file(&dir.join("cpu.max"), &value, "set cpu limit")?;
            }
        }
    }
    Ok(())
}
