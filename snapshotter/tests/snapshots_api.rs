//! The snapshots API driven directly (as containerd's gRPC calls would):
//! lifecycle semantics, Walk filters, usage, restart; and remote snapshots
//! of lazy layers through a real lazyfsd and registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_snapshots::tonic::Code;
use containerd_snapshots::{Kind, Snapshotter};
use futures_util::StreamExt;
use lazy_control::ControlClient;
use lazy_control::snapshot_labels::{IMAGE, LAYER, LAZY_LAYER, REMOTE, TARGET};
use lazy_snapshotter::mounts::SnapshotDirs;
use lazy_snapshotter::service::LazySnapshotter;
use lazy_snapshotter::store::SnapshotStore;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;

fn snapshotter(root: &Path, daemon: Option<ControlClient>) -> LazySnapshotter {
    LazySnapshotter::new(
        SnapshotStore::open(root).unwrap(),
        SnapshotDirs::new(root),
        daemon,
    )
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

async fn names(sn: &LazySnapshotter, filters: &[&str]) -> Vec<String> {
    let stream = sn
        .list(
            "lazyfs".into(),
            filters.iter().map(|f| (*f).into()).collect(),
        )
        .await
        .unwrap();
    let mut names: Vec<String> = stream.map(|i| i.unwrap().name).collect().await;
    names.sort();
    names
}

#[tokio::test]
async fn lifecycle_filters_usage_and_restart() {
    let root = tempfile::tempdir().unwrap();
    let sn = snapshotter(root.path(), None);
    let mounts = sn
        .prepare("a".into(), String::new(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(
        (mounts[0].r#type.as_str(), &mounts[0].options[..]),
        ("bind", &["rw".to_owned(), "rbind".to_owned()][..])
    );
    let fs = PathBuf::from(&mounts[0].source);
    std::fs::write(fs.join("file"), vec![7u8; 50_000]).unwrap();
    let active = sn.usage("a".into()).await.unwrap();
    assert!(active.size >= 50_000 && active.inodes == 2, "{active:?}");
    sn.commit("base".into(), "a".into(), labels(&[("team", "x")]))
        .await
        .unwrap();
    assert_eq!(
        sn.stat("a".into()).await.unwrap_err().code(),
        Code::NotFound
    );
    let base = sn.stat("base".into()).await.unwrap();
    assert_eq!(base.kind, Kind::Committed);
    assert_eq!(
        sn.usage("base".into()).await.unwrap().size,
        active.size,
        "recorded at commit"
    );

    let child = sn
        .prepare("c".into(), "base".into(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(child[0].r#type, "overlay");
    assert!(
        child[0]
            .options
            .iter()
            .any(|o| o.starts_with("lowerdir=") && o.ends_with("/fs"))
    );
    let view = sn
        .view("v".into(), "base".into(), HashMap::new())
        .await
        .unwrap();
    assert_eq!(view[0].options, ["ro", "rbind"], "a view is read-only");
    assert_eq!(
        sn.commit("v2".into(), "v".into(), HashMap::new())
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition,
        "a view cannot be committed"
    );
    assert_eq!(
        sn.remove("base".into()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        sn.prepare("c".into(), String::new(), HashMap::new())
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );

    assert_eq!(names(&sn, &[]).await, ["base", "c", "v"]);
    assert_eq!(names(&sn, &["kind==committed"]).await, ["base"]);
    assert_eq!(
        names(&sn, &["parent==base,kind==active", "labels.team==x"]).await,
        ["base", "c"]
    );
    assert_eq!(
        sn.list("lazyfs".into(), vec!["kind==".into()])
            .await
            .err()
            .map(|e| e.code()),
        Some(Code::InvalidArgument)
    );

    // Restart: everything is still there, with the same mounts.
    drop(sn);
    let sn = snapshotter(root.path(), None);
    assert_eq!(names(&sn, &[]).await, ["base", "c", "v"]);
    assert_eq!(sn.mounts("c".into()).await.unwrap(), child);
    sn.remove("c".into()).await.unwrap();
    sn.remove("v".into()).await.unwrap();
    sn.remove("base".into()).await.unwrap();
    assert_eq!(
        std::fs::read_dir(root.path().join("snapshots"))
            .unwrap()
            .count(),
        0,
        "directories removed"
    );
}

#[tokio::test]
async fn without_lazyfsd_a_layer_is_applied_normally() {
    let root = tempfile::tempdir().unwrap();
    let sn = snapshotter(root.path(), None);
    let remote = labels(&[(TARGET, "sha256:t"), (IMAGE, "r/i:1"), (LAYER, "sha256:l")]);
    let mounts = sn
        .prepare("extract-1 sha256:t".into(), String::new(), remote)
        .await
        .unwrap();
    assert_eq!(mounts[0].r#type, "bind");
    assert_eq!(
        sn.stat("extract-1 sha256:t".into()).await.unwrap().kind,
        Kind::Active
    );
}

#[tokio::test]
async fn lazyfsd_down_fails_prepare_and_creates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let nobody = ControlClient::new(root.path().join("no.sock"), Duration::from_secs(5));
    let sn = snapshotter(root.path(), Some(nobody));
    for extra in [None, Some((LAZY_LAYER, "true"))] {
        let mut pairs = vec![(TARGET, "sha256:t"), (IMAGE, "r/i:1"), (LAYER, "sha256:l")];
        pairs.extend(extra);
        let err = sn
            .prepare("extract-1 sha256:t".into(), String::new(), labels(&pairs))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            err.message().contains("lazyfsd is not running"),
            "{}",
            err.message()
        );
        assert!(names(&sn, &[]).await.is_empty(), "nothing half-created");
    }
    // Without the layer labels it is an ordinary snapshot, daemon or not.
    sn.prepare("plain".into(), String::new(), HashMap::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn cleanup_removes_only_directories_without_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let sn = snapshotter(root.path(), None);
    sn.prepare("live".into(), String::new(), HashMap::new())
        .await
        .unwrap();
    let dirs = SnapshotDirs::new(root.path()).list().unwrap();
    assert_eq!(dirs.len(), 1);
    let live = dirs[0].1.clone();
    // What a crash between removing a record and its directory leaves.
    let orphan = SnapshotDirs::new(root.path()).dir(9_999);
    std::fs::create_dir_all(orphan.join("fs/deep")).unwrap();
    sn.clear().await.unwrap();
    assert!(!orphan.exists(), "orphan removed");
    assert!(live.join("fs").is_dir(), "live snapshot kept");
    assert_eq!(names(&sn, &[]).await, ["live"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_lazy_layers_become_remote_snapshots() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    lazy_testkit::images::write_sample_image(
        &src,
        "v1",
        lazy_testkit::layout::TestCompression::Gzip,
    )
    .unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let image = format!("{host}/sample:lazy");
    let lazyctl =
        PathBuf::from(env!("CARGO_BIN_EXE_containerd-lazy-grpc")).with_file_name("lazyctl");
    let out = std::process::Command::new(&lazyctl)
        .args([
            "convert",
            "--insecure",
            &host,
            &format!("oci:{}:v1", src.display()),
            &image,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = DaemonFiles::write(&work.path().join("d"), &host, "prefetch = \"none\"");
    let socket = files.socket.clone();
    let _daemon = DaemonProcess::start(&lazyctl.with_file_name("lazyfsd"), files);
    let client = ControlClient::new(&socket, Duration::from_secs(60));
    let manifest: serde_json::Value = {
        let out = std::process::Command::new(&lazyctl)
            .args(["inspect", "--json", "--insecure", &host, &image])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();

    let root = work.path().join("sn");
    let sn = snapshotter(&root, Some(client.clone()));
    let mut parent = String::new();
    for (n, layer) in layers.iter().enumerate() {
        let target = format!("chain-{n}");
        let labels = labels(&[(TARGET, &target), (IMAGE, &image), (LAYER, layer)]);
        let err = sn
            .prepare(format!("extract-{n} {target}"), parent.clone(), labels)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        let info = sn.stat(target.clone()).await.unwrap();
        assert_eq!(
            (info.kind, info.parent.as_str()),
            (Kind::Committed, parent.as_str())
        );
        assert!(info.labels.contains_key(REMOTE));
        parent = target;
    }
    assert_eq!(
        names(&sn, &[]).await,
        ["chain-0", "chain-1"],
        "no extract snapshot is left"
    );
    // A layer known to be lazy that lazyfsd cannot attach: an error, and
    // nothing made (not an ordinary snapshot containerd would then fill).
    let missing = "sha256:".to_owned() + &"0".repeat(64);
    let labels_missing = labels(&[
        (TARGET, "chain-x"),
        (IMAGE, &image),
        (LAYER, &missing),
        (LAZY_LAYER, "true"),
    ]);
    let err = sn
        .prepare("extract-x chain-x".into(), parent.clone(), labels_missing)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(names(&sn, &[]).await, ["chain-0", "chain-1"]);
    // A container on top: its lower dirs are lazyfsd's layer directories.
    let mounts = sn
        .prepare("ctr".into(), parent, HashMap::new())
        .await
        .unwrap();
    let lower = mounts[0]
        .options
        .iter()
        .find(|o| o.starts_with("lowerdir="))
        .unwrap();
    let attached = client.list().unwrap();
    assert_eq!(attached.len(), 2);
    for layer in &attached {
        assert!(lower.contains(&layer.path.replace(':', "\\:")), "{lower}");
    }
    assert!(Path::new(&attached[0].path).join("etc/passwd").exists());
}
