//! `lazyctl attach | ls | cache | detach` against a real lazyfsd.

mod common;

use std::path::PathBuf;

use common::{lazyctl_fails_with, lazyctl_ok, skopeo_push, write_sample};
use lazy_control::ErrorKind;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;

/// lazyfsd is built beside lazyctl by a workspace test run.
fn lazyfsd_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_lazyctl")).with_file_name("lazyfsd");
    assert!(
        path.exists(),
        "{} missing: run the workspace tests (or cargo build --bin lazyfsd)",
        path.display()
    );
    path
}

#[test]
fn privileged_attach_ls_cache_detach() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    skopeo_push(&src, "v1", &format!("{host}/sample:v1"));
    let image = format!("{host}/sample:lazy");
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        &format!("{host}/sample:v1"),
        &image,
    ]);

    let files = DaemonFiles::write(&work.path().join("d"), &host, "");
    let socket = files.socket.to_str().unwrap().to_owned();
    let unreachable = ErrorKind::Unreachable.mapping().exit_code;
    let err = lazyctl_fails_with(&["ls", "--socket", &socket], unreachable);
    assert!(err.contains("lazyfsd is not running"), "{err}");
    let _daemon = DaemonProcess::start(&lazyfsd_binary(), files);

    let out = lazyctl_ok(&["attach", "--socket", &socket, &image]);
    let paths: Vec<&str> = out.lines().collect();
    assert_eq!(paths.len(), 2, "{out}");
    assert_eq!(
        std::fs::read(PathBuf::from(paths[0]).join("etc/motd")).unwrap(),
        b"welcome to the lazy test image\n"
    );
    let ls = lazyctl_ok(&["ls", "--socket", &socket]);
    assert_eq!(ls.lines().filter(|l| l.contains(&image)).count(), 2, "{ls}");

    let stats: serde_json::Value = serde_json::from_str(&lazyctl_ok(&[
        "cache", "stats", "--json", "--socket", &socket,
    ]))
    .unwrap();
    assert!(stats["fetched_bytes"].as_u64().unwrap() > 0, "{stats}");
    assert!(lazyctl_ok(&["cache", "verify", "--socket", &socket]).contains("removed 0 corrupt"));
    assert!(lazyctl_ok(&["cache", "gc", "--socket", &socket]).contains("evicted"));
    let stats: serde_json::Value = serde_json::from_str(&lazyctl_ok(&[
        "cache", "stats", "--json", "--socket", &socket,
    ]))
    .unwrap();
    assert_eq!(
        stats["cache_bytes"].as_u64(),
        Some(0),
        "gc emptied the cache: {stats}"
    );

    lazyctl_ok(&["detach", "--socket", &socket, &image]);
    assert_eq!(
        lazyctl_ok(&["ls", "--socket", &socket]).lines().count(),
        1,
        "only the header is left"
    );
    assert!(
        !PathBuf::from(paths[0]).exists(),
        "detached layer is gone from the mount"
    );
    let not_found = ErrorKind::NotFound.mapping().exit_code;
    let err = lazyctl_fails_with(&["detach", "--socket", &socket, &image], not_found);
    assert!(err.contains("nothing attached"), "{err}");
    // A plain image is refused with its own kind, named in the message.
    let plain = format!("{host}/sample:v1");
    let not_lazy = ErrorKind::NotLazy.mapping().exit_code;
    let err = lazyctl_fails_with(&["attach", "--socket", &socket, &plain], not_lazy);
    assert!(
        err.contains(&plain) && err.contains("not a lazy image"),
        "{err}"
    );
    let missing = format!("{host}/sample:no-such-tag");
    let err = lazyctl_fails_with(&["attach", "--socket", &socket, &missing], 66);
    assert!(err.contains("no-such-tag"), "{err}");
    let invalid = ErrorKind::InvalidRequest.mapping().exit_code;
    lazyctl_fails_with(&["attach", "--socket", &socket, "UPPER/Case::x"], invalid);
}

