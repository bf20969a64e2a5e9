//! A full cache disk (a small tmpfs as cache dir): reads stay correct, and
//! nothing half-written is left behind.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Lazyfsd, Overlay, drop_pages, lowerdirs, setup};
use lazy_testkit::images::{BIG_FILE_LEN, noise};
use lazy_testkit::require_privileges;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A tmpfs of a given size, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        Self(dir.to_owned())
    }

    fn free_bytes(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.0).unwrap();
        st.blocks_available() * st.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

#[test]
fn privileged_full_cache_disk_still_serves_verified_reads() {
    require_privileges!();
    let s = setup();
    let dir = s.work.path().join("d");
    // Room for the index and metadata, not for the 5 MiB file's chunks.
    let disk = Tmpfs::mount(&dir.join("cache"), "3m");
    let daemon = Lazyfsd::start(&dir, &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    let big = Path::new(&layers[0].path).join("data/big.bin");
    for _ in 0..2 {
        drop_pages(&big);
        assert!(std::fs::read(&big).unwrap() == noise(BIG_FILE_LEN, 42));
    }
    let stats = daemon.stats();
    assert!(stats.cache_bytes < BIG_FILE_LEN as u64, "{stats:?}");
    assert!(
        stats.fetched_bytes > BIG_FILE_LEN as u64,
        "what did not fit is fetched again: {stats:?}"
    );
    assert!(
        daemon.log().contains("No space left on device"),
        "the log says why: {}",
        daemon.log()
    );
    drop(daemon);
    drop(disk);
}

#[test]
fn privileged_a_copy_that_does_not_fit_is_dropped_whole() {
    require_privileges!();
    let s = setup();
    let dir = s.work.path().join("d");
    // Room for the chunks of the 5 MiB file and the index (rocksdb
    // preallocates some MiB), not also for the file's copy.
    let disk = Tmpfs::mount(&dir.join("cache"), "12m");
    let daemon = Lazyfsd::start(&dir, &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    let overlay = Overlay::mount(&s.work.path().join("ov"), &lowerdirs(&layers));
    let big = overlay.merged.join("data/big.bin");
    assert!(std::fs::read(&big).unwrap() == noise(BIG_FILE_LEN, 42));

    // Closing the file queued its copy; wait until it failed.
    let mut stats = daemon.stats();
    for _ in 0..100 {
        if daemon.log().contains("assembling a file") && stats.assembly_queue == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        stats = daemon.stats();
    }
    let log = daemon.log();
    let failure = log.lines().find(|l| l.contains("assembling a file"));
    assert!(
        failure.is_some_and(|l| l.contains("No space left on device")),
        "the copy failed for want of space: {log}"
    );
    assert_eq!(
        stats.cache_bytes, BIG_FILE_LEN as u64,
        "every chunk was stored: {stats:?}"
    );
    assert_eq!((stats.copies, stats.assembly_queue), (0, 0), "{stats:?}");
    let partial = dir.join("cache/chunks/partial");
    assert_eq!(
        std::fs::read_dir(&partial).map_or(0, Iterator::count),
        0,
        "no partial copy left"
    );
    // Of 12 MiB the chunks and the index hold about 10; a partial copy
    // left behind would hold the rest.
    assert!(
        disk.free_bytes() > 1 << 20,
        "the space came back: {} bytes free",
        disk.free_bytes()
    );
    drop_pages(&big);
    assert!(std::fs::read(&big).unwrap() == noise(BIG_FILE_LEN, 42));
    drop(overlay);
    drop(daemon);
    drop(disk);
}
