//! `lazyctl cache images | pin | unpin | gc` against a real lazyfsd: pinned
//! images survive gc and quota pressure while unpinned ones are evicted,
//! and a pinned image runs with every server gone, across a daemon crash.

mod lazyrun_host;

use std::path::Path;

use lazy_control::protocol::ImageUsage;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::images::noise;
use lazy_testkit::layout::{TestCompression, write_oci_image};
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

/// Reads every regular file under `dir`.
fn read_all(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            read_all(&entry.path());
        } else if kind.is_file() {
            std::fs::read(entry.path()).unwrap();
        }
    }
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
    let (sample, other) = (format!("{reg}/sample:lazy"), format!("{reg}/noise:lazy"));

    // A quota that holds the sample image and 1 MiB more, not both images.
    let sample_bytes = {
        lazyctl_ok(&host, &["attach", &sample]);
        usage(&host, &sample).bytes
    };
    let quota = sample_bytes + (1 << 20);
    host.daemon = None;
    let files = DaemonFiles::write(
        &host.work.path().join("d"),
        &reg,
        &format!("quota = \"{quota}\"\npassthrough = false\nprefetch = \"none\""),
    );
    host.daemon = Some(DaemonProcess::start(&sibling("lazyfsd"), files));

    let pinned = lazyctl_ok(&host, &["cache", "pin", &sample]);
    assert!(pinned.contains("pinned"), "{pinned}");
    let u = usage(&host, &sample);
    assert!(
        u.pinned && u.cached_bytes == u.bytes,
        "pin fetches it all: {u:?}"
    );
    let table = lazyctl_ok(&host, &["cache", "images"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&sample) && l.ends_with("yes")),
        "{table}"
    );

    // Reading all of the other image pushes against the quota: only its
    // own chunks make room.
    let layers = lazyctl_ok(&host, &["attach", &other]);
    read_all(Path::new(layers.lines().next().unwrap()));
    let stats = host.stats();
    assert!(stats.cache_bytes <= quota, "quota holds: {stats:?}");
    assert!(
        stats.evictions > 0,
        "the other image was evicted: {stats:?}"
    );
    let u = usage(&host, &sample);
    assert_eq!(u.cached_bytes, u.bytes, "the pinned image stays whole");
    let o = usage(&host, &other);
    assert!(!o.pinned && o.cached_bytes < o.bytes, "{o:?}");

    lazyctl_ok(&host, &["cache", "gc"]);
    assert_eq!(usage(&host, &sample).cached_bytes, sample_bytes);
    assert_eq!(usage(&host, &other).cached_bytes, 0);

    let out = lazyctl_ok(&host, &["cache", "unpin", &sample]);
    assert!(out.contains("unpinned"), "{out}");
    lazyctl_ok(&host, &["cache", "gc"]);
    let u = usage(&host, &sample);
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
    let md5 = hex_md5(&expected);
    assert_eq!(
        stdout(&out),
        format!("welcome to the lazy test image\n{md5}\n")
    );
    let stats = host.stats();
    assert_eq!(stats.requests, 0, "nothing was fetched: {stats:?}");
}

/// The md5 of `data` as `md5sum` prints it (computed by md5sum itself).
fn hex_md5(data: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}
