//! FUSE passthrough: cached files are read by the kernel from the cache
//! directly (one-chunk files from their chunk, bigger ones from a copy the
//! cache assembles), through overlayfs too, and mixing cached and
//! passthrough opens of one inode never fails.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use common::{Lazyfsd, Overlay, drop_pages, lowerdirs, setup};
use lazy_control::protocol::{Request, Response, StatsInfo};
use lazy_testkit::images::{BIG_FILE_LEN, noise};
use lazy_testkit::require_privileges;

const MOTD: &[u8] = b"welcome to the lazy test image\n";

fn read_all(file: &mut File) -> Vec<u8> {
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    data
}

/// Reads `path` after dropping its pages, checking it holds `expected`;
/// returns the daemon's cache hits that the read caused.
fn hits_of_a_cold_page_read(daemon: &Lazyfsd, path: &Path, expected: &[u8]) -> u64 {
    drop_pages(path);
    let before = daemon.stats().hits;
    assert!(std::fs::read(path).unwrap() == expected, "{path:?} differs");
    daemon.stats().hits - before
}

#[test]
fn privileged_passthrough_reads_cached_files_without_the_daemon() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(
        &s.work.path().join("d"),
        &s.registry.host(),
        // No guesses: the first read fetches exactly its chunk.
        "prefetch_nearby = false\nprefetch_libraries = false\n",
    );
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
    assert_eq!(hits_of_a_cold_page_read(&daemon, &motd, MOTD), 0);
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
    assert!(hits_of_a_cold_page_read(&daemon, &motd, MOTD) > 0);
}

#[test]
fn privileged_big_files_are_passthrough_once_assembled() {
    require_privileges!();
    let s = setup();
    let daemon = Lazyfsd::start(&s.work.path().join("d"), &s.registry.host(), "");
    let layers = daemon.attach(&s.image);
    let overlay = Overlay::mount(&s.work.path().join("ov"), &lowerdirs(&layers));
    let big = overlay.merged.join("data/big.bin");
    let expected = noise(BIG_FILE_LEN, 42);

    // Read through lazyfsd (64K chunks); closing it queues the copy.
    assert!(std::fs::read(&big).unwrap() == expected);
    let stats = wait_for_assembly(&daemon);
    assert_eq!((stats.copies, stats.copy_bytes), (1, BIG_FILE_LEN as u64));
    assert_eq!(
        stats.cache_bytes,
        2 * BIG_FILE_LEN as u64,
        "the chunks and the copy are both counted"
    );

    // Now the kernel reads the copy: no daemon reads, the right bytes.
    assert_eq!(hits_of_a_cold_page_read(&daemon, &big, &expected), 0);
    let Response::Removed { chunks, removed } = daemon.client().call(&Request::Verify).unwrap()
    else {
        panic!("verify answered otherwise")
    };
    assert_eq!(removed, 0, "the copy verifies like a chunk");
    assert_eq!(chunks, stats.cache_chunks + 1);
}

/// Waits (bounded) until lazyfsd has no file queued for assembly.
fn wait_for_assembly(daemon: &Lazyfsd) -> StatsInfo {
    for _ in 0..300 {
        let stats = daemon.stats();
        if stats.assembly_queue == 0 && stats.copies > 0 {
            return stats;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no file assembled within 30 s: {:?}", daemon.stats());
}
