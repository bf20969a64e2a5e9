//! Harness for the lazyrun tests: a host with a real registry, a lazyfsd
//! config with a `[run]` section, and the daemon (RAII).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use lazy_control::ControlClient;
use lazy_control::protocol::{Request, Response, StatsInfo};
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::{base_layer, upper_layer};
use lazy_testkit::layout::{TestCompression, write_oci_image};
use lazy_testkit::registry::TestRegistry;

/// A host: registry, lazyfsd config (with a `[run]` section), daemon.
pub struct Host {
    pub work: tempfile::TempDir,
    pub registry: TestRegistry,
    pub files: DaemonFiles,
    pub daemon: Option<DaemonProcess>,
}

impl Host {
    pub fn new() -> Self {
        let work = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start().unwrap();
        let files = DaemonFiles::write(&work.path().join("d"), &registry.host(), "");
        let mut config = std::fs::OpenOptions::new()
            .append(true)
            .open(&files.config)
            .unwrap();
        // The file ends in its [run] table (containers under the daemon's dir).
        writeln!(config, "default_registry = {:?}", registry.host()).unwrap();
        Self {
            work,
            registry,
            files,
            daemon: None,
        }
    }

    /// A host with the sample image converted as `sample:lazy` and lazyfsd up.
    pub fn with_sample() -> Self {
        let mut host = Self::new();
        let src = host.work.path().join("src");
        write_oci_image(
            &src,
            "v1",
            &[base_layer().unwrap(), upper_layer()],
            TestCompression::Gzip,
        )
        .unwrap();
        host.convert(&src, "v1", "sample:lazy");
        host.start_daemon();
        host
    }

    pub fn start_daemon(&mut self) {
        let binary = sibling("lazyfsd");
        self.daemon = Some(DaemonProcess::start(&binary, self.files.clone()));
    }

    pub fn convert(&self, layout: &Path, tag: &str, name: &str) {
        let out = Command::new(sibling("lazyctl"))
            .args(["convert", "--insecure", &self.registry.host()])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("{}/{name}", self.registry.host()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lazyrun"));
        cmd.arg("--config").arg(&self.files.config).args(args);
        cmd
    }

    pub fn lazyrun(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn lazyrun_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn lazyctl(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        let config = self.files.config.to_str().unwrap();
        all.extend(["--config", config]);
        Command::new(sibling("lazyctl")).args(all).output().unwrap()
    }

    pub fn stats(&self) -> StatsInfo {
        let client = ControlClient::new(&self.files.socket, Duration::from_secs(30));
        match client.call(&Request::Stats) {
            Ok(Response::Stats(s)) => s,
            other => panic!("stats: {other:?}"),
        }
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.files.dir.join("containers")
    }

    /// Nothing of any container is left: no directory, no mount.
    pub fn assert_no_container_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.containers_dir())
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.containers_dir().display().to_string();
        assert!(
            !mounts.contains(&dir),
            "still mounted under {dir}:\n{mounts}"
        );
    }
}

/// Binaries built beside lazyrun by the workspace test run.
pub fn sibling(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_lazyrun")).with_file_name(name);
    assert!(
        path.exists(),
        "{} missing: run the workspace tests",
        path.display()
    );
    path
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().expect("lazyrun exited, not killed")
}
