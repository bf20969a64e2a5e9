//! Harness for lazyfsd tests: a real daemon with its own cache, mount and
//! socket (RAII), lazy images converted into a real registry, overlay mounts.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use lazy_convert::{ConvertOptions, ImageStore, NoProgress, convert_image};
use lazy_fusefs::client::ControlClient;
use lazy_fusefs::protocol::{LayerInfo, Request, Response, StatsInfo};
use lazy_oci::{ClientOptions, ImageLocation, RegistryClient};

/// A running lazyfsd; stopped (SIGTERM, then SIGKILL) and unmounted on drop.
pub struct Lazyfsd {
    pub dir: PathBuf,
    pub mountpoint: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
}

impl Lazyfsd {
    /// Starts a daemon whose files live under `dir`, trusting `insecure` over http.
    pub fn start(dir: &Path, insecure: &str, extra_config: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mountpoint = dir.join("mnt");
        let socket = dir.join("lazyfsd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "cache_dir = {:?}\nmountpoint = {:?}\nsocket = {:?}\nlog_file = {:?}\n{extra_config}\n[registry]\ninsecure = [{insecure:?}]\nretries = 0\ntimeout_secs = 5\n",
                dir.join("cache"),
                mountpoint,
                socket,
                dir.join("lazyfsd.log"),
            ),
        )
        .unwrap();
        let mut daemon = Self {
            dir: dir.to_owned(),
            mountpoint,
            socket,
            config,
            child: None,
        };
        daemon.spawn();
        daemon
    }

    /// (Re)starts the process and waits for READY.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lazyfsd"))
            .arg("--config")
            .arg(&self.config)
            .arg("--notify-stdout")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start lazyfsd");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.trim() == "READY" => {}
            other => {
                let _ = child.kill();
                panic!("lazyfsd did not become ready: {other:?}\n{}", self.log());
            }
        }
        self.child = Some(child);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("lazyfsd.stderr")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn client(&self) -> ControlClient {
        ControlClient::new(&self.socket, Duration::from_secs(60))
    }

    pub fn attach(&self, image: &str) -> Vec<LayerInfo> {
        match self.client().call(&Request::Attach {
            image: image.to_owned(),
            pin: false,
        }) {
            Ok(Response::Layers(layers)) => layers,
            other => panic!("attach {image}: {other:?}"),
        }
    }

    pub fn stats(&self) -> StatsInfo {
        match self.client().call(&Request::Stats) {
            Ok(Response::Stats(s)) => s,
            other => panic!("stats: {other:?}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the daemon with SIGKILL (its mount stays behind, stale).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for Lazyfsd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An overlay mount; unmounted on drop.
pub struct Overlay {
    pub merged: PathBuf,
}

impl Overlay {
    /// Mounts `lowers` (top first) under a fresh upper dir in `dir`.
    pub fn mount(dir: &Path, lowers: &[PathBuf]) -> Self {
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d).unwrap();
        }
        // Layer directories are named sha256:<hex>; overlayfs wants ':' escaped.
        let lowerdir: Vec<String> = lowers
            .iter()
            .map(|p| {
                p.display()
                    .to_string()
                    .replace('\\', "\\\\")
                    .replace(':', "\\:")
            })
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowerdir.join(":"),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {options}: {e}"));
        Self { merged }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.merged, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Converts the OCI layout image `src:tag` into `dest` (a registry reference).
pub fn convert_into_registry(src: &Path, tag: &str, dest: &str, host: &str, chunk_size: u32) {
    let client = RegistryClient::new(ClientOptions {
        insecure_hosts: vec![host.to_owned()],
        ..Default::default()
    })
    .unwrap();
    let src_loc: ImageLocation = format!("oci:{}:{tag}", src.display()).parse().unwrap();
    let dst_loc: ImageLocation = dest.parse().unwrap();
    let opts = ConvertOptions {
        chunk_size,
        ..Default::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let src_store = ImageStore::open(&src_loc, &client).unwrap();
        let dst_store = ImageStore::create(&dst_loc, &client).unwrap();
        convert_image(&src_store, &dst_store, "test", &opts, Arc::new(NoProgress))
            .await
            .unwrap();
    });
}

/// Layer directories of attached layers, top first (overlay lowerdir order).
pub fn lowerdirs(layers: &[LayerInfo]) -> Vec<PathBuf> {
    layers
        .iter()
        .rev()
        .map(|l| PathBuf::from(&l.path))
        .collect()
}
