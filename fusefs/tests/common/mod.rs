//! Harness for lazyfsd tests: a real daemon with its own cache, mount and
//! socket (RAII), lazy images converted into a real registry, overlay mounts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lazy_control::ControlClient;
use lazy_control::protocol::{LayerInfo, PrefetchMode, PullPolicy, Request, Response, StatsInfo};
use lazy_convert::{ConvertOptions, NoProgress, convert_image};
use lazy_image::ImageStore;
use lazy_oci::{ClientOptions, ImageLocation, RegistryClient};
use lazy_runtime::overlay::OverlayMount;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::write_sample_image;
use lazy_testkit::layout::TestCompression;
use lazy_testkit::registry::TestRegistry;

/// A running lazyfsd with helpers for its control API.
pub struct Lazyfsd {
    pub process: DaemonProcess,
    pub mountpoint: PathBuf,
    pub socket: PathBuf,
}

impl Lazyfsd {
    /// Starts a daemon whose files live under `dir`, trusting `insecure` over http.
    pub fn start(dir: &Path, insecure: &str, extra_config: &str) -> Self {
        let files = DaemonFiles::write(dir, insecure, extra_config);
        let (mountpoint, socket) = (files.mountpoint.clone(), files.socket.clone());
        Self {
            process: DaemonProcess::start(Path::new(env!("CARGO_BIN_EXE_lazyfsd")), files),
            mountpoint,
            socket,
        }
    }

    pub fn spawn(&mut self) {
        self.process.spawn();
    }

    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn client(&self) -> ControlClient {
        ControlClient::new(&self.socket, Duration::from_secs(60))
    }

    /// Attaches without prefetch (reads fetch exactly what they need).
    pub fn attach(&self, image: &str) -> Vec<LayerInfo> {
        self.attach_with(image, PrefetchMode::None)
    }

    pub fn attach_with(&self, image: &str, prefetch: PrefetchMode) -> Vec<LayerInfo> {
        let request = Request::Attach {
            image: image.to_owned(),
            pin: false,
            prefetch: Some(prefetch),
            with_config: false,
            pull: PullPolicy::Always,
            credentials: None,
        };
        match self.client().call(&request) {
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
}

/// An overlay of lazy layers (or any dirs), unmounted on drop.
pub struct Overlay(OverlayMount);

impl std::ops::Deref for Overlay {
    type Target = OverlayMount;
    fn deref(&self) -> &OverlayMount {
        &self.0
    }
}

impl Overlay {
    /// Mounts `lowers` (top first) under a fresh upper dir in `dir`.
    pub fn mount(dir: &Path, lowers: &[PathBuf]) -> Self {
        Self(OverlayMount::mount(dir, lowers).unwrap())
    }
}

/// Converts the OCI layout image `src:tag` into `dest` (a registry reference).
pub fn convert_into_registry(src: &Path, tag: &str, dest: &str, host: &str, chunk_size: u32) {
    let options = ClientOptions {
        insecure_hosts: vec![host.to_owned()],
        ..Default::default()
    };
    convert_with(src, tag, dest, options, chunk_size);
}

/// [`convert_into_registry`] with a client built from `options`.
pub fn convert_with(src: &Path, tag: &str, dest: &str, options: ClientOptions, chunk_size: u32) {
    let client = RegistryClient::new(options).unwrap();
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

/// The sample image converted into a fresh registry.
pub struct Setup {
    pub work: tempfile::TempDir,
    pub registry: TestRegistry,
    pub image: String,
    pub src: PathBuf,
}

/// Writes the sample image, starts a registry, converts into it (64K chunks).
pub fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_sample_image(&src, "v1", TestCompression::Gzip).unwrap();
    let registry = TestRegistry::start().unwrap();
    let image = format!("{}/sample:lazy", registry.host());
    convert_into_registry(&src, "v1", &image, &registry.host(), 64 * 1024);
    Setup {
        work,
        registry,
        image,
        src,
    }
}

/// `umoci raw unpack` of an OCI layout image: the reference unpacker.
pub fn umoci_unpack(layout: &std::path::Path, tag: &str, dir: &std::path::Path) {
    let image = format!("{}:{tag}", layout.display());
    let out = std::process::Command::new("umoci")
        .args(["raw", "unpack", "--image", &image])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops a file's pages from the page cache, so that the next read must
/// come from its backing file or from lazyfsd.
pub fn drop_pages(path: &Path) {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let file = std::fs::File::open(path).unwrap();
    posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
}
