//! A private containerd (Debian's 1.6) and the lazyfs snapshotter, for
//! tests: own config, root, state dir and socket under one directory, the
//! snapshotter loaded as the `lazyfs` proxy plugin. Dropping them kills
//! what the test left running, by ID, and stops both processes.
//!
//! containerd 1.6 puts shim sockets under /run/containerd whatever its
//! state dir: each test uses its own namespace and removes its own tasks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A containerd process.
#[derive(Debug)]
pub struct TestContainerd {
    /// Its directory (config, root, state, socket, log).
    pub dir: PathBuf,
    /// Its gRPC socket.
    pub socket: PathBuf,
    /// The namespace the test works in.
    pub namespace: String,
    child: Option<Child>,
}

/// The config of a containerd with `snapshotter` as proxy plugin `lazyfs`
/// and nothing this test does not need (CRI would want CNI).
fn config(dir: &Path, snapshotter: &Path) -> String {
    format!(
        "version = 2\nroot = {root:?}\nstate = {state:?}\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.aufs\", \
         \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \
         \"io.containerd.snapshotter.v1.devmapper\"]\n\
         [grpc]\n  address = {sock:?}\n[ttrpc]\n  address = {ttrpc:?}\n\
         [debug]\n  level = \"debug\"\n\
         [proxy_plugins.lazyfs]\n  type = \"snapshot\"\n  address = {snapshotter:?}\n",
        root = dir.join("root"),
        state = dir.join("state"),
        sock = dir.join("containerd.sock"),
        ttrpc = dir.join("containerd.sock.ttrpc"),
    )
}

impl TestContainerd {
    /// Starts containerd under `dir`, with the lazyfs snapshotter expected
    /// at `snapshotter`; waits (up to 30 s) until it answers.
    pub fn start(dir: &Path, snapshotter: &Path, namespace: &str) -> Result<Self> {
        let binary = crate::require_program("containerd", "containerd")?;
        crate::require_program("ctr", "containerd")?;
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config(dir, snapshotter))?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd")?;
        let containerd = Self {
            dir: dir.to_owned(),
            socket: dir.join("containerd.sock"),
            namespace: namespace.to_owned(),
            child: Some(child),
        };
        let started = Instant::now();
        while !containerd.ctr(&["version"])?.status.success() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("containerd did not answer in 30 s:\n{}", containerd.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(containerd)
    }

    /// Runs `ctr` against this containerd, in the test's namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running ctr")
    }

    /// Runs `ctr`, failing with its stderr unless it succeeds; its stdout.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.ctr(args)?;
        if !out.status.success() {
            bail!(
                "ctr {}: {}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(40)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What containerd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Its last `lines` log lines.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The first column of `ctr <args>`'s table, header skipped.
    fn ids(&self, args: &[&str]) -> Vec<String> {
        self.ctr(args)
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        // What the test left running: its tasks (and so their shims).
        for task in self.ids(&["tasks", "ls"]) {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", &task]);
            std::thread::sleep(Duration::from_millis(200));
            let _ = self.ctr(&["tasks", "delete", "--force", &task]);
        }
        for container in self.ids(&["containers", "ls"]) {
            let _ = self.ctr(&["containers", "delete", &container]);
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `containerd-lazy-grpc` process.
#[derive(Debug)]
pub struct SnapshotterProcess {
    /// Its socket.
    pub socket: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl SnapshotterProcess {
    /// Starts `binary` serving `socket`, snapshots under `root`, lazyfsd
    /// found through `lazyfsd_config`; waits (up to 10 s) for the socket.
    pub fn start(binary: &Path, dir: &Path, lazyfsd_config: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("lazy.sock");
        let args = vec![
            "--address".to_owned(),
            socket.display().to_string(),
            "--root".to_owned(),
            dir.join("root").display().to_string(),
            "--config".to_owned(),
            lazyfsd_config.display().to_string(),
        ];
        let mut process = Self {
            socket,
            log: dir.join("snapshotter.log"),
            binary: binary.to_owned(),
            args,
            child: None,
        };
        process.spawn()?;
        Ok(process)
    }

    /// (Re)starts the process.
    pub fn spawn(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        let started = Instant::now();
        while !self.socket.exists() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!(
                    "the snapshotter did not listen in 10 s:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SnapshotterProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}
