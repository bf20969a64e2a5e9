//! Helpers shared by the CLI integration tests.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `lazyctl` with `args`; returns its output whatever the exit status.
pub fn lazyctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lazyctl"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run lazyctl")
}

/// Runs `lazyctl`, failing the test with its stderr unless it succeeds.
pub fn lazyctl_ok(args: &[&str]) -> String {
    let out = lazyctl(args);
    assert!(
        out.status.success(),
        "lazyctl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs `lazyctl`, expecting a failure of its own (status 1); returns its stderr.
pub fn lazyctl_err(args: &[&str]) -> String {
    lazyctl_fails_with(args, 1)
}

/// Runs `lazyctl`, expecting it to exit with `status` (a lazyfsd error
/// kind's status, see `lazy_control::ErrorKind::mapping`); returns its stderr.
pub fn lazyctl_fails_with(args: &[&str], status: u8) -> String {
    let out = lazyctl(args);
    assert!(
        !out.status.success(),
        "lazyctl {args:?} unexpectedly succeeded"
    );
    assert_eq!(
        out.status.code(),
        Some(i32::from(status)),
        "lazyctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "lazyctl panicked: {stderr}");
    stderr
}

/// Runs a command, failing the test with its stderr unless it succeeds.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies an OCI layout image into a registry with the real `skopeo`.
pub fn skopeo_push(layout: &Path, tag: &str, dest: &str) {
    lazy_testkit::require_program("skopeo", "skopeo").expect("skopeo");
    let src = format!("oci:{}:{tag}", layout.display());
    let dst = format!("docker://{dest}");
    run(
        "skopeo",
        &["copy", "--quiet", "--dest-tls-verify=false", &src, &dst],
    );
}

/// `umoci raw unpack` of an OCI layout image: the reference unpacker.
pub fn umoci_unpack(layout: &Path, tag: &str, dir: &Path) {
    lazy_testkit::require_program("umoci", "umoci").expect("umoci");
    let image = format!("{}:{tag}", layout.display());
    run(
        "umoci",
        &[
            "raw",
            "unpack",
            "--image",
            &image,
            dir.to_str().expect("utf-8 path"),
        ],
    );
}

/// Writes the sample image (gzip layers) as the OCI layout `<work>/src`, tag `v1`.
pub fn write_sample(work: &Path) -> std::path::PathBuf {
    let src = work.join("src");
    lazy_testkit::images::write_sample_image(
        &src,
        "v1",
        lazy_testkit::layout::TestCompression::Gzip,
    )
    .unwrap();
    src
}

/// Checks that the trees are equal, and that the reference really holds the
/// hard cases (so an empty comparison cannot pass).
pub fn assert_same_tree(expected: &std::path::Path, actual: &std::path::Path) {
    let reference = lazy_testkit::tree::summarize(expected).expect("summarize reference");
    let entry = |p: &[u8]| {
        reference
            .get(p)
            .unwrap_or_else(|| panic!("reference lacks {:?}", String::from_utf8_lossy(p)))
    };
    assert!(
        entry(b"bin/ping-like")
            .xattrs
            .iter()
            .any(|(n, _)| n == b"security.capability")
    );
    assert!(entry(b"dev/null").content.starts_with("rdev"));
    assert_eq!(
        entry(b"data/hardlink-to-big").hardlinks,
        vec![b"data/big.bin".to_vec()]
    );
    assert!(entry(b"data/latin1-\xe9\xff").mode & 0o777 == 0o644);
    assert_eq!(
        entry(b"data/nanotime").mtime,
        Some((1_700_000_000, 123_456_789))
    );
    assert!(
        !reference.contains_key(&b"data/deleted"[..]),
        "whiteout applied"
    );
    assert!(
        !reference.contains_key(&b"data/opaque/lower"[..]),
        "opaque dir applied"
    );
    let diffs = lazy_testkit::tree::diff_trees(expected, actual).expect("compare trees");
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
