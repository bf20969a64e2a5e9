//! Shared harness of the runtime's integration tests: a busybox rootfs in a
//! temp dir and a runner that starts containers through the real `run`.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lazy_runtime::ContainerSpec;

/// Busybox applets the tests use, linked into `/bin`.
const APPLETS: &[&str] = &[
    "sh", "id", "hostname", "grep", "ls", "cat", "touch", "tail", "head", "sleep", "seq", "wc",
    "tty", "ip", "ping", "ps", "echo", "mkdir", "pwd", "env", "sed", "true", "false", "tr",
];

/// How long any one container may take in a test.
pub const CONTAINER_DEADLINE: Duration = Duration::from_secs(60);

/// A busybox root filesystem plus a scratch dir outside it; both removed
/// on drop.
pub struct TestRootfs {
    rootfs: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

impl TestRootfs {
    /// `/bin/busybox` (from busybox-static) with applet links, `/etc/passwd`
    /// and `/etc/group` with root and alice (1000).
    pub fn new() -> Self {
        let rootfs = tempfile::Builder::new()
            .prefix("lazy-runtime-rootfs")
            .tempdir()
            .unwrap();
        let root = rootfs.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox missing: apt-get install busybox-static");
        for applet in APPLETS {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/group"),
            "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n",
        )
        .unwrap();
        let scratch = tempfile::Builder::new()
            .prefix("lazy-runtime-scratch")
            .tempdir()
            .unwrap();
        TestRootfs { rootfs, scratch }
    }

    /// The rootfs directory.
    pub fn path(&self) -> &Path {
        self.rootfs.path()
    }

    /// A scratch directory outside the rootfs.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// A spec running `sh -c script` in this rootfs, named after the test,
    /// with its state dir (`/etc` files) in the scratch dir, as lazyrun.
    pub fn spec(&self, name: &str, script: &str) -> ContainerSpec {
        let id = format!("lrt-{name}-{}", std::process::id());
        let mut spec = ContainerSpec::new(
            id.clone(),
            self.path(),
            vec!["sh".into(), "-c".into(), script.into()],
        );
        spec.state_dir = Some(self.scratch().join(format!("{id}.state")));
        spec
    }
}

/// The helper binary: container init and `run SPEC.json` runner.
pub fn init_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lazy-runtime-test-init"))
}

/// What a container run through the runner printed and exited with.
#[derive(Debug)]
pub struct Output {
    /// docker-style exit code of the runner.
    pub code: i32,
    /// The container's stdout.
    pub stdout: String,
    /// The container's and the runner's stderr.
    pub stderr: String,
}

/// A container started through the runner binary in its own process.
pub struct RunningContainer {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl RunningContainer {
    /// Starts `spec` (stdin from /dev/null, stdout and stderr to files in
    /// the scratch dir).
    pub fn start(rootfs: &TestRootfs, spec: &ContainerSpec) -> Self {
        Self::start_with(rootfs, spec, None)
    }

    /// Starts `spec` with the built-in runtime, or with `oci_runtime` (runc,
    /// crun) through an OCI bundle in the scratch dir.
    pub fn start_with(
        rootfs: &TestRootfs,
        spec: &ContainerSpec,
        oci_runtime: Option<&str>,
    ) -> Self {
        let dir = rootfs.scratch();
        let spec_path = dir.join(format!("{}.json", spec.id));
        std::fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
        let stdout = dir.join(format!("{}.stdout", spec.id));
        let stderr = dir.join(format!("{}.stderr", spec.id));
        let mut command = Command::new(init_exe());
        match oci_runtime {
            None => command.arg("run"),
            Some(runtime) => command
                .arg("oci")
                .arg(runtime)
                .arg(dir.join(format!("{}.bundle", spec.id))),
        };
        let child = command
            .arg(&spec_path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        RunningContainer {
            child,
            stdout,
            stderr,
        }
    }

    /// The runner's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to [`CONTAINER_DEADLINE`]) for the runner to exit.
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + CONTAINER_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                panic!("container still running after {CONTAINER_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            code: status.code().expect("runner killed by a signal"),
            stdout: std::fs::read_to_string(&self.stdout).unwrap(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap(),
        }
    }
}

impl Drop for RunningContainer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `spec` through the runner and returns its output.
pub fn run_captured(rootfs: &TestRootfs, spec: &ContainerSpec) -> Output {
    RunningContainer::start(rootfs, spec).wait()
}

/// Polls `condition` every 20 ms until it holds, failing after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `spec` in this process with the real `run`.
pub fn run_in_process(
    spec: &ContainerSpec,
) -> Result<lazy_runtime::ExitStatus, lazy_runtime::RuntimeError> {
    lazy_runtime::run(spec, init_exe())
}