#[test]
fn privileged_record_then_prefetch_the_startup_set() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let image = format!("{host}/sample:lazy");
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        "--chunk-size",
        "64K",
        &format!("oci:{}:v1", src.display()),
        &image,
    ]);

    let recorded = {
        let files = DaemonFiles::write(&work.path().join("rec"), &host, "");
        let socket = files.socket.to_str().unwrap().to_owned();
        let config = files.config.to_str().unwrap().to_owned();
        let _daemon = DaemonProcess::start(&lazyfsd_binary(), files);
        // The registry is insecure in the daemon's config: record reads it there.
        let record = || {
            lazyctl_ok(&[
                "record",
                "--config",
                &config,
                &image,
                "--",
                "/bin/sh",
                "-c",
                "cat /etc/motd /data/big.bin >/dev/null",
            ])
        };
        let out = record();
        assert!(out.contains("recorded"), "{out}");
        // Again, with every page and chunk cached (and single-chunk files
        // served by passthrough): the recording still sees every read.
        let again = record();
        let count = |text: &str| text.split_whitespace().nth(1).map(str::to_owned);
        assert_eq!(count(&again), count(&out), "{out}\n{again}");
        // The daemon fetched at least what was read (more: its guesses,
        // which the record leaves out).
        let stats: serde_json::Value = serde_json::from_str(&lazyctl_ok(&[
            "cache", "stats", "--json", "--socket", &socket,
        ]))
        .unwrap();
        let recorded: u64 = count(&out).and_then(|n| n.parse().ok()).expect("a count");
        assert!(
            stats["fetched_chunks"].as_u64().unwrap() >= recorded,
            "{stats}"
        );
        recorded
    };
    assert!(recorded > 50, "cat read the big file: {recorded} chunks");

    // A fresh host: attach prefetches the recorded set before anything reads it.
    let files = DaemonFiles::write(&work.path().join("fresh"), &host, "prefetch = \"record\"");
    let socket = files.socket.to_str().unwrap().to_owned();
    let _daemon = DaemonProcess::start(&lazyfsd_binary(), files);
    let paths = lazyctl_ok(&["attach", "--socket", &socket, &image]);
    let base = PathBuf::from(paths.lines().next().unwrap());
    let fetched = || -> u64 {
        let stats: serde_json::Value = serde_json::from_str(&lazyctl_ok(&[
            "cache", "stats", "--json", "--socket", &socket,
        ]))
        .unwrap();
        stats["fetched_chunks"].as_u64().unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fetched() < recorded {
        assert!(
            std::time::Instant::now() < deadline,
            "prefetch did not finish: {} of {recorded}",
            fetched()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        fetched(),
        recorded,
        "exactly the recorded chunks were prefetched"
    );
    assert_eq!(
        std::fs::read(base.join("etc/motd")).unwrap(),
        b"welcome to the lazy test image\n"
    );
    assert_eq!(
        std::fs::read(base.join("data/big.bin")).unwrap().len(),
        lazy_testkit::images::BIG_FILE_LEN
    );
    assert_eq!(
        fetched(),
        recorded,
        "reading the recorded files fetched nothing more"
    );
}

#[test]
fn privileged_record_runs_the_command_as_lazyrun_would() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    // The command finds its files only through the image's env and workdir.
    let config = serde_json::json!({
        "Env": ["PATH=/bin", "TARGET=/etc/motd"],
        "WorkingDir": "/data",
    });
    lazy_testkit::layout::write_oci_image_with_config(
        &src,
        "v1",
        &[lazy_testkit::images::base_layer().unwrap()],
        lazy_testkit::layout::TestCompression::Gzip,
        config,
    )
    .unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let image = format!("{host}/env:lazy");
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        "--chunk-size",
        "64K",
        &format!("oci:{}:v1", src.display()),
        &image,
    ]);
    let files = DaemonFiles::write(&work.path().join("d"), &host, "");
    let config = files.config.to_str().unwrap().to_owned();
    let _daemon = DaemonProcess::start(&lazyfsd_binary(), files);
    let out = lazyctl_ok(&[
        "record",
        "--config",
        &config,
        &image,
        "--",
        "sh",
        "-c",
        "cat \"$TARGET\" big.bin >/dev/null",
    ]);
    let chunks: u64 = out
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    // big.bin alone is 81 chunks of 64K.
    assert!(
        chunks > 80,
        "the command read through env and workdir: {out}"
    );
}
