//! `lazyctl cache images | pin | unpin | gc` against a real lazyfsd: pinned
//! images survive gc and the quota pressure of concurrent containers while
//! unpinned ones are evicted, and a pinned image runs with every server
//! gone, across a daemon crash.

mod lazyrun_host;

use std::path::Path;

use lazy_control::protocol::ImageUsage;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::noise;
use lazy_testkit::layout::{TestCompression, write_oci_image};
use lazy_testkit::process::md5_hex;
use lazy_testkit::require_privileges;
use lazy_testkit::tarball::TarLayer;
use lazyrun_host::{Host, code, sibling, stderr, stdout};

/// `lazyctl cache images --json` on `host`'s daemon, by image.
fn usage(host: &Host, image: &str) -> ImageUsage {
    let out = host.lazyctl(&["cache", "images", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all: Vec<ImageUsage> = serde_json::from_str(&stdout(&out)).unwrap();
    all.into_iter()
        .find(|u| u.image == image)
        .unwrap_or_else(|| panic!("{image} not listed"))
}

fn lazyctl_ok(host: &Host, args: &[&str]) -> String {
    let out = host.lazyctl(args);
    assert!(out.status.success(), "lazyctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// An image of one layer: 6 MiB of noise in three files, nothing shared
/// with the sample image.
fn noise_image(dir: &Path) {
    let mut layer = TarLayer::new();
    layer.dir("big", 0o755);
    for (i, name) in ["big/a.bin", "big/b.bin", "big/c.bin"].iter().enumerate() {
        layer.file(name.as_bytes(), &noise(2 << 20, 100 + i as u64), 0o644);
    }
    write_oci_image(dir, "v1", &[layer.finish()], TestCompression::Gzip).unwrap();
}

#[test]
fn privileged_pinned_images_survive_gc_and_quota_pressure_unpinned_ones_go_first() {
    require_privileges!();
    let mut host = Host::with_sample();
    let noise_src = host.work.path().join("noise");
    noise_image(&noise_src);
    host.convert(&noise_src, "v1", "noise:lazy");
    let reg = host.registry.host();
    // `pinned` is pinned; containers of `running` (it has a shell) press
    // against the quota meanwhile.
    let (pinned, running) = (format!("{reg}/noise:lazy"), format!("{reg}/sample:lazy"));

    // A quota that holds the pinned image and 1 MiB more, not both images.
    let pinned_bytes = {
        lazyctl_ok(&host, &["attach", &pinned]);
        usage(&host, &pinned).bytes
    };
    let quota = pinned_bytes + (1 << 20);
    host.daemon = None;
    let files = DaemonFiles::write(
        &host.work.path().join("d"),
        &reg,
        &format!("quota = \"{quota}\"\npassthrough = false\nprefetch = \"none\""),
    );
    host.daemon = Some(DaemonProcess::start(&sibling("lazyfsd"), files));

    let out = lazyctl_ok(&host, &["cache", "pin", &pinned]);
    assert!(out.contains("pinned"), "{out}");
    let u = usage(&host, &pinned);
    assert!(
        u.pinned && u.cached_bytes == u.bytes,
        "pin fetches it all: {u:?}"
    );
    let table = lazyctl_ok(&host, &["cache", "images"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&pinned) && l.ends_with("yes")),
        "{table}"
    );

    // Six containers at once read all of big.bin (5 MiB) and more: the
    // cache stays within its quota, and only their own chunks make room.
    let expected = format!(
        "{}\n",
        md5_hex(&noise(lazy_testkit::images::BIG_FILE_LEN, 42))
    );
    let containers: Vec<_> = (0..6)
        .map(|_| {
            host.command(&[
                "--rm",
                &running,
                "sh",
                "-c",
                "md5sum /data/big.bin | cut -c1-32; cat /bin/busybox >/dev/null",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for container in containers {
        let out = container.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(stdout(&out), expected, "a container read big.bin whole");
    }
    let stats = host.stats();
    assert!(stats.cache_bytes <= quota, "quota holds: {stats:?}");
    assert!(
        stats.evictions > 0,
        "the running image was evicted: {stats:?}"
    );
    let u = usage(&host, &pinned);
    assert_eq!(u.cached_bytes, u.bytes, "the pinned image stays whole");
    let o = usage(&host, &running);
    assert!(!o.pinned && o.cached_bytes < o.bytes, "{o:?}");

    // Pinning `running` too could not fit: refused before any fetch.
    let fetched = host.stats().fetched_bytes;
    let out = host.lazyctl(&["cache", "pin", &running]);
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be pinned") && stderr(&out).contains("quota"),
        "{}",
        stderr(&out)
    );
    assert_eq!(host.stats().fetched_bytes, fetched, "nothing fetched");
    assert!(!usage(&host, &running).pinned);

    lazyctl_ok(&host, &["cache", "gc"]);
    assert_eq!(usage(&host, &pinned).cached_bytes, pinned_bytes);
    assert_eq!(usage(&host, &running).cached_bytes, 0);

    let out = lazyctl_ok(&host, &["cache", "unpin", &pinned]);
    assert!(out.contains("unpinned"), "{out}");
    lazyctl_ok(&host, &["cache", "gc"]);
    let u = usage(&host, &pinned);
    assert!(!u.pinned && u.cached_bytes == 0, "{u:?}");

    let out = host.lazyctl(&["cache", "pin", &format!("{reg}/never:attached")]);
    assert_eq!(code(&out), 66, "{}", stderr(&out));
    assert!(stderr(&out).contains("is not attached"), "{}", stderr(&out));
}

#[test]
fn privileged_a_pinned_image_runs_offline_across_a_daemon_crash() {
    require_privileges!();
    let mut host = Host::with_sample();
    let image = format!("{}/sample:lazy", host.registry.host());
    lazyctl_ok(&host, &["attach", &image]);
    lazyctl_ok(&host, &["cache", "pin", &image]);

    host.registry.stop();
    let daemon = host.daemon.as_mut().unwrap();
    daemon.kill9();
    daemon.spawn();
    let out = host.lazyrun(&[
        "--rm",
        "--net",
        "none",
        "sample:lazy",
        "sh",
        "-c",
        "cat /etc/motd; md5sum /data/big.bin | cut -c1-32",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected = noise(lazy_testkit::images::BIG_FILE_LEN, 42);
    let md5 = md5_hex(&expected);
    assert_eq!(
        stdout(&out),
        format!("welcome to the lazy test image\n{md5}\n")
    );
    let stats = host.stats();
    assert_eq!(stats.requests, 0, "nothing was fetched: {stats:?}");
}
