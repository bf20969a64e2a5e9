//! The sample images of the test suite, built from `busybox-static` and
//! generated files, covering every entry kind the converter must keep.

use std::path::Path;

use anyhow::{Context, Result};

use crate::layout::{TestCompression, write_oci_image};
use crate::tarball::TarLayer;

/// Deterministic pseudo-random bytes (xorshift), incompressible.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// Size of the many-chunk file in the sample image.
pub const BIG_FILE_LEN: usize = 5 * 1024 * 1024 + 12345;

/// `security.capability` v2 granting cap_net_bind_service (bit 10), effective.
const CAP_NET_BIND: &[u8] = &[0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Base layer: busybox and one of every entry kind.
pub fn base_layer() -> Result<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (apt-get install busybox-static)")?;
    let big = noise(BIG_FILE_LEN, 42);
    let long_name = format!("data/{}", "long-name-".repeat(20));
    let long_target = format!("../{}", "far/".repeat(40));
    let mut t = TarLayer::new();
    t.dir("./", 0o755)
        .dir("bin", 0o755)
        .dir("etc", 0o755)
        .dir("data", 0o755)
        .dir("dev", 0o755)
        .dir("proc", 0o555)
        .dir("sys", 0o555);
    t.dir("tmp", 0o1777)
        .dir("var", 0o755)
        .dir("var/cache", 0o755)
        .dir("var/cache/app", 0o700);
    t.file(b"bin/busybox", &busybox, 0o755);
    for applet in ["sh", "ls", "cat", "echo"] {
        t.symlink(format!("bin/{applet}").as_bytes(), b"busybox");
    }
    t.file(
        b"etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        0o644,
    );
    t.file(b"etc/motd", b"welcome to the lazy test image\n", 0o644);
    t.file(b"data/big.bin", &big, 0o644);
    t.file(b"data/dup-a.txt", &[b'a'; 70_000], 0o644);
    t.file(b"data/dup-b.txt", &[b'a'; 70_000], 0o644);
    t.file(b"data/empty", b"", 0o600);
    t.file_owned(b"data/owned", b"mine\n", 0o640, (1000, 1000));
    t.file_owned(b"data/big-ids", b"ids\n", 0o644, (70_000, 80_000));
    t.file(b"data/setuid", b"#!/bin/sh\n", 0o4755);
    t.hardlink(b"data/hardlink-to-big", b"data/big.bin");
    t.hardlink(b"data/hardlink-2", b"data/dup-a.txt");
    t.symlink(b"data/abs-link", b"/etc/passwd");
    t.symlink(b"data/dangling", b"does/not/exist");
    t.symlink(b"data/long-link", long_target.as_bytes());
    t.file(long_name.as_bytes(), b"long name\n", 0o644);
    t.file("data/café-日本語.txt".as_bytes(), b"unicode\n", 0o644);
    t.file(b"data/latin1-\xe9\xff", b"not utf-8\n", 0o644);
    t.device("dev/null", false, 1, 3)
        .device("dev/loop0", true, 7, 0)
        .fifo("data/fifo");
    t.pax(&[
        ("SCHILY.xattr.user.comment", b"hello xattr"),
        ("SCHILY.xattr.user.bin", &[0, 1, 2, 255]),
    ]);
    t.file(b"data/with-xattrs", b"x\n", 0o644);
    t.pax(&[("SCHILY.xattr.security.capability", CAP_NET_BIND)]);
    t.file(b"bin/ping-like", b"cap\n", 0o755);
    t.pax(&[("mtime", b"1700000000.123456789")]);
    t.file(b"data/nanotime", b"t\n", 0o644);
    t.dir("data/replace-me", 0o755)
        .file(b"data/replace-me/old", b"old\n", 0o644);
    t.dir("data/opaque", 0o755)
        .file(b"data/opaque/lower", b"lower\n", 0o644);
    t.file(b"data/deleted", b"to be deleted\n", 0o644);
    t.file(b"etc/changed", b"version 1\n", 0o644);
    Ok(t.finish())
}

/// Upper layer: whiteouts, an opaque dir, replaced and new entries.
pub fn upper_layer() -> Vec<u8> {
    let mut t = TarLayer::new();
    t.dir("data", 0o755).dir("etc", 0o755);
    t.whiteout("data", "deleted");
    t.whiteout("data", "replace-me");
    t.file(b"data/replace-me", b"now a file\n", 0o644);
    t.dir("data/opaque", 0o750).opaque("data/opaque");
    t.file(b"data/opaque/upper", b"upper\n", 0o644);
    t.file(b"etc/changed", b"version 2\n", 0o600);
    t.dir("srv", 0o755)
        .file(b"srv/new", &noise(300_000, 7), 0o644);
    t.finish()
}

/// Writes the two-layer sample image into an OCI layout at `dir`.
pub fn write_sample_image(dir: &Path, tag: &str, compression: TestCompression) -> Result<String> {
    write_oci_image(dir, tag, &[base_layer()?, upper_layer()], compression)
}

/// The sample image with a third layer holding `/etc/os-release` =
/// `os_release`, pushed into `registry` twice: converted by `lazyctl` as
/// `sample:lazy`, copied by skopeo as `sample:plain`. Built under `work`.
/// Returns the two references, lazy first.
pub fn push_sample_images(
    work: &Path,
    registry: &crate::registry::TestRegistry,
    lazyctl: &Path,
    os_release: &str,
) -> Result<(String, String)> {
    let src = work.join("src");
    let release = {
        let mut t = TarLayer::new();
        t.dir("etc", 0o755)
            .file(b"etc/os-release", os_release.as_bytes(), 0o644);
        t.finish()
    };
    let layers = [base_layer()?, upper_layer(), release];
    write_oci_image(&src, "v1", &layers, TestCompression::Gzip)?;
    let host = registry.host();
    let lazy = format!("{host}/sample:lazy");
    let plain = format!("{host}/sample:plain");
    let source = format!("oci:{}:v1", src.display());
    crate::process::run_ok(lazyctl, &["convert", "--insecure", &host, &source, &lazy]);
    let plain_dest = format!("docker://{plain}");
    let copy = [
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &source,
        &plain_dest,
    ];
    crate::process::run_ok(Path::new("skopeo"), &copy);
    Ok((lazy, plain))
}
