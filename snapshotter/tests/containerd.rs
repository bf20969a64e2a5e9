//! lazyfs on a real containerd (Debian's 1.6) with runc: `lazyctl pull
//! --containerd` then `ctr run --snapshotter lazyfs`, plain images through
//! the same snapshotter, snapshots as `ctr` sees them, restarts and faults.
//! Every process is the real one, started here under a temp dir.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use lazy_control::ControlClient;
use lazy_snapshotter::store::SnapshotStore;
use lazy_testkit::containerd::{SnapshotterProcess, TestContainerd};
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::push_sample_images;
use lazy_testkit::process::output_text as text;
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;

const OS_RELEASE: &str = "PRETTY_NAME=\"lazyfs test image\"\nID=lazytest\n";

fn bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-lazy-grpc")).with_file_name(name)
}

/// Everything one test needs: a registry with the test image as a plain
/// and a lazy image, lazyfsd, the snapshotter and containerd.
struct Node {
    // Fields drop in this order: containerd before its snapshotter, both
    // before lazyfsd, the directory holding them all last.
    containerd: Option<TestContainerd>,
    snapshotter: SnapshotterProcess,
    daemon: Option<DaemonProcess>,
    daemon_files: DaemonFiles,
    registry: TestRegistry,
    lazy_image: String,
    plain_image: String,
    work: tempfile::TempDir,
}

impl Node {
    fn start(namespace: &str) -> Node {
        let work = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start().unwrap();
        let host = registry.host();
        let (lazy_image, plain_image) =
            push_sample_images(work.path(), &registry, &bin("lazyctl"), OS_RELEASE).unwrap();
        let daemon_files =
            DaemonFiles::write(&work.path().join("lazyfsd"), &host, "prefetch = \"none\"");
        let daemon = DaemonProcess::start(&bin("lazyfsd"), daemon_files.clone());
        let snapshotter = SnapshotterProcess::start(
            &bin("containerd-lazy-grpc"),
            &work.path().join("sn"),
            &daemon_files.config,
        )
        .unwrap();
        let containerd =
            TestContainerd::start(&work.path().join("ctd"), &snapshotter.socket, namespace)
                .unwrap();
        Node {
            work,
            registry,
            lazy_image,
            plain_image,
            daemon: Some(daemon),
            daemon_files,
            containerd: Some(containerd),
            snapshotter,
        }
    }

    fn containerd(&self) -> &TestContainerd {
        self.containerd.as_ref().unwrap()
    }

    /// `lazyctl pull --containerd IMAGE` against this node.
    fn pull(&self, image: &str) -> Output {
        let ctd = self.containerd();
        Command::new(bin("lazyctl"))
            .args(["pull", "--containerd", "--address"])
            .arg(&ctd.socket)
            .args(["--namespace", &ctd.namespace, "--config"])
            .arg(&self.daemon_files.config)
            .args(["--insecure", &self.registry.host(), image])
            .output()
            .unwrap()
    }

