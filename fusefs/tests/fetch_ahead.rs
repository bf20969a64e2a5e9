//! Fetching ahead without a record, with a real registry and a real FUSE
//! mount: an executable's shared libraries when its head is read, the rest
//! of a file of up to 2 MiB, and a small file's small neighbours. Each
//! guess is checked by reading what was guessed afterwards: it must fetch
//! nothing more. Each is also run with the guess switched off, where the
//! same reads must fetch.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Lazyfsd, convert_into_registry};
use lazy_testkit::images::noise;
use lazy_testkit::layout::{TestCompression, write_oci_image};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;
use lazy_testkit::tarball::TarLayer;

const CHUNK: u32 = 64 * 1024;
const MULTIARCH: &str = "usr/lib/x86_64-linux-gnu";
/// The host's `ls` and what it loads, by their names in `ld.so.cache`.
const LIBRARIES: [&str; 4] = [
    "libselinux.so.1",
    "libc.so.6",
    "libpcre2-8.so.0",
    "ld-linux-x86-64.so.2",
];

/// Reads the first 4 KiB of `path` (as a loader reads a header).
fn read_head(path: &Path) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut head = [0u8; 4096];
    std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap();
}

/// Waits until lazyfsd has made no new request for half a second (its
/// background fetches are done); returns the request count.
fn settled_requests(daemon: &Lazyfsd) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = daemon.stats().requests;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = daemon.stats().requests;
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// A two-layer image with the host's `ls`: the libraries, with merged-usr
/// links (`/lib` -> `usr/lib`), in the lower layer; `ls` and the host's
/// `ld.so.cache` in the upper one, so that lookups cross layers and links.
fn ls_image(work: &Path, registry: &TestRegistry) -> String {
    let mut lower = TarLayer::new();
    lower
        .dir("./", 0o755)
        .symlink(b"lib", b"usr/lib")
        .symlink(b"lib64", b"usr/lib64")
        .dir("usr", 0o755)
        .dir("usr/lib", 0o755)
        .dir(MULTIARCH, 0o755)
        .dir("usr/lib64", 0o755)
        .symlink(
            b"usr/lib64/ld-linux-x86-64.so.2",
            format!("/{MULTIARCH}/ld-linux-x86-64.so.2").as_bytes(),
        );
    for name in LIBRARIES {
        let host = std::fs::canonicalize(Path::new("/lib/x86_64-linux-gnu").join(name)).unwrap();
        let real = host.file_name().unwrap().to_str().unwrap().to_owned();
        let data = std::fs::read(&host).unwrap();
        lower.file(format!("{MULTIARCH}/{real}").as_bytes(), &data, 0o755);
        if real != name {
            lower.symlink(format!("{MULTIARCH}/{name}").as_bytes(), real.as_bytes());
        }
    }
    let mut upper = TarLayer::new();
    upper
        .dir("./", 0o755)
        .dir("etc", 0o755)
        .file(
            b"etc/ld.so.cache",
            &std::fs::read("/etc/ld.so.cache").unwrap(),
            0o644,
        )
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file(b"usr/bin/ls", &std::fs::read("/usr/bin/ls").unwrap(), 0o755);
    let src = work.join("ls-src");
    write_oci_image(
        &src,
        "v1",
        &[lower.finish(), upper.finish()],
        TestCompression::Gzip,
    )
    .unwrap();
    let image = format!("{}/ls:lazy", registry.host());
    convert_into_registry(&src, "v1", &image, &registry.host(), CHUNK);
    image
}

/// Where each library of `ls` lies in the lower layer (links resolved).
fn library_paths(lower: &Path) -> Vec<PathBuf> {
    LIBRARIES
        .iter()
        .map(|name| std::fs::canonicalize(lower.join(MULTIARCH).join(name)).unwrap())
        .collect()
}

/// Reads the head of `ls`, then of each library: returns the requests the
/// libraries' heads made.
fn requests_for_library_heads(libraries: bool) -> u64 {
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let image = ls_image(work.path(), &registry);
    let config = format!("prefetch_libraries = {libraries}\nprefetch_nearby = false\n");
    let daemon = Lazyfsd::start(&work.path().join("d"), &registry.host(), &config);
    let layers = daemon.attach(&image);
    let (lower, upper) = (
        PathBuf::from(&layers[0].path),
        PathBuf::from(&layers[1].path),
    );
    read_head(&upper.join("usr/bin/ls"));
    let before = settled_requests(&daemon);
    for library in library_paths(&lower) {
        read_head(&library);
    }
    daemon.stats().requests - before
}

#[test]
fn privileged_reading_an_executables_head_fetches_its_libraries_ahead() {
    require_privileges!();
    assert_eq!(
        requests_for_library_heads(true),
        0,
        "the libraries were fetched when ls's head was read"
    );
    assert!(
        requests_for_library_heads(false) >= LIBRARIES.len() as u64,
        "without the guess each library's head is a fetch of its own"
    );
}

/// A layer `pkg/` of 12 small files (2 KiB each, noise: stored as is), a
/// 1.5 MiB file and a 3 MiB file.
fn package_image(work: &Path, registry: &TestRegistry) -> String {
    let mut layer = TarLayer::new();
    layer.dir("./", 0o755).dir("pkg", 0o755);
    for n in 0..12u64 {
        layer.file(format!("pkg/a{n:02}").as_bytes(), &noise(2048, n), 0o644);
    }
    layer
        .file(b"pkg/mid.bin", &noise(1536 << 10, 100), 0o644)
        .file(b"pkg/big.bin", &noise(3 << 20, 101), 0o644);
    let src = work.join("pkg-src");
    write_oci_image(&src, "v1", &[layer.finish()], TestCompression::Gzip).unwrap();
    let image = format!("{}/pkg:lazy", registry.host());
    convert_into_registry(&src, "v1", &image, &registry.host(), CHUNK);
    image
}

/// Requests made by reading (after a first read of `first`'s head and the
/// background fetches it started) all of each of `then`.
fn requests_after(nearby: bool, first: &str, then: &[&str]) -> u64 {
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let image = package_image(work.path(), &registry);
    let config = format!("prefetch_libraries = false\nprefetch_nearby = {nearby}\n");
    let daemon = Lazyfsd::start(&work.path().join("d"), &registry.host(), &config);
    let root = PathBuf::from(&daemon.attach(&image)[0].path);
    read_head(&root.join(first));
    let before = settled_requests(&daemon);
    for path in then {
        std::fs::read(root.join(path)).unwrap();
    }
    daemon.stats().requests - before
}

#[test]
fn privileged_a_small_files_small_neighbours_come_along() {
    require_privileges!();
    let others: Vec<String> = (0..12).map(|n| format!("pkg/a{n:02}")).collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    assert_eq!(requests_after(true, "pkg/a05", &others), 0);
    assert!(requests_after(false, "pkg/a05", &others) > 0);
}

#[test]
fn privileged_a_file_up_to_2_mib_comes_whole_and_a_bigger_one_does_not() {
    require_privileges!();
    assert_eq!(requests_after(true, "pkg/mid.bin", &["pkg/mid.bin"]), 0);
    assert!(requests_after(false, "pkg/mid.bin", &["pkg/mid.bin"]) > 0);
    assert!(requests_after(true, "pkg/big.bin", &["pkg/big.bin"]) > 0);
}
