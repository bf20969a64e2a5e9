//! The HTTP content-addressed store: `lazyctl publish` writes a lazy image
//! as static files, a real nginx serves them, real squid proxies cache
//! them, and real lazyfsd daemons read images from the store through the
//! proxies — a whole site in network namespaces —, failing over when a
//! proxy dies. Registry range reads go through the proxies too.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{lazyctl_err, lazyctl_fails_with, lazyctl_ok, skopeo_push, write_sample};
use lazy_control::ErrorKind;
use lazy_testkit::daemon::{DaemonFiles, DaemonProcess};
use lazy_testkit::http::{Place, TestNginx, TestSquid};
use lazy_testkit::netns::Netns;
use lazy_testkit::registry::{TestRegistry, free_port};
use lazy_testkit::require_privileges;
use lazy_testkit::tree::summarize;

const STORE: &str = "cas.test";

fn lazyfsd_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lazyctl")).with_file_name("lazyfsd")
}

/// The sample image converted into `registry` as `sample:lazy` with small
/// chunks (many objects); returns the image.
fn converted_sample(work: &Path, registry: &TestRegistry) -> String {
    let host = registry.host();
    let src = write_sample(work);
    skopeo_push(&src, "v1", &format!("{host}/sample:v1"));
    let image = format!("{host}/sample:lazy");
    let source = format!("{host}/sample:v1");
    lazyctl_ok(&[
        "convert",
        "--insecure",
        &host,
        "--chunk-size",
        "64K",
        &source,
        &image,
    ]);
    image
}

/// The sample image converted into `registry` and published into
/// `<work>/store`.
fn published_sample(work: &Path, registry: &TestRegistry) -> PathBuf {
    let (host, image) = (registry.host(), converted_sample(work, registry));
    let store = work.join("store");
    let out = lazyctl_ok(&[
        "publish",
        "--insecure",
        &host,
        &image,
        store.to_str().unwrap(),
    ]);
    assert!(
        out.contains("published") && out.contains("sample:lazy"),
        "{out}"
    );
    store
}

/// A published sample store whose registry is gone: (work dir, registry
/// host, store).
fn store_only() -> (tempfile::TempDir, String, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let mut registry = TestRegistry::start().unwrap();
    let store = published_sample(work.path(), &registry);
    registry.stop();
    (work, registry.host(), store)
}

/// A lazyfsd that fetches only on demand, through `proxies`, with the
/// store at `store_url`.
/// A failed proxy's rest: long enough to restart squid within it on a
/// loaded machine.
const BACKOFF: Duration = Duration::from_secs(10);

fn start_node(
    dir: &Path,
    registry: &str,
    proxies: &[String],
    store_url: &str,
) -> (DaemonProcess, String) {
    let extra = format!(
        "prefetch = \"none\"\nprefetch_nearby = false\nprefetch_libraries = false\n\
         [proxy]\nservers = {proxies:?}\nbackoff_secs = {}\n\
         [stores.\"{STORE}\"]\nurls = [{store_url:?}]\n",
        BACKOFF.as_secs()
    );
    let files = DaemonFiles::write(dir, registry, &extra);
    let socket = files.socket.to_str().unwrap().to_owned();
    (DaemonProcess::start(&lazyfsd_binary(), files), socket)
}

/// Attaches `image` and returns its layer directories, bottom first.
fn attach(socket: &str, image: &str) -> Vec<PathBuf> {
    let out = lazyctl_ok(&["attach", "--socket", socket, image]);
    out.lines().map(PathBuf::from).collect()
}

type Summary = BTreeMap<Vec<u8>, lazy_testkit::tree::EntrySummary>;

fn summaries(layers: &[PathBuf]) -> Vec<Summary> {
    layers.iter().map(|l| summarize(l).unwrap()).collect()
}

/// A lazyfsd in network namespace `netns` (its mounts visible here), with
/// `proxy` as its only proxy and the store at `store_url`.
fn start_node_in(
    netns: &Netns,
    dir: &Path,
    proxy: &str,
    store_url: &str,
) -> (DaemonProcess, String) {
    let extra = format!(
        "prefetch = \"none\"\n[proxy]\nservers = [{proxy:?}]\n[stores.\"{STORE}\"]\nurls = [{store_url:?}]\n"
    );
    let files = DaemonFiles::write(dir, "127.0.0.1:9", &extra);
    let socket = files.socket.to_str().unwrap().to_owned();
    (
        DaemonProcess::start_in_netns(&lazyfsd_binary(), files, netns.path()),
        socket,
    )
}