    /// [`Node::pull`] of the lazy image, which must succeed: its stdout.
    fn pull_ok(&self) -> String {
        let out = self.pull(&self.lazy_image);
        assert!(out.status.success(), "{}\n{}", text(&out), self.logs());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Node::pull`] of the lazy image, which must fail: its stderr.
    fn pull_fails(&self) -> String {
        let out = self.pull(&self.lazy_image);
        assert!(!out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn stats(&self) -> lazy_control::StatsInfo {
        ControlClient::new(&self.daemon_files.socket, Duration::from_secs(10))
            .stats()
            .unwrap()
    }

    /// `ctr run --rm --snapshotter lazyfs IMAGE ID ARGS…`, its stdout.
    fn run(&self, image: &str, id: &str, args: &[&str]) -> String {
        let mut all = vec!["run", "--rm", "--snapshotter", "lazyfs", image, id];
        all.extend(args);
        self.containerd()
            .ctr_ok(&all)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.logs()))
    }

    /// The snapshots `ctr snapshots --snapshotter lazyfs ls` lists: (name, parent, kind).
    fn snapshots(&self) -> Vec<(String, String, String)> {
        let out = self
            .containerd()
            .ctr_ok(&["snapshots", "--snapshotter", "lazyfs", "ls"])
            .unwrap();
        let mut rows: Vec<_> = out
            .lines()
            .skip(1)
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                match cols.as_slice() {
                    [key, kind] => (key.to_string(), String::new(), kind.to_string()),
                    [key, parent, kind] => (key.to_string(), parent.to_string(), kind.to_string()),
                    _ => panic!("unexpected row {l:?}"),
                }
            })
            .collect();
        rows.sort();
        rows
    }

    /// Waits (up to 10 s) until containerd reaches a restarted snapshotter:
    /// its connection to the old one fails calls until it reconnects.
    fn wait_for_snapshotter(&self) {
        let started = std::time::Instant::now();
        let ls = ["snapshots", "--snapshotter", "lazyfs", "ls"];
        while !self.containerd().ctr(&ls).unwrap().status.success() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- snapshotter\n{}\n--- containerd\n{}",
            self.snapshotter.log_text(),
            self.containerd
                .as_ref()
                .map(|c| c.log_tail(30))
                .unwrap_or_default()
        )
    }

    /// Every snapshot the snapshotter itself records (its file is
    /// replaced atomically: it can be read while the snapshotter runs).
    fn backend_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = SnapshotStore::open(&self.work.path().join("sn/root"))
            .unwrap()
            .all()
            .into_iter()
            .map(|r| r.key)
            .collect();
        keys.sort();
        keys
    }
}

#[test]
fn privileged_lazy_image_runs_without_downloading_layers() {
    require_privileges!();
    let node = Node::start("lazytest-run");
    let said = node.pull_ok();
    assert!(
        said.contains("3 layers (3 new remote snapshots, 0 already in containerd)"),
        "{said}"
    );
    let served_before_run = node.registry.blob_bytes_served();

    // containerd has the manifest and config, and no layer blob.
    let content = node
        .containerd()
        .ctr_ok(&["content", "ls", "--quiet"])
        .unwrap();
    assert_eq!(
        content.lines().count(),
        2,
        "manifest and config only: {content}"
    );
    let images = node
        .containerd()
        .ctr_ok(&["images", "ls", "--quiet"])
        .unwrap();
    assert_eq!(images.trim(), node.lazy_image);

    let out = node.run(&node.lazy_image, "lazy-1", &["cat", "/etc/os-release"]);
    assert_eq!(out.replace('\r', ""), OS_RELEASE);
    // Layers from all three layers, through overlay: whiteouts hold.
    let listing = node.run(&node.lazy_image, "lazy-2", &["ls", "/data"]);
    assert!(
        listing.contains("replace-me") && !listing.contains("deleted"),
        "{listing}"
    );

    // Only what the containers read was fetched: not the 5 MiB of noise.
    let stats = node.stats();
    let fetched_by_run = node.registry.blob_bytes_served() - served_before_run;
    assert!(stats.fetched_bytes > 0);
    assert!(
        stats.fetched_bytes < 4 << 20,
        "fetched {} bytes for cat and ls",
        stats.fetched_bytes
    );
    assert!(
        fetched_by_run <= stats.fetched_bytes + (64 << 10),
        "{fetched_by_run}"
    );

    // The three layer snapshots, committed, chained.
    let snapshots = node.snapshots();
    assert_eq!(snapshots.len(), 3, "{snapshots:?}");
    assert!(
        snapshots.iter().all(|(_, _, kind)| kind == "Committed"),
        "{snapshots:?}"
    );
    let bases: Vec<_> = snapshots.iter().filter(|(_, p, _)| p.is_empty()).collect();
    assert_eq!(bases.len(), 1, "one bottom layer: {snapshots:?}");

    // A second pull finds everything there.
    assert!(
        node.pull_ok()
            .contains("(0 new remote snapshots, 3 already in containerd)")
    );

    // Removing the image: containerd's garbage collection removes the
    // snapshots, and the snapshotter detaches the layers from lazyfsd.
    let lazyfsd = ControlClient::new(&node.daemon_files.socket, Duration::from_secs(10));
    assert_eq!(lazyfsd.list().unwrap().len(), 3);
    node.containerd()
        .ctr_ok(&["images", "rm", "--sync", &node.lazy_image])
        .unwrap();
    let started = std::time::Instant::now();
    while !lazyfsd.list().unwrap().is_empty() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(node.snapshots().is_empty(), "{:?}", node.snapshots());
    assert!(lazyfsd.list().unwrap().is_empty(), "{}", node.logs());
}

#[test]
fn privileged_plain_image_pulls_and_runs_through_the_snapshotter() {
    require_privileges!();
    let node = Node::start("lazytest-plain");
    let ctd = node.containerd();
    ctd.ctr_ok(&[
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "lazyfs",
        &node.plain_image,
    ])
    .unwrap_or_else(|e| panic!("{e:#}\n{}", node.logs()));
    let out = node.run(&node.plain_image, "plain-1", &["cat", "/etc/os-release"]);
    assert_eq!(out, OS_RELEASE);
    let motd = node.run(&node.plain_image, "plain-2", &["cat", "/etc/changed"]);
    assert_eq!(motd, "version 2\n");
    assert_eq!(
        node.stats().attached_layers,
        0,
        "nothing went through lazyfsd"
    );
}

#[test]
fn privileged_snapshots_agree_with_ctr_and_survive_a_restart() {
    require_privileges!();
    let mut node = Node::start("lazytest-snap");
    node.pull_ok();
    let ctd = node.containerd();
    let top = node
        .snapshots()
        .into_iter()
        .find(|(name, _, _)| !node.snapshots().iter().any(|(_, p, _)| p == name))
        .unwrap()
        .0;
    // Snapshots nothing references are containerd's garbage: these two
    // are made gc roots, as a client holding them would.
    for (verb, key) in [("prepare", "work"), ("view", "look")] {
        ctd.ctr_ok(&["snapshots", "--snapshotter", "lazyfs", verb, key, &top])
            .unwrap();
        let root = "containerd.io/gc.root=test";
        ctd.ctr_ok(&["snapshots", "--snapshotter", "lazyfs", "label", key, root])
            .unwrap();
    }
    let with_work = node.snapshots();
    assert!(
        with_work.contains(&("work".into(), top.clone(), "Active".into())),
        "{with_work:?}"
    );
    assert!(
        with_work.contains(&("look".into(), top.clone(), "View".into())),
        "{with_work:?}"
    );
    // A snapshot with children cannot go.
    let refused = ctd
        .ctr(&["snapshots", "--snapshotter", "lazyfs", "rm", &top])
        .unwrap();
    assert!(!refused.status.success(), "{}", text(&refused));

    // Restart the snapshotter: containerd sees the same snapshots.
    node.snapshotter.kill9();
    node.snapshotter.spawn().unwrap();
    node.wait_for_snapshotter();
    assert_eq!(node.snapshots(), with_work);
    let out = node.run(
        &node.lazy_image,
        "after-restart",
        &["cat", "/etc/os-release"],
    );
    assert_eq!(out, OS_RELEASE);

    // ctr rm removes it in the snapshotter too.
    let ctd = node.containerd();
    ctd.ctr_ok(&["snapshots", "--snapshotter", "lazyfs", "rm", "work", "look"])
        .unwrap();
    assert_eq!(node.snapshots().len(), 3);
    // containerd removes its record at once, the snapshotter's in its
    // next garbage collection.
    let started = std::time::Instant::now();
    while node.backend_keys().len() > 3 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let keys = node.backend_keys();
    assert!(
        keys.iter().all(|k| k.starts_with("sha256:")) && keys.len() == 3,
        "the snapshotter kept only the layers: {keys:?}"
    );
}

#[test]
fn privileged_pull_faults_leave_nothing_and_a_retry_works() {
    require_privileges!();
    let mut node = Node::start("lazytest-faults");
    // A plain image: refused with what to do instead.
    let plain = node.pull(&node.plain_image);
    assert!(!plain.status.success(), "{}", text(&plain));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("ctr image pull --snapshotter lazyfs"));
    // No containerd at the address.
    let nowhere = Command::new(bin("lazyctl"))
        .args(["pull", "--containerd", "--address"])
        .arg(node.work.path().join("none.sock"))
        .arg("--config")
        .arg(&node.daemon_files.config)
        .args(["--insecure", &node.registry.host(), &node.lazy_image])
        .output()
        .unwrap();
    assert!(!nowhere.status.success());
    assert!(
        String::from_utf8_lossy(&nowhere.stderr).contains("cannot reach containerd at"),
        "{}",
        text(&nowhere)
    );
    // lazyfsd down: a clear error, no image, no snapshot.
    node.daemon = None;
    let err = node.pull_fails();
    assert!(err.contains("lazyfsd is not running"), "{err}");
    let ctd = node.containerd();
    assert_eq!(ctd.ctr_ok(&["images", "ls", "--quiet"]).unwrap().trim(), "");
    assert!(node.snapshots().is_empty(), "{:?}", node.snapshots());

    // The snapshotter down: containerd says so, nothing is left.
    node.daemon = Some(DaemonProcess::start(
        &bin("lazyfsd"),
        node.daemon_files.clone(),
    ));
    node.snapshotter.kill9();
    let err = node.pull_fails();
    assert!(err.contains("is containerd-lazy-grpc running?"), "{err}");
    assert_eq!(
        node.containerd()
            .ctr_ok(&["images", "ls", "--quiet"])
            .unwrap()
            .trim(),
        ""
    );

    // Killed in the middle of a pull: after a restart, a pull works.
    node.snapshotter.spawn().unwrap();
    let mut pull = Command::new(bin("lazyctl"));
    let ctd = node.containerd();
    pull.args(["pull", "--containerd", "--address"])
        .arg(&ctd.socket)
        .args(["--namespace", &ctd.namespace, "--config"])
        .arg(&node.daemon_files.config)
        .args(["--insecure", &node.registry.host(), &node.lazy_image]);
    let mut child = pull.spawn().unwrap();
    let started = std::time::Instant::now();
    while !node
        .snapshotter
        .log_text()
        .contains("remote snapshot of a lazy layer")
        && started.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    node.snapshotter.kill9();
    let _ = child.wait();
    node.snapshotter.spawn().unwrap();
    node.wait_for_snapshotter();
    node.pull_ok();
    let out = node.run(&node.lazy_image, "after-crash", &["cat", "/etc/os-release"]);
    assert_eq!(out, OS_RELEASE);
}
