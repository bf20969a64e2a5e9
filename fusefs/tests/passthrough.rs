//! FUSE passthrough: cached single-chunk files are read by the kernel from
//! the cache directly, through overlayfs too, and mixing cached and
//! passthrough opens of one inode never fails.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use common::{Lazyfsd, Overlay, lowerdirs, setup};
use lazy_testkit::require_privileges;
use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

const MOTD: &[u8] = b"welcome to the lazy test image\n";

/// Drops the file's pages from the page cache, so the next read must come
/// from its backing file or from lazyfsd.
fn drop_pages(path: &Path) {
    let file = File::open(path).unwrap();
    posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
}

fn read_all(file: &mut File) -> Vec<u8> {
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    data
}

/// Reads `path` after dropping its pages; returns the daemon's cache hits
/// that the read caused.
fn hits_of_a_cold_page_read(daemon: &Lazyfsd, path: &Path) -> u64 {
    drop_pages(path);
    let before = daemon.stats().hits;
    assert_eq!(std::fs::read(path).unwrap(), MOTD);
    daemon.stats().hits - before
}

#[test]
fn privileged_passthrough_reads_cached_files_without_the_daemon() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    let overlay = Overlay::mount(&s.work.path().join("ov"), &lowerdirs(&layers));
    let motd = overlay.merged.join("etc/motd");

    // Not cached yet: the first handle reads through lazyfsd and stays
    // open while a second one is opened, after the chunk got cached. The
    // kernel refuses a passthrough open of an inode open in cached mode
    // (EIO): the second handle must be a cached one too.
    let mut first = File::open(&motd).unwrap();
    assert_eq!(read_all(&mut first), MOTD);
    assert_eq!(daemon.stats().fetched_chunks, 1);
    let mut second = File::open(&motd).unwrap();
    assert_eq!(read_all(&mut second), MOTD);
    drop((first, second));

    // All handles closed: the next open is passthrough, its reads never
    // reach the daemon, and the content is right.
    assert_eq!(hits_of_a_cold_page_read(&daemon, &motd), 0);
    let mut a = File::open(&motd).unwrap();
    let mut b = File::open(&motd).unwrap();
    assert_eq!(
        (read_all(&mut a), read_all(&mut b)),
        (MOTD.to_vec(), MOTD.to_vec())
    );
    drop((a, b));

    // Copy-up reads the lower file through passthrough.
    let mut out = std::fs::OpenOptions::new()
        .append(true)
        .open(&motd)
        .unwrap();
    out.write_all(b"more\n").unwrap();
    drop(out);
    assert_eq!(std::fs::read(&motd).unwrap(), [MOTD, b"more\n"].concat());
    assert_eq!(daemon.stats().fetched_chunks, 1, "nothing fetched twice");
}

#[test]
fn privileged_without_passthrough_cold_pages_are_read_by_the_daemon() {
    // The control for the test above: the same probe does see daemon reads.
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(
        &s.work.path().join("d"),
        &s.registry.host(),
        "passthrough = false",
    );
    let layers = daemon.attach(&s.image);
    let motd = Path::new(&layers[0].path).join("etc/motd");
    assert_eq!(std::fs::read(&motd).unwrap(), MOTD);
    assert!(hits_of_a_cold_page_read(&daemon, &motd) > 0);
}
