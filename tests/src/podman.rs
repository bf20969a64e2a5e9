//! A private Podman (Debian's 4.3) for tests: its own storage root, run
//! root, temp dir and config files under a test directory, runc as the
//! runtime, no network. Dropping it removes its containers and unmounts
//! whatever it mounted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// One private Podman.
#[derive(Debug)]
pub struct TestPodman {
    /// Its directory.
    pub dir: PathBuf,
    /// Its containers/storage config (`CONTAINERS_STORAGE_CONF`).
    pub storage_conf: PathBuf,
    containers_conf: PathBuf,
}

impl TestPodman {
    /// Sets up Podman under `dir`: storage.conf names the storage and run
    /// roots only (tests add the rest, e.g. with `lazyctl podman-setup`).
    pub fn new(dir: &Path) -> Result<Self> {
        crate::require_program("podman", "podman")?;
        crate::require_program("runc", "runc")?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        let storage_conf = dir.join("storage.conf");
        std::fs::write(
            &storage_conf,
            format!(
                "[storage]\ngraphroot = {:?}\nrunroot = {:?}\n",
                dir.join("root"),
                dir.join("run")
            ),
        )?;
        // Containers get limits this process may set without
        // CAP_SYS_RESOURCE (Podman's defaults are above many hard limits),
        // runc (crun refuses hybrid cgroups) and no network.
        let nofile = hard_limit("Max open files").min(1024);
        let nproc = hard_limit("Max processes").min(1024);
        let containers_conf = dir.join("containers.conf");
        std::fs::write(
            &containers_conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
                 netns = \"none\"\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n"
            ),
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            storage_conf,
            containers_conf,
        })
    }

    /// `podman ARGS` with this Podman's config.
    pub fn command(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf)
            .env("CONTAINERS_CONF", &self.containers_conf)
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"));
        command
    }

    /// Runs `podman ARGS`.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.command()
            .args(args)
            .output()
            .with_context(|| format!("running podman {args:?}"))
    }

    /// Runs `podman ARGS`, which must succeed; its stdout.
    pub fn run_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "podman {args:?} failed ({:?}): {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// This process's hard limit `name` (as /proc/self/limits calls it).
fn hard_limit(name: &str) -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|hard| hard.parse().ok())
        .unwrap_or(1024)
}

impl Drop for TestPodman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["image", "unmount", "--all"]);
        // Whatever is still mounted below the directory (storage's own
        // bind mount of its overlay dir, a container's root), deepest first.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            let _ = Command::new("umount").args(["--lazy", mount]).status();
        }
    }
}
