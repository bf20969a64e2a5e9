//! lazyfs under a real Podman (Debian's 4.3) through lazyfsd's additional
//! layer store: `lazyctl podman-setup`, then `podman pull` finds the lazy
//! layers in the store and downloads none, `podman run` reads through
//! lazyfsd, and a running container reads on while a supervised lazyfsd is
//! killed and started again. Every process is the real one, started here
//! under a temp dir.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::{BIG_FILE_LEN, noise, push_sample_images};
use lazy_testkit::podman::TestPodman;
use lazy_testkit::process::{output_text as text, run_ok};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;
use lazy_testkit::tree::diff_trees;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::Digest as _;

const OS_RELEASE: &str = "PRETTY_NAME=\"lazyfs podman test\"\nID=lazytest\n";

fn bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lazyctl")).with_file_name(name)
}

/// A registry holding a 3-layer test image (whiteouts, an opaque dir) as
/// a lazy and a plain image, lazyfsd serving the layer store, and Podman
/// set up by `lazyctl podman-setup`.
struct Node {
    // Podman goes first (its mounts reach into lazyfsd's), the directory last.
    podman: TestPodman,
    daemon: Option<DaemonProcess>,
    daemon_files: DaemonFiles,
    registry: TestRegistry,
    store: PathBuf,
    lazy_image: String,
    plain_image: String,
    work: tempfile::TempDir,
}

impl Node {
    fn start() -> Node {
        Self::start_with(DaemonProcess::start, "prefetch = \"none\"")
    }

    /// With lazyfsd under `--supervise`, as its systemd unit runs it, and
    /// without passthrough: every read of a container is a FUSE request.
    fn start_supervised() -> Node {
        let config = "prefetch = \"none\"\npassthrough = false";
        Self::start_with(DaemonProcess::start_supervised, config)
    }

    fn start_with(start: fn(&Path, DaemonFiles) -> DaemonProcess, config: &str) -> Node {
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

    fn podman_ok(&self, args: &[&str]) -> String {
        self.podman
            .run_ok(args)
            .unwrap_or_else(|e| panic!("{e:#}\nlazyfsd log:\n{}", self.daemon_log()))
    }

    fn pull(&self, image: &str) -> Output {
        self.podman
            .run(&["pull", "--quiet", "--tls-verify=false", image])
            .unwrap()
    }

    /// [`Node::pull`], which must succeed.
    fn pull_ok(&self, image: &str) {
        let out = self.pull(image);
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out),
            self.daemon_log()
        );
    }

    fn daemon_log(&self) -> String {
        self.daemon
            .as_ref()
            .map(DaemonProcess::log)
            .unwrap_or_default()
    }

    /// The store's directory for `image`.
    fn image_dir(&self, image: &str) -> PathBuf {
        self.store
            .join(base64::engine::general_purpose::STANDARD.encode(image))
    }
}

/// The layer digests of `image`'s manifest, as the registry has it.
fn layer_digests(image: &str) -> Vec<String> {
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
fn stat_within(path: PathBuf, limit: Duration) -> Option<std::io::ErrorKind> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&path).err().map(|e| e.kind()));
    });
    rx.recv_timeout(limit).expect("stat did not return in time")
}

#[test]
fn privileged_podman_runs_a_lazy_image_from_the_layer_store() {
    require_privileges!();
    let node = Node::start();
    let served_before = node.registry.blob_bytes_served();
    node.pull_ok(&node.lazy_image);
    let pulled = node.registry.blob_bytes_served() - served_before;
    // The lazy layers hold over 5 MiB of noise; the pull reads the config
    // and each layer's metadata only.
    assert!(
        pulled < 512 * 1024,
        "the pull fetched {pulled} bytes of blobs"
    );

    let os_release = node.podman_ok(&["run", "--rm", &node.lazy_image, "cat", "/etc/os-release"]);
    assert_eq!(os_release, OS_RELEASE);
    // `cat` is busybox (1 MiB); the 5 MiB of noise stays in the registry.
    let after_run = node.registry.blob_bytes_served() - served_before;
    assert!(
        after_run < 2 * 1024 * 1024,
        "pull and run fetched {after_run} bytes"
    );

    // The image as Podman mounts it is the plain image, entry by entry:
    // whiteouts hide, the opaque dir hides the lower one.
    node.pull_ok(&node.plain_image);
    let lazy_root = node.podman_ok(&["image", "mount", &node.lazy_image]);
    let plain_root = node.podman_ok(&["image", "mount", &node.plain_image]);
    let differences =
        diff_trees(Path::new(plain_root.trim()), Path::new(lazy_root.trim())).unwrap();
    assert!(
        differences.is_empty(),
        "lazy image differs: {differences:#?}"
    );
    let listing = node.podman_ok(&[
        "run",
        "--rm",
        &node.lazy_image,
        "ls",
        "/data/opaque",
        "/data",
    ]);
    assert!(
        listing.contains("upper") && !listing.contains("lower"),
        "{listing}"
    );
    assert!(!listing.contains("deleted"), "{listing}");

    // `blob` is the lazy blob itself, as the registry has it.
    let image_dir = node.image_dir(&node.lazy_image);
    let layer_dirs: Vec<PathBuf> = std::fs::read_dir(&image_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(layer_dirs.len(), 3, "{layer_dirs:?}");
    for dir in &layer_dirs {
        let digest = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let sum = run_ok(
            Path::new("sha256sum"),
            &[dir.join("blob").to_str().unwrap()],
        );
        assert_eq!(format!("sha256:{}", &sum[..64]), digest);
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("info")).unwrap()).unwrap();
        assert_eq!(info["diff-digest"], digest.as_str());
        assert_eq!(
            std::fs::read_link(dir.join("diff")).unwrap(),
            node.daemon_files.mountpoint.join(&digest)
        );
    }

    // rmi, then a second pull finds the layers in the store again.
    node.podman_ok(&["image", "unmount", "--all"]);
    node.podman_ok(&["rmi", &node.lazy_image]);
    node.pull_ok(&node.lazy_image);
    let os_release = node.podman_ok(&["run", "--rm", &node.lazy_image, "cat", "/etc/os-release"]);
    assert_eq!(os_release, OS_RELEASE);
}

