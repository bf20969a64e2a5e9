//! `lazyrun` end to end: bad input, faults, sharing and the OCI runtimes.

mod lazyrun_host;

use std::process::{Command, Stdio};
use std::time::Duration;

use lazy_control::ControlClient;
use lazy_control::protocol::{PullPolicy, Request, Response};
use lazy_testkit::images::{BIG_FILE_LEN, base_layer, noise};
use lazy_testkit::layout::{TestCompression, write_oci_image};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;
use lazyrun_host::{Host, code, stderr, stdout};

#[test]
fn privileged_bad_input_gives_clear_errors_and_leaves_nothing() {
    require_privileges!();
    let mut host = Host::with_sample();
    let out = host.lazyrun(&["--rm", "no-such-image:lazy", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("no-such-image"), "{}", stderr(&out));

    // An ordinary (not lazy) image: refused with the way out.
    let plain = host.work.path().join("plain");
    write_oci_image(
        &plain,
        "v1",
        &[base_layer().unwrap()],
        TestCompression::Gzip,
    )
    .unwrap();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", plain.display()))
        .arg(format!("docker://{}/plain:v1", host.registry.host()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = host.lazyrun(&["--rm", "plain:v1", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("lazyctl convert"), "{}", stderr(&out));

    for bad in [
        &["--memory", "lots", "sample:lazy", "true"][..],
        &["-v", "relative:/x", "sample:lazy", "true"],
        &["--name", "bad/name", "sample:lazy", "true"],
        &["-w", "relative", "sample:lazy", "true"],
    ] {
        let out = host.lazyrun(&[&["--rm"], bad].concat());
        assert_eq!(code(&out), 125, "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("lazyrun: "), "{}", stderr(&out));
    }
    let out = host.lazyrun(&["--no-such-option", "sample:lazy"]);
    assert_eq!(code(&out), 2, "clap usage error");

    let out = host.lazyrun(&["--rm", "sample:lazy", "cat", "/etc/motd"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Registry down: a cold image fails clearly, nothing is left mounted.
    host.registry.stop();
    let out = host.lazyrun(&["--rm", "other:lazy", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("other:lazy"), "{}", stderr(&out));
    host.assert_no_container_left();
    // An image run before runs without its registry, from the cache (as
    // docker runs a local image); --pull always insists on the registry.
    let out = host.lazyrun(&["--rm", "sample:lazy", "cat", "/etc/motd"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = host.lazyrun(&[
        "--rm",
        "--pull",
        "always",
        "sample:lazy",
        "cat",
        "/etc/motd",
    ]);
    assert_eq!(code(&out), 125, "{}", stderr(&out));
    assert!(stderr(&out).contains("sample:lazy"), "{}", stderr(&out));
    let out = host.lazyrun(&["--rm", "--pull", "never", "other:lazy", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("never attached"), "{}", stderr(&out));
    host.assert_no_container_left();
    host.daemon.take();
}

#[test]
fn privileged_corrupt_chunk_mid_run_is_eio_and_reported() {
    require_privileges!();
    let host = Host::with_sample();
    let layers = match ControlClient::new(&host.files.socket, Duration::from_secs(30)).call(
        &Request::Attach {
            image: format!("{}/sample:lazy", host.registry.host()),
            pin: false,
            prefetch: None,
            with_config: false,
            pull: PullPolicy::Always,
            credentials: None,
        },
    ) {
        Ok(Response::Layers(l)) => l,
        other => panic!("{other:?}"),
    };
    let blob_path = host.registry.blob_data_path(&layers[0].digest);
    let blob = std::fs::read(&blob_path).unwrap();
    let meta = lazy_format::decode_meta(&blob).unwrap();
    let lazy_format::EntryKind::File { chunks, .. } = &meta.find(b"data/big.bin").unwrap().kind
    else {
        panic!("big.bin is a file")
    };
    // Damage a chunk in the middle of the file: the reader gets its first
    // bytes, then EIO.
    let record = meta.chunks[chunks[chunks.len() / 2] as usize];
    let mut tampered = blob.clone();
    tampered[usize::try_from(record.offset).unwrap()] ^= 0x5a;
    std::fs::write(&blob_path, tampered).unwrap();

    let out = host.lazyrun(&["--rm", "sample:lazy", "cat", "/data/big.bin"]);
    assert_eq!(code(&out), 1, "cat fails");
    assert!(
        stderr(&out).contains("Input/output error"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("failed verification"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.len() < BIG_FILE_LEN && !out.stdout.is_empty());
    host.assert_no_container_left();
}

#[test]
fn privileged_ten_containers_at_once_fetch_each_chunk_once() {
    require_privileges!();
    let host = Host::with_sample();
    // Attach first: the registry then serves chunk data only.
    assert_eq!(
        code(&host.lazyrun(&["--rm", "sample:lazy", "sh", "-c", ":"])),
        0
    );
    let served_before = settled_bytes_served(&host.registry);
    let fetched_before = host.stats().fetched_bytes;
    let children: Vec<_> = (0..10)
        .map(|_| {
            host.command(&["--rm", "sample:lazy", "cat", "/data/big.bin"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let expected = noise(BIG_FILE_LEN, 42);
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            out.stdout == expected,
            "every container reads the right bytes"
        );
    }
    let stats = host.stats();
    assert_eq!(
        stats.fetched_chunks, stats.cache_chunks,
        "each chunk fetched once: {stats:?}"
    );
    assert_eq!(stats.evictions, 0);
    // The registry logs a request after answering it: give the log a moment.
    let fetched = stats.fetched_bytes - fetched_before;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host.registry.blob_bytes_served() - served_before != fetched
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        host.registry.blob_bytes_served() - served_before,
        fetched,
        "registry agrees"
    );
    host.assert_no_container_left();
}

/// Bytes served once the registry's access log has caught up (it logs a
/// request after answering it).
fn settled_bytes_served(registry: &TestRegistry) -> u64 {
    let mut last = registry.blob_bytes_served();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let now = registry.blob_bytes_served();
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the registry log keeps growing");
}

#[test]
fn privileged_runc_and_crun_give_the_builtin_result() {
    require_privileges!();
    let host = Host::with_sample();
    let script = "busybox id; busybox hostname; cat /etc/motd; echo $GREETING; busybox pwd; exit 3";
    let results: Vec<(i32, String)> = ["builtin", "runc", "crun"]
        .iter()
        .map(|runtime| {
            let out = host.lazyrun(&[
                "--rm",
                "--runtime",
                runtime,
                "--hostname",
                "box",
                "-e",
                "GREETING=hello",
                "-w",
                "/data",
                "sample:lazy",
                "sh",
                "-c",
                script,
            ]);
            (code(&out), format!("{}{}", stdout(&out), stderr(&out)))
        })
        .collect();
    assert_eq!(results[0].0, 3, "{}", results[0].1);
    assert!(
        results[0].1.contains("uid=0(root)") && results[0].1.contains("box\n"),
        "{}",
        results[0].1
    );
    assert_eq!(results[1], results[0], "runc");
    assert_eq!(results[2], results[0], "crun");
    host.assert_no_container_left();
}
