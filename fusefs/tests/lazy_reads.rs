//! Laziness, sharing, integrity, faults and concurrency of lazyfsd, with a
//! real registry and a real FUSE mount.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Lazyfsd, Overlay, convert_into_registry, lowerdirs, setup, umoci_unpack};
use lazy_control::protocol::LayerInfo;
use lazy_testkit::images::{BIG_FILE_LEN, noise};
use lazy_testkit::layout::{TestCompression, write_oci_image};
use lazy_testkit::require_privileges;

fn base(layers: &[LayerInfo]) -> PathBuf {
    PathBuf::from(&layers[0].path)
}

/// lazyfsd without guesses (neighbours, libraries): reads fetch exactly
/// what they need (the guesses have tests of their own, fetch_ahead.rs).
const NO_GUESSES: &str = "prefetch_nearby = false\nprefetch_libraries = false\n";

fn expected_big() -> Vec<u8> {
    noise(BIG_FILE_LEN, 42)
}

#[test]
fn privileged_reading_one_file_fetches_only_its_chunks() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), NO_GUESSES);
    let layers = daemon.attach(&s.image);
    let served_before = s.registry.blob_bytes_served();
    let motd = std::fs::read(base(&layers).join("etc/motd")).unwrap();
    assert_eq!(motd, b"welcome to the lazy test image\n");
    let stats = daemon.stats();
    assert_eq!((stats.fetched_chunks, stats.requests), (1, 1), "{stats:?}");
    assert_eq!(
        s.registry.blob_bytes_served() - served_before,
        stats.fetched_bytes,
        "registry agrees"
    );

    // 4 KiB of the 5 MiB file: read-ahead pulls a few chunks, not the file.
    let mut head = vec![0u8; 4096];
    let file = std::fs::File::open(base(&layers).join("data/big.bin")).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0).unwrap();
    assert_eq!(head, expected_big()[..4096]);
    let fetched = daemon.stats().fetched_bytes - stats.fetched_bytes;
    assert!(
        fetched < (BIG_FILE_LEN / 10) as u64,
        "fetched {fetched} of {BIG_FILE_LEN}"
    );
    assert_eq!(
        s.registry.blob_bytes_served() - served_before,
        daemon.stats().fetched_bytes
    );
}

#[test]
fn privileged_second_mount_and_second_image_fetch_nothing_again() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    let first = Overlay::mount(&s.work.path().join("ov1"), &lowerdirs(&layers));
    assert_eq!(
        std::fs::read(first.merged.join("data/big.bin")).unwrap(),
        expected_big()
    );
    let after_first = daemon.stats().fetched_bytes;
    let second = Overlay::mount(&s.work.path().join("ov2"), &lowerdirs(&layers));
    assert_eq!(
        std::fs::read(second.merged.join("data/big.bin")).unwrap(),
        expected_big()
    );

    // Another image whose single layer differs but holds the same file.
    let mut t = lazy_testkit::tarball::TarLayer::new();
    t.dir("./", 0o755)
        .dir("data", 0o755)
        .file(b"data/big.bin", &expected_big(), 0o644)
        .file(b"other", b"x", 0o644);
    let src2 = s.work.path().join("src2");
    write_oci_image(&src2, "v1", &[t.finish()], TestCompression::Gzip).unwrap();
    let image2 = format!("{}/other:lazy", s.registry.host());
    convert_into_registry(&src2, "v1", &image2, &s.registry.host(), 64 * 1024);
    let layers2 = daemon.attach(&image2);
    assert_ne!(layers2[0].digest, layers[0].digest);
    assert_eq!(
        std::fs::read(base(&layers2).join("data/big.bin")).unwrap(),
        expected_big()
    );
    assert_eq!(
        daemon.stats().fetched_bytes,
        after_first,
        "shared chunks are not fetched again"
    );
}

#[test]
fn privileged_corrupt_chunk_gives_eio_a_log_line_and_a_metric() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), NO_GUESSES);
    let layers = daemon.attach(&s.image);
    let blob_path = s.registry.blob_data_path(&layers[0].digest);
    let blob = std::fs::read(&blob_path).unwrap();
    let meta = lazy_format::decode_meta(&blob).unwrap();
    let lazy_format::EntryKind::File { chunks, .. } = &meta.find(b"etc/passwd").unwrap().kind
    else {
        panic!()
    };
    let record = meta.chunks[chunks[0] as usize];
    let mut tampered = blob.clone();
    tampered[usize::try_from(record.offset).unwrap()] ^= 0x5a;
    std::fs::write(&blob_path, tampered).unwrap();

    let err = std::fs::read(base(&layers).join("etc/passwd")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EIO), "{err}");
    let stats = daemon.stats();
    // The kernel may retry a failed page read once.
    assert!((1..=2).contains(&stats.verification_failures), "{stats:?}");
    assert_eq!(stats.cache_chunks, 0, "nothing corrupt enters the cache");
    let log = daemon.log();
    assert!(
        log.contains("etc/passwd") && log.contains(&record.digest.to_string()),
        "log:\n{log}"
    );
    std::fs::write(&blob_path, blob).unwrap();
}