#[test]
fn privileged_unknown_names_in_the_layer_store_are_enoent_at_once() {
    require_privileges!();
    let node = Node::start();
    let limit = Duration::from_secs(20);
    let image_dir = node.image_dir(&node.lazy_image);
    let absent = format!("sha256:{}", "0".repeat(64));
    let started = Instant::now();
    assert_eq!(
        stat_within(image_dir.join(&absent), limit),
        Some(std::io::ErrorKind::NotFound),
        "a digest the repository lacks"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    for name in ["not-base64!", "bm90IGEgcmVmZXJlbmNl"] {
        assert_eq!(
            stat_within(node.store.join(name), limit),
            Some(std::io::ErrorKind::NotFound),
            "{name}"
        );
    }
    assert_eq!(
        stat_within(image_dir.join("sha256:short"), limit),
        Some(std::io::ErrorKind::NotFound)
    );
    // Only root may attach through the store.
    let path = image_dir.display().to_string();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "stat",
            &path,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out)
    );
    // A plain image's layer is no lazy layer: not served, so Podman
    // downloads it as usual.
    let plain_dir = node.image_dir(&node.plain_image);
    let plain_layer = &layer_digests(&node.plain_image)[0];
    assert_eq!(
        stat_within(plain_dir.join(plain_layer), limit),
        Some(std::io::ErrorKind::NotFound)
    );
    let os_release = node.podman_ok(&[
        "run",
        "--rm",
        "--pull",
        "always",
        "--tls-verify=false",
        &node.plain_image,
        "cat",
        "/etc/os-release",
    ]);
    assert_eq!(os_release, OS_RELEASE);
}

