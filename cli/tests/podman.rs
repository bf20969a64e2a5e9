//! lazyfs under a real Podman (Debian's 4.3) through lazyfsd's additional
//! layer store: `lazyctl podman-setup`, then `podman pull` finds the lazy
//! layers in the store and downloads none, `podman run` reads through
//! lazyfsd. Every process is the real one, started here under a temp dir.

mod podman_node;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lazy_testkit::process::{output_text as text, run_ok};
use lazy_testkit::require_privileges;
use lazy_testkit::tree::diff_trees;
use podman_node::{Node, OS_RELEASE, bin, layer_digests, stat_within};

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
