//! Images fast from their first start: `lazyctl convert --record` records
//! the image's own command and lays the blobs out in its read order;
//! `lazyctl record --add` merges records; `lazyctl relayout` refuses an
//! image without one. Real registry, real lazyfsd, real containers.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{assert_same_tree, lazyctl_err, lazyctl_fails_with, lazyctl_ok};
use lazy_format::{EntryKind, LayerMeta, verify_blob};
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::{base_layer, upper_layer};
use lazy_testkit::layout::{TestCompression, write_oci_image_with_config};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;

fn lazyfsd_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lazyctl")).with_file_name("lazyfsd")
}

/// A lazyfsd for the registry `host`, its files in `dir`, with `extra`
/// config lines; with its config file and socket paths.
fn start_daemon(dir: &Path, host: &str, extra: &str) -> (DaemonProcess, String, String) {
    let files = DaemonFiles::write(dir, host, extra);
    let config = files.config.to_str().unwrap().to_owned();
    let socket = files.socket.to_str().unwrap().to_owned();
    (
        DaemonProcess::start(&lazyfsd_binary(), files),
        config,
        socket,
    )
}

/// The sample image (two layers, every entry kind) whose command is `cmd`.
fn image_with_cmd(dir: &Path, cmd: &str) {
    let config = serde_json::json!({
        "Env": ["PATH=/bin"],
        "Cmd": ["sh", "-c", cmd],
    });
    write_oci_image_with_config(
        dir,
        "v1",
        &[base_layer().unwrap(), upper_layer()],
        TestCompression::Gzip,
        config,
    )
    .unwrap();
}

/// The metadata of every layer of the image whose manifest is `digest`,
/// read from the registry's storage (each blob verified).
fn layer_metas(registry: &TestRegistry, digest: &str) -> Vec<LayerMeta> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry.blob_data_path(digest)).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let blob = std::fs::read(registry.blob_data_path(l["digest"].as_str().unwrap()));
            verify_blob(&blob.unwrap()).expect("the relaid blob verifies")
        })
        .collect()
}

fn offsets(meta: &LayerMeta, path: &[u8]) -> Vec<u64> {
    let EntryKind::File { chunks, .. } = &meta.find(path).unwrap().kind else {
        panic!("{path:?} is not a file")
    };
    chunks
        .iter()
        .map(|&i| meta.chunks[i as usize].offset)
        .collect()
}