/// A site: the store's origin (nginx) in a "remote" namespace, a site proxy
/// (squid) in a "site" namespace linked to it, three "node" namespaces
/// linked only to the site (which does not forward: the proxy is the only
/// way out), each with its own lazyfsd and cache. All nodes start the same
/// image at once.
#[test]
fn privileged_nodes_read_a_store_through_a_site_proxy_and_the_origin_serves_each_object_once() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let mut registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let store = published_sample(work.path(), &registry);

    // What the image holds, read from the registry by a node of its own.
    let expected = {
        let (_daemon, socket) =
            start_node(&work.path().join("ref"), &host, &[], "http://127.0.0.1:9");
        summaries(&attach(&socket, &format!("{host}/sample:lazy")))
    };
    assert_eq!(expected.len(), 2);
    assert!(expected[0].contains_key(b"data/big.bin".as_slice()));
    registry.stop();

    let remote = Netns::create("remote").unwrap();
    let site = Netns::create("site").unwrap();
    site.link("10.79.100.1/24", &remote, "10.79.100.2/24")
        .unwrap();
    let place = Place::Netns {
        netns: &remote,
        addr: "10.79.100.2",
        port: 80,
    };
    let nginx = TestNginx::start_at(&store, &place).unwrap();
    let place = Place::Netns {
        netns: &site,
        addr: "10.79.100.1",
        port: 3128,
    };
    let squid = TestSquid::start_at(&place, "10.79.0.0/16").unwrap();
    let nodes: Vec<Netns> = (1..=3)
        .map(|k| {
            let node = Netns::create("node").unwrap();
            site.link(
                &format!("10.79.{k}.1/24"),
                &node,
                &format!("10.79.{k}.2/24"),
            )
            .unwrap();
            assert!(
                node.can_connect(&format!("10.79.{k}.1"), 3128),
                "node {k} reaches the proxy"
            );
            assert!(
                !node.can_connect("10.79.100.2", 80),
                "node {k} must not reach the origin directly"
            );
            node
        })
        .collect();

    let daemons: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let proxy = format!("http://10.79.{}.1:3128", i + 1);
            start_node_in(
                node,
                &work.path().join(format!("node{i}")),
                &proxy,
                &nginx.url(),
            )
        })
        .collect();
    let image = format!("{STORE}/sample:lazy");
    let reads: Vec<_> = daemons
        .iter()
        .map(|(_, socket)| {
            let (socket, image) = (socket.clone(), image.clone());
            std::thread::spawn(move || summaries(&attach(&socket, &image)))
        })
        .collect();
    for (i, read) in reads.into_iter().enumerate() {
        assert_eq!(
            read.join().unwrap(),
            expected,
            "node {} reads the image",
            i + 1
        );
    }

    // Log lines come after responses: read the log once it stops growing.
    let mut served = nginx.served_paths();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = nginx.served_paths();
        if now.len() == served.len() {
            break;
        }
        served = now;
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for path in &served {
        *counts.entry(path).or_default() += 1;
    }
    let objects = counts.keys().filter(|p| p.starts_with("/data/")).count();
    assert!(objects > 80, "every chunk is an object: {objects}");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "the origin served these more than once: {twice:?}"
    );
    assert!(
        eventually(|| squid.requests() >= 3 * objects),
        "every node went through the proxy: {} requests, {objects} objects",
        squid.requests()
    );
    drop(daemons);
}

