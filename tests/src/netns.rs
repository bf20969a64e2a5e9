//! Network namespaces for tests: made with `ip netns add` under names no
//! other test uses, linked by veth pairs, deleted on drop. Programs run in
//! one through `nsenter --net`, which keeps the mount namespace: FUSE
//! mounts made there stay visible to the test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with its loopback up.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A name no other test process or namespace of this one uses.
fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

impl Netns {
    /// Creates a namespace; `role` goes into its name, for `ip netns list`.
    pub fn create(role: &str) -> anyhow::Result<Self> {
        crate::require_program("nsenter", "util-linux")?;
        let name = unique(&format!("lzt-{role}-"));
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command running `program` in this namespace (`nsenter` execs it:
    /// the child's PID is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg(program);
        command
    }

    /// Links this namespace to `other` with a veth pair: `addr` here,
    /// `other_addr` there (CIDR, e.g. `10.79.1.1/24`).
    pub fn link(&self, addr: &str, other: &Netns, other_addr: &str) -> anyhow::Result<()> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Interface names have 15 bytes at most.
        let here = format!("lz{}v{n}a", std::process::id() % 100_000);
        let there = format!("lz{}v{n}b", std::process::id() % 100_000);
        ip(&[
            "link",
            "add",
            &here,
            "netns",
            &self.name,
            "type",
            "veth",
            "peer",
            "name",
            &there,
            "netns",
            &other.name,
        ])?;
        ip(&["-n", &self.name, "addr", "add", addr, "dev", &here])?;
        ip(&["-n", &other.name, "addr", "add", other_addr, "dev", &there])?;
        ip(&["-n", &self.name, "link", "set", &here, "up"])?;
        ip(&["-n", &other.name, "link", "set", &there, "up"])?;
        Ok(())
    }

    /// Whether a TCP connection from this namespace to `addr:port` opens.
    pub fn can_connect(&self, addr: &str, port: u16) -> bool {
        self.command("timeout")
            .args([
                "3",
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{addr}/{port}"),
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