#[test]
fn privileged_convert_record_lays_the_image_out_in_read_order() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // Reads the end of big.bin before motd, against tar order.
    image_with_cmd(
        &src,
        "tail -c 100000 /data/big.bin >/dev/null; cat /etc/motd /srv/new >/dev/null",
    );
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let (daemon, config, _) = start_daemon(&work.path().join("rec"), &host, "");
    let image = format!("{host}/sample:lazy");
    let src_ref = format!("oci:{}:v1", src.display());
    let out = lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        "--chunk-size",
        "64K",
        "--record",
        "--config",
        &config,
        &src_ref,
        &image,
    ]);
    drop(daemon);
    assert!(
        out.contains("recorded") && out.contains("laid out"),
        "{out}"
    );
    let digest = out.lines().last().unwrap().trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{out}");

    // The read chunks come first, in read order; unread ones after.
    let metas = layer_metas(&registry, &digest);
    let big = offsets(&metas[0], b"data/big.bin");
    let (read_tail, unread_head) = (big[big.len() - 1], big[0]);
    let motd = offsets(&metas[0], b"etc/motd")[0];
    assert!(
        read_tail < motd,
        "big.bin's tail before motd: {read_tail} {motd}"
    );
    assert!(
        motd < unread_head,
        "motd before big.bin's unread head: {motd} {unread_head}"
    );
    assert_eq!(
        offsets(&metas[1], b"srv/new")[0],
        0,
        "srv/new opens layer 2"
    );

    // Files are unchanged: the relaid image unpacks to the converted one.
    let plain = format!("{host}/sample:plain-lazy");
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        "--chunk-size",
        "64K",
        &src_ref,
        &plain,
    ]);
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    lazyctl_ok(&["unpack", "--insecure", &host, &plain, a.to_str().unwrap()]);
    lazyctl_ok(&["unpack", "--insecure", &host, &image, b.to_str().unwrap()]);
    assert_same_tree(&a, &b);

    // The record moved with the image: a fresh host prefetches it, and the
    // command then fetches nothing more.
    let (_daemon, _, socket) =
        start_daemon(&work.path().join("fresh"), &host, "prefetch = \"record\"");
    let paths = lazyctl_ok(&["attach", "--socket", &socket, &image]);
    let stats = || -> serde_json::Value {
        let out = lazyctl_ok(&["cache", "stats", "--json", "--socket", &socket]);
        serde_json::from_str(&out).unwrap()
    };
    let fetched = || stats()["fetched_chunks"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats()["prefetching"].as_u64() != Some(0) {
        assert!(Instant::now() < deadline, "prefetch did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    let prefetched = fetched();
    assert!(prefetched > 2, "the record was prefetched: {prefetched}");
    let mut layers = paths.lines().map(PathBuf::from);
    let (base, upper) = (layers.next().unwrap(), layers.next().unwrap());
    let big = std::fs::File::open(base.join("data/big.bin")).unwrap();
    let mut tail = vec![0u8; 100_000];
    let start = (lazy_testkit::images::BIG_FILE_LEN - tail.len()) as u64;
    std::os::unix::fs::FileExt::read_exact_at(&big, &mut tail, start).unwrap();
    assert_eq!(
        std::fs::read(base.join("etc/motd")).unwrap(),
        b"welcome to the lazy test image\n"
    );
    assert_eq!(std::fs::read(upper.join("srv/new")).unwrap().len(), 300_000);
    assert_eq!(
        fetched(),
        prefetched,
        "what the command reads was all prefetched"
    );
}

/// The chunk count a `record` output line states: `recorded N chunks …`.
fn recorded_count(out: &str) -> u64 {
    out.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"))
}

/// The stored count: `… (N chunks)` at the end of the line.
fn stored_count(out: &str) -> u64 {
    let open = out.rfind('(').unwrap_or_else(|| panic!("{out}"));
    recorded_count(&format!("x {}", &out[open + 1..]))
}

#[test]
fn privileged_record_add_merges_two_commands() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    image_with_cmd(&src, "true");
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let image = format!("{host}/sample:lazy");
    let src_ref = format!("oci:{}:v1", src.display());
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        "--chunk-size",
        "64K",
        &src_ref,
        &image,
    ]);
    let (daemon, config, _) = start_daemon(&work.path().join("rec"), &host, "");
    let record = |add: bool, cmd: &str| {
        let mut args = vec!["record", "--config", &config];
        if add {
            args.push("--add");
        }
        args.extend([image.as_str(), "--", "sh", "-c", cmd]);
        lazyctl_ok(&args)
    };
    let first = record(false, "cat /data/big.bin >/dev/null");
    let second = record(true, "cat /srv/new /etc/motd >/dev/null");
    drop(daemon);
    let (a, b, merged) = (
        recorded_count(&first),
        recorded_count(&second),
        stored_count(&second),
    );
    assert!(second.contains("merged"), "{second}");
    // big.bin alone is 81 chunks; busybox's pages are read by both.
    assert!(a > 80 && merged > a && merged < a + b, "{first}{second}");

    // Both commands' files are prefetched on a fresh host.
    let (_daemon, _, socket) =
        start_daemon(&work.path().join("fresh"), &host, "prefetch = \"record\"");
    let paths = lazyctl_ok(&["attach", "--socket", &socket, &image]);
    let stats = || -> serde_json::Value {
        serde_json::from_str(&lazyctl_ok(&[
            "cache", "stats", "--json", "--socket", &socket,
        ]))
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats()["fetched_chunks"].as_u64().unwrap() < merged {
        assert!(Instant::now() < deadline, "prefetch stopped: {}", stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut layers = paths.lines().map(PathBuf::from);
    let (base, upper) = (layers.next().unwrap(), layers.next().unwrap());
    let requests = stats()["requests"].clone();
    std::fs::read(base.join("data/big.bin")).unwrap();
    std::fs::read(base.join("etc/motd")).unwrap();
    std::fs::read(upper.join("srv/new")).unwrap();
    assert_eq!(
        stats()["requests"],
        requests,
        "no read went to the registry"
    );
}

#[test]
fn privileged_record_timeout_stops_a_command_that_ignores_sigterm() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // A server that never exits and ignores SIGTERM.
    image_with_cmd(
        &src,
        "trap '' TERM; cat /etc/motd >/dev/null; while :; do sleep 1; done",
    );
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let (_daemon, config, _) = start_daemon(&work.path().join("rec"), &host, "");
    let image = format!("{host}/server:lazy");
    let started = Instant::now();
    let out = common::lazyctl(&[
        "convert",
        "--insecure",
        &host,
        "--record",
        "--record-timeout",
        "2s",
        "--config",
        &config,
        &format!("oci:{}:v1", src.display()),
        &image,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "{stderr}");
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("killing"),
        "{stderr}"
    );
    assert!(stdout.contains("laid out"), "{stdout}");
}

#[test]
fn record_and_relayout_errors_are_clear() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    image_with_cmd(&src, "true");
    let src_ref = format!("oci:{}:v1", src.display());
    let dst = format!("oci:{}:v1", work.path().join("lazy").display());
    let err = lazyctl_err(&["convert", "--record", &src_ref, &dst]);
    assert!(err.contains("DST must be a registry"), "{err}");
    // Usage errors: clap's status 2.
    let err = lazyctl_fails_with(&["convert", "--record", "--json", &src_ref, &dst], 2);
    assert!(err.contains("cannot be used with"), "{err}");
    let err = lazyctl_fails_with(&["record", "--stop-after", "3d", "x/y:z"], 2);
    assert!(err.contains("unknown unit"), "{err}");

    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let image = format!("{host}/sample:lazy");
    lazyctl_ok(&["convert", "--insecure", &host, &src_ref, &image]);
    let err = lazyctl_err(&["relayout", "--insecure", &host, &image]);
    assert!(err.contains("no prefetch record"), "{err}");
}