#[test]
fn privileged_registry_down_then_back() {
    require_privileges!();
    let mut s = setup();
    let daemon = Lazyfsd::start(
        &s.work.path().join("d"),
        &s.registry.host(),
        "fetch_timeout_secs = 3",
    );
    let layers = daemon.attach(&s.image);
    let passwd = std::fs::read(base(&layers).join("etc/passwd")).unwrap();
    s.registry.stop();
    assert_eq!(
        std::fs::read(base(&layers).join("etc/passwd")).unwrap(),
        passwd,
        "cached files still read"
    );
    let started = Instant::now();
    let err = std::fs::read(base(&layers).join("data/big.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EIO));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed within the timeout: {:?}",
        started.elapsed()
    );
    s.registry.restart().unwrap();
    assert_eq!(
        std::fs::read(base(&layers).join("data/big.bin")).unwrap(),
        expected_big(),
        "works again, no remount"
    );
}

#[test]
fn privileged_kill_9_under_parallel_readers_then_restart() {
    require_privileges!();
    let s = setup();
    let mut daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    let root = base(&layers);
    let readers: Vec<_> = (0..16)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                for k in 0..20 {
                    let _ = std::fs::read(root.join(if (i + k) % 2 == 0 {
                        "data/big.bin"
                    } else {
                        "bin/busybox"
                    }));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();
    for r in readers {
        r.join().unwrap();
    }
    daemon.spawn();
    let verify = daemon
        .client()
        .call(&lazy_control::protocol::Request::Verify)
        .unwrap();
    assert!(
        matches!(
            verify,
            lazy_control::protocol::Response::Removed { removed: 0, .. }
        ),
        "every cached chunk verifies: {verify:?}"
    );
    let layers = daemon.attach(&s.image);
    assert_eq!(
        std::fs::read(base(&layers).join("data/big.bin")).unwrap(),
        expected_big()
    );
    assert_eq!(
        std::fs::read(base(&layers).join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
}

#[test]
fn privileged_parallel_readers_get_correct_bytes_and_each_chunk_once() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    let reference = s.work.path().join("reference");
    umoci_unpack(&s.src, "v1", &reference);
    let files: Vec<PathBuf> = [
        "data/big.bin",
        "bin/busybox",
        "data/dup-a.txt",
        "data/dup-b.txt",
        "etc/passwd",
        "srv/new",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let lowers = lowerdirs(&layers);
    let overlay = Overlay::mount(&s.work.path().join("ov"), &lowers);
    let readers: Vec<_> = (0..16)
        .map(|i| {
            let (merged, files, reference) =
                (overlay.merged.clone(), files.clone(), reference.clone());
            std::thread::spawn(move || {
                for k in 0..files.len() {
                    let f = &files[(i + k) % files.len()];
                    assert_eq!(
                        std::fs::read(merged.join(f)).unwrap(),
                        std::fs::read(reference.join(f)).unwrap(),
                        "{f:?}"
                    );
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    let stats = daemon.stats();
    assert_eq!(
        stats.fetched_chunks, stats.cache_chunks,
        "no chunk fetched twice: {stats:?}"
    );
}

#[test]
fn privileged_small_quota_holds_and_evicted_files_read_again() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(
        &s.work.path().join("d"),
        &s.registry.host(),
        "quota = \"1M\"\nhot_set = \"0\"",
    );
    let layers = daemon.attach(&s.image);
    let root = base(&layers);
    // A slow reader keeps its file open while others overflow the quota.
    let slow = {
        let root = root.clone();
        std::thread::spawn(move || {
            let file = std::fs::File::open(root.join("data/big.bin")).unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            let mut out = Vec::new();
            let mut offset = 0u64;
            loop {
                let n = std::os::unix::fs::FileExt::read_at(&file, &mut buf, offset).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
                offset += n as u64;
                std::thread::sleep(Duration::from_millis(5));
            }
            out
        })
    };
    for f in ["bin/busybox", "srv/new", "data/dup-a.txt"] {
        let _ = std::fs::read(root.join(f))
            .or_else(|_| std::fs::read(PathBuf::from(&layers[1].path).join(f)))
            .unwrap();
    }
    assert_eq!(
        slow.join().unwrap(),
        expected_big(),
        "a reader in progress is never broken by eviction"
    );
    let stats = daemon.stats();
    assert!(stats.cache_bytes <= 1 << 20, "within quota: {stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    assert_eq!(
        std::fs::read(root.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
}

#[test]
fn privileged_prefetch_all_fetches_the_whole_image_in_the_background() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), "");
    let layers = daemon.attach_with(&s.image, lazy_control::protocol::PrefetchMode::All);
    let distinct: std::collections::HashSet<lazy_format::ChunkDigest> = layers
        .iter()
        .flat_map(|l| {
            let blob = std::fs::read(s.registry.blob_data_path(&l.digest)).unwrap();
            lazy_format::decode_meta(&blob)
                .unwrap()
                .chunks
                .into_iter()
                .map(|c| c.digest)
        })
        .collect();
    let total = distinct.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.stats().cache_chunks < total {
        assert!(
            Instant::now() < deadline,
            "prefetch incomplete: {:?} of {total}",
            daemon.stats()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let fetched = daemon.stats().fetched_bytes;
    assert_eq!(
        std::fs::read(base(&layers).join("data/big.bin")).unwrap(),
        expected_big()
    );
    assert_eq!(
        daemon.stats().fetched_bytes,
        fetched,
        "everything was already cached"
    );
}
