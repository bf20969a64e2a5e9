//! Harness for the Podman tests: a registry with the 3-layer sample image
//! (lazy and plain), lazyfsd serving the additional layer store, and a
//! private Podman set up by `lazyctl podman-setup`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::push_sample_images;
use lazy_testkit::podman::TestPodman;
use lazy_testkit::process::{output_text as text, run_ok};
use lazy_testkit::registry::TestRegistry;

pub const OS_RELEASE: &str = "PRETTY_NAME=\"lazyfs podman test\"\nID=lazytest\n";

pub fn bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lazyctl")).with_file_name(name)
}

/// A registry holding a 3-layer test image (whiteouts, an opaque dir) as
/// a lazy and a plain image, lazyfsd serving the layer store, and Podman
/// set up by `lazyctl podman-setup`.
pub struct Node {
    // Podman goes first (its mounts reach into lazyfsd's), the directory last.
    pub podman: TestPodman,
    pub daemon: Option<DaemonProcess>,
    pub daemon_files: DaemonFiles,
    pub registry: TestRegistry,
    pub store: PathBuf,
    pub lazy_image: String,
    pub plain_image: String,
    pub work: tempfile::TempDir,
}

impl Node {
    pub fn start() -> Node {
        Self::start_with(DaemonProcess::start, "prefetch = \"none\"")
    }

    /// With lazyfsd under `--supervise`, as its systemd unit runs it, and
    /// without passthrough: every read of a container is a FUSE request.
    pub fn start_supervised() -> Node {
        let config = "prefetch = \"none\"\npassthrough = false";
        Self::start_with(DaemonProcess::start_supervised, config)
    }

    pub fn start_with(start: fn(&Path, DaemonFiles) -> DaemonProcess, config: &str) -> Node {
        let work = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start().unwrap();
        let host = registry.host();
        let (lazy_image, plain_image) =
            push_sample_images(work.path(), &registry, &bin("lazyctl"), OS_RELEASE).unwrap();
        let podman = TestPodman::new(&work.path().join("podman")).unwrap();
        let daemon_files = DaemonFiles::write(&work.path().join("lazyfsd"), &host, config);
        let store = work.path().join("store");
        let storage_conf = podman.storage_conf.display().to_string();
        let daemon_conf = daemon_files.config.display().to_string();
        let store_arg = store.display().to_string();
        let setup = run_ok(
            &bin("lazyctl"),
            &[
                "podman-setup",
                "--storage-conf",
                &storage_conf,
                "--config",
                &daemon_conf,
                "--layer-store",
                &store_arg,
            ],
        );
        assert!(setup.contains("store added"), "{setup}");
        let daemon = start(&bin("lazyfsd"), daemon_files.clone());
        Node {
            podman,
            daemon: Some(daemon),
            daemon_files,
            registry,
            store,
            lazy_image,
            plain_image,
            work,
        }
    }

    pub fn podman_ok(&self, args: &[&str]) -> String {
        self.podman
            .run_ok(args)
            .unwrap_or_else(|e| panic!("{e:#}\nlazyfsd log:\n{}", self.daemon_log()))
    }

    pub fn pull(&self, image: &str) -> Output {
        self.podman
            .run(&["pull", "--quiet", "--tls-verify=false", image])
            .unwrap()
    }

    /// [`Node::pull`], which must succeed.
    pub fn pull_ok(&self, image: &str) {
        let out = self.pull(image);
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out),
            self.daemon_log()
        );
    }

    pub fn daemon_log(&self) -> String {
        self.daemon
            .as_ref()
            .map(DaemonProcess::log)
            .unwrap_or_default()
    }

    /// The store's directory for `image`.
    pub fn image_dir(&self, image: &str) -> PathBuf {
        self.store
            .join(base64::engine::general_purpose::STANDARD.encode(image))
    }
}

/// The layer digests of `image`'s manifest, as the registry has it.
pub fn layer_digests(image: &str) -> Vec<String> {
    let manifest = run_ok(
        Path::new("skopeo"),
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ],
    );
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// `stat` of `path` in a thread, so that a hang fails the test instead of
/// blocking it: the error kind, or `None` when it exists.
pub fn stat_within(path: PathBuf, limit: Duration) -> Option<std::io::ErrorKind> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&path).err().map(|e| e.kind()));
    });
    rx.recv_timeout(limit).expect("stat did not return in time")
}
