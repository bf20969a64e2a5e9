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

/// Runs `lazyctl`, expecting failure; returns its stderr.
pub fn lazyctl_err(args: &[&str]) -> String {
    let out = lazyctl(args);
    assert!(
        !out.status.success(),
        "lazyctl {args:?} unexpectedly succeeded"
    );
    assert_eq!(out.status.code(), Some(1), "errors exit with status 1");
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
