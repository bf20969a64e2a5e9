//! A lazyfsd process under test: started with `--notify-stdout`, ready when
//! it prints READY (never a fixed sleep), stopped and unmounted on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Files of a test daemon, all under one directory.
#[derive(Debug, Clone)]
pub struct DaemonFiles {
    /// Its directory.
    pub dir: PathBuf,
    /// FUSE mountpoint.
    pub mountpoint: PathBuf,
    /// Control socket.
    pub socket: PathBuf,
    /// Config file.
    pub config: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
}

impl DaemonFiles {
    /// Writes a config under `dir` trusting `insecure` over plain http;
    /// `extra` is appended to the top-level settings.
    pub fn write(dir: &Path, insecure: &str, extra: &str) -> Self {
        std::fs::create_dir_all(dir).expect("daemon dir");
        let files = Self {
            dir: dir.to_owned(),
            mountpoint: dir.join("mnt"),
            socket: dir.join("lazyfsd.sock"),
            config: dir.join("config.toml"),
            log: dir.join("lazyfsd.stderr"),
        };
        let text = format!(
            "cache_dir = {:?}\nmountpoint = {:?}\nsocket = {:?}\nlog_file = {:?}\n{extra}\n\
             [registry]\ninsecure = [{insecure:?}]\nretries = 0\ntimeout_secs = 5\n\
             [run]\ncontainers_dir = {:?}\n",
            dir.join("cache"),
            files.mountpoint,
            files.socket,
            dir.join("lazyfsd.log"),
            dir.join("containers"),
        );
        std::fs::write(&files.config, text).expect("daemon config");
        files
    }
}

/// A running lazyfsd.
#[derive(Debug)]
pub struct DaemonProcess {
    /// Its files.
    pub files: DaemonFiles,
    binary: PathBuf,
    /// Arguments besides the config (`--supervise`).
    extra_args: Vec<String>,
    /// The network namespace it runs in (`/run/netns/<name>`), if not the test's.
    netns: Option<PathBuf>,
    child: Option<Child>,
}

impl DaemonProcess {
    /// Starts `binary` with `files` and waits (up to 30 s) for READY.
    pub fn start(binary: &Path, files: DaemonFiles) -> Self {
        let mut daemon = Self {
            files,
            binary: binary.to_owned(),
            extra_args: Vec::new(),
            netns: None,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// Starts `binary` in the network namespace at `netns` (its mount
    /// namespace is the test's) and waits for READY.
    pub fn start_in_netns(binary: &Path, files: DaemonFiles, netns: PathBuf) -> Self {
        let mut daemon = Self {
            files,
            binary: binary.to_owned(),
            extra_args: Vec::new(),
            netns: Some(netns),
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// Starts `binary --supervise` with `files` and waits for READY; the
    /// process is the supervisor, lazyfsd its child.
    pub fn start_supervised(binary: &Path, files: DaemonFiles) -> Self {
        let mut daemon = Self {
            files,
            binary: binary.to_owned(),
            extra_args: vec!["--supervise".into()],
            netns: None,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// The process id (the supervisor's, when supervised).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The supervised lazyfsd's process id: the supervisor's child.
    pub fn worker_pid(&self) -> Option<u32> {
        let pid = self.pid()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// Waits (30 s at most) until the supervisor runs a lazyfsd other
    /// than `old` that listens on its control socket (bound once its
    /// mounts are served); returns its process id.
    pub fn wait_for_new_worker(&self, old: u32) -> u32 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(pid) = self.worker_pid()
                && pid != old
                && std::os::unix::net::UnixStream::connect(&self.files.socket).is_ok()
            {
                return pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no new lazyfsd after 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// (Re)starts the process.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.files.log)
            .expect("log");
        let mut command = match &self.netns {
            None => Command::new(&self.binary),
            Some(path) => {
                // nsenter execs the daemon: the child's PID is lazyfsd's.
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", path.display())).arg(&self.binary);
                c
            }
        };
        let mut child = command
            .arg("--config")
            .arg(&self.files.config)
            .arg("--notify-stdout")
            .args(&self.extra_args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.trim() == "READY" => self.child = Some(child),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("lazyfsd did not become ready: {other:?}\n{}", self.log());
            }
        }
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.files.log).unwrap_or_default()
    }

    /// SIGKILL: the mount stays behind, stale.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` for the process to exit; returns
    /// its status and how long it took, or `None` if it did not exit (it is
    /// then killed).
    pub fn terminate_within(
        &mut self,
        limit: Duration,
    ) -> Option<(std::process::ExitStatus, Duration)> {
        let mut child = self.child.take()?;
        let started = std::time::Instant::now();
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM through kill(1): the daemon unmounts and exits.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // What a killed daemon left mounted: the main mount, and the layer
        // store if its config (as edited by the test) serves one.
        let store = std::fs::read_to_string(&self.files.config)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|config| config.get("layer_store")?.as_str().map(PathBuf::from));
        for mount in std::iter::once(self.files.mountpoint.clone()).chain(store) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(mount)
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