#[test]
fn privileged_a_dead_proxy_is_passed_over_and_tried_again_after_its_backoff() {
    require_privileges!();
    let (work, host, store) = store_only();
    let nginx = TestNginx::start(&store).unwrap();
    let mut first = TestSquid::start().unwrap();
    let second = TestSquid::start().unwrap();
    let proxies = [first.url(), second.url()];
    let (_daemon, socket) = start_node(&work.path().join("node"), &host, &proxies, &nginx.url());
    let layers = attach(&socket, &format!("{STORE}/sample:lazy"));
    let big = std::fs::File::open(layers[0].join("data/big.bin")).unwrap();
    let expected = std::fs::read(store_free_copy(&work.path().join("big"))).unwrap();
    let read_at = |offset: usize| {
        let mut buf = vec![0u8; 65536];
        big.read_exact_at(&mut buf, offset as u64).unwrap();
        assert_eq!(
            buf,
            expected[offset..offset + buf.len()],
            "bytes at {offset}"
        );
    };

    read_at(0);
    assert!(
        eventually(|| first.requests() > 0),
        "the first proxy is used while it works"
    );
    assert_eq!(second.requests(), 0, "{}", second.access_log());

    first.kill();
    // The first proxy fails, and rests, from within this read.
    let failing = Instant::now();
    read_at(1 << 20);
    let failed = Instant::now();
    assert!(
        eventually(|| second.requests() > 0),
        "reads go on through the second proxy"
    );

    first.restart().unwrap();
    let before = first.requests();
    read_at(2 << 20);
    assert!(
        failing.elapsed() < BACKOFF,
        "the check below needs the back-off still running"
    );
    assert_eq!(
        first.requests(),
        before,
        "a failed proxy rests for its back-off"
    );
    std::thread::sleep(
        (failed + BACKOFF + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
    );
    read_at(3 << 20);
    assert!(
        eventually(|| first.requests() > before),
        "the first proxy is tried again after its back-off"
    );
}

/// Whether `condition` holds within 5 s: squid and nginx write a
/// request's log line after the response, so a count can lag a read.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// big.bin as the test image builds it.
fn store_free_copy(path: &Path) -> PathBuf {
    let layer = lazy_testkit::images::base_layer().unwrap();
    let mut archive = tar::Archive::new(layer.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().as_os_str() == "data/big.bin" {
            entry.unpack(path).unwrap();
            return path.to_owned();
        }
    }
    panic!("the base layer has no data/big.bin")
}

#[test]
fn privileged_store_mirrors_fail_over_and_digest_references_ignore_tags() {
    require_privileges!();
    let (work, host, store) = store_only();
    let mirror = TestNginx::start(&store).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port().unwrap());
    // The global proxy is dead too: the store's own list (DIRECT) wins.
    let extra = format!(
        "prefetch = \"none\"\n[proxy]\nservers = [\"http://127.0.0.1:9\"]\nbackoff_secs = 3\n\
         [stores.\"{STORE}\"]\nurls = [{dead:?}, {:?}]\nproxies = [\"DIRECT\"]\n",
        mirror.url()
    );
    let files = DaemonFiles::write(&work.path().join("node"), &host, &extra);
    let socket = files.socket.to_str().unwrap().to_owned();
    let _daemon = DaemonProcess::start(&lazyfsd_binary(), files);

    let layers = attach(&socket, &format!("{STORE}/sample:lazy"));
    let motd = std::fs::read(layers[0].join("etc/motd")).unwrap();
    assert_eq!(motd, b"welcome to the lazy test image\n");
    assert!(
        eventually(|| !mirror.served_paths().is_empty()),
        "the mirror served it"
    );

    // A tag moved elsewhere (or tampered with) does not touch an image
    // named by its manifest digest.
    let tag = store.join("tags/sample/lazy");
    let digest = std::fs::read_to_string(&tag).unwrap().trim().to_owned();
    std::fs::write(&tag, format!("sha256:{}\n", "0".repeat(64))).unwrap();
    let not_found = ErrorKind::NotFound.mapping().exit_code;
    let by_tag = format!("{STORE}/sample:lazy");
    lazyctl_fails_with(&["attach", "--socket", &socket, &by_tag], not_found);
    let pinned = attach(&socket, &format!("{STORE}/sample@{digest}"));
    assert_eq!(pinned, layers);
}

#[test]
fn privileged_registry_range_reads_go_through_the_proxy() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let image = converted_sample(work.path(), &registry);
    let squid = TestSquid::start().unwrap();
    let (_daemon, socket) = start_node(
        &work.path().join("node"),
        &host,
        &[squid.url()],
        "http://127.0.0.1:9",
    );
    let layers = attach(&socket, &image);
    let motd = std::fs::read(layers[0].join("etc/motd")).unwrap();
    assert_eq!(motd, b"welcome to the lazy test image\n");
    assert!(
        eventually(|| squid.requests() >= 2),
        "manifest, config, tails and chunks through the proxy"
    );
}

#[test]
fn privileged_store_errors_are_clear() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let store = published_sample(work.path(), &registry);
    let nginx = TestNginx::start(&store).unwrap();
    let (_daemon, socket) = start_node(&work.path().join("node"), &host, &[], &nginx.url());

    let missing = format!("{STORE}/nothing:here");
    let not_found = ErrorKind::NotFound.mapping().exit_code;
    let err = lazyctl_fails_with(&["attach", "--socket", &socket, &missing], not_found);
    assert!(
        err.contains("manifest unknown: cas.test/nothing:here"),
        "{err}"
    );

    // A corrupted object is refused, not served.
    let layers = attach(&socket, &format!("{STORE}/sample:lazy"));
    assert!(corrupt_every_object(&store) > 80);
    let read = std::fs::read(layers[0].join("etc/motd"));
    assert!(
        read.is_err(),
        "a corrupt object reads as an error: {read:?}"
    );

    // Publishing into a directory that is not a store is refused.
    let other = work.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let image = format!("{host}/sample:lazy");
    let err = lazyctl_err(&[
        "publish",
        "--insecure",
        &host,
        &image,
        other.to_str().unwrap(),
    ]);
    assert!(err.contains("not a lazyfs store"), "{err}");
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "mine"
    );
}

/// Flips a byte in every stored object; returns how many.
fn corrupt_every_object(store: &Path) -> usize {
    let mut n = 0;
    for fan in std::fs::read_dir(store.join("data")).unwrap() {
        for object in std::fs::read_dir(fan.unwrap().path()).unwrap() {
            let path = object.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[0] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            n += 1;
        }
    }
    n
}