#[test]
fn privileged_concurrent_lookups_attach_each_layer_once() {
    require_privileges!();
    let node = Node::start();
    let digests = layer_digests(&node.lazy_image);
    assert_eq!(digests.len(), 3);
    // Eight lookers at once, each asking for every layer (in another
    // order), as parallel pulls of one image do.
    let image_dir = node.image_dir(&node.lazy_image);
    std::thread::scope(|s| {
        for looker in 0..8 {
            let (image_dir, digests) = (&image_dir, &digests);
            s.spawn(move || {
                for i in 0..digests.len() {
                    let digest = &digests[(i + looker) % digests.len()];
                    let info = image_dir.join(digest).join("info");
                    let text = std::fs::read_to_string(&info)
                        .unwrap_or_else(|e| panic!("looker {looker}: {}: {e}", info.display()));
                    assert!(text.contains(digest.as_str()), "{text}");
                }
            });
        }
    });
    let socket = node.daemon_files.socket.display().to_string();
    let listed = run_ok(&bin("lazyctl"), &["ls", "--json", "--socket", &socket]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let mut attached: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    attached.sort_unstable();
    let mut wanted: Vec<&str> = digests.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(attached, wanted, "each layer attached once");
    let names: Vec<_> = std::fs::read_dir(&image_dir).unwrap().collect();
    assert_eq!(names.len(), 3, "one directory per layer");
}

#[test]
fn privileged_a_pull_with_lazyfsd_down_fails_and_leaves_nothing() {
    require_privileges!();
    let mut node = Node::start();
    let store = node.store.display().to_string();
    // Killed: the store's mount answers ENOTCONN; stopped: it is gone.
    // Either way Podman names the store and stops, downloading nothing.
    for how in ["kill -9", "SIGTERM"] {
        let daemon = node.daemon.as_mut().unwrap();
        match how {
            "kill -9" => daemon.kill9(),
            _ => {
                let stopped = daemon.terminate_within(Duration::from_secs(20));
                assert!(
                    stopped.is_some_and(|(status, _)| status.success()),
                    "{stopped:?}"
                );
            }
        }
        let served_before = node.registry.blob_bytes_served();
        let out = node.pull(&node.lazy_image);
        assert!(
            !out.status.success(),
            "{how}: pulled without lazyfsd: {}",
            text(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("additionallayerstore") && stderr.contains(&store),
            "{how}: unclear error: {stderr}"
        );
        assert_eq!(node.registry.blob_bytes_served(), served_before, "{how}");

        // A restarted lazyfsd serves the store again; nothing was left.
        node.daemon.as_mut().unwrap().spawn();
        let images = node.podman_ok(&["images", "--quiet"]);
        assert!(images.trim().is_empty(), "{how}: images left: {images}");
    }
    node.pull_ok(&node.lazy_image);
    let os_release = node.podman_ok(&["run", "--rm", &node.lazy_image, "cat", "/etc/os-release"]);
    assert_eq!(os_release, OS_RELEASE);
}

#[test]
fn privileged_a_podman_container_reads_on_while_supervised_lazyfsd_restarts() {
    require_privileges!();
    let node = Node::start_supervised();
    node.pull_ok(&node.lazy_image);
    let expected = md5_hex(&noise(BIG_FILE_LEN, 42));
    // Reads big.bin whole, O_DIRECT (no page cache), over and over.
    let control = node.work.path().join("control");
    std::fs::create_dir(&control).unwrap();
    let volume = format!("{}:/control", control.display());
    let mut container = node
        .podman
        .command()
        .args(["run", "--rm", "-v", &volume, &node.lazy_image, "sh", "-c"])
        .arg("until [ -e /control/stop ]; do dd if=/data/big.bin iflag=direct bs=1M 2>/dev/null | md5sum; done")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sums = Arc::new(Mutex::new(Vec::<String>::new()));
    let collector = {
        let (stdout, sums) = (container.stdout.take().unwrap(), Arc::clone(&sums));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                sums.lock().unwrap().push(line.unwrap());
            }
        })
    };
    let rounds_grow = |what: &str| {
        let start = sums.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(60);
        while sums.lock().unwrap().len() < start + 2 {
            assert!(
                Instant::now() < deadline,
                "the container stalled {what}:\n{}",
                node.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    rounds_grow("before the restart");
    // A file of the layer store, open across the restart; only its head read.
    let digest = layer_digests(&node.lazy_image).remove(0);
    let layer_dir = node.image_dir(&node.lazy_image).join(&digest);
    let blob = std::fs::File::open(layer_dir.join("blob")).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&blob, &mut [0u8; 4096], 0).unwrap();

    let daemon = node.daemon.as_ref().unwrap();
    let first = daemon.worker_pid().expect("a supervised lazyfsd");
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    daemon.wait_for_new_worker(first);
    rounds_grow("after kill -9");

    // The layer store's mount was taken over too: the open blob reads on
    // (the rest of it is FUSE reads the new daemon answers), and the names
    // the kernel had looked up keep their meaning.
    let mut whole = Vec::new();
    std::io::Read::read_to_end(&mut &blob, &mut whole)
        .unwrap_or_else(|e| panic!("reading the open blob: {e}\n{}", node.daemon_log()));
    let sum = sha2::Sha256::digest(&whole);
    assert_eq!(format!("sha256:{sum:x}"), digest, "the blob's bytes");
    let info = std::fs::read_to_string(layer_dir.join("info")).unwrap();
    assert!(info.contains(&digest), "{info}");

    // The layer store is mounted again: a new container starts.
    let os_release = node.podman_ok(&["run", "--rm", &node.lazy_image, "cat", "/etc/os-release"]);
    assert_eq!(os_release, OS_RELEASE);

    std::fs::write(control.join("stop"), "").unwrap();
    let status = container.wait().unwrap();
    collector.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut container.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    let sums = sums.lock().unwrap();
    let wrong: Vec<_> = sums.iter().filter(|l| !l.starts_with(&expected)).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} rounds read wrong bytes: {wrong:?}",
        wrong.len(),
        sums.len()
    );
    drop(sums);
    drop(blob);

    // An upgrade to a config without the layer store: the supervisor lets
    // go of the old store mount, which then fails at once instead of hanging.
    let config = std::fs::read_to_string(&node.daemon_files.config).unwrap();
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("layer_store"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, config, "podman-setup wrote layer_store");
    std::fs::write(&node.daemon_files.config, without).unwrap();
    let before = daemon.worker_pid().unwrap();
    kill(Pid::from_raw(daemon.pid().unwrap() as i32), Signal::SIGHUP).unwrap();
    daemon.wait_for_new_worker(before);
    // A name the kernel has not cached, so the lookup reaches the mount.
    let uncached = node.image_dir("localhost:1/never:looked-up");
    let error = stat_within(uncached, Duration::from_secs(20));
    assert!(
        matches!(
            error,
            Some(std::io::ErrorKind::NotConnected | std::io::ErrorKind::ConnectionAborted)
        ),
        "{error:?}\n{}",
        daemon.log()
    );
    // No daemon knows that mount now: unmounting it is the operator's.
    nix::mount::umount2(&node.store, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

/// The md5 of `data` in hex, as md5sum prints it.
fn md5_hex(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), data).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}
