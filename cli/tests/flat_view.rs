//! Flat image views: `lazyctl attach --flat` shows a multi-layer image
//! (whiteouts, opaque directories, a file replacing a lower one, hardlinks)
//! merged into one directory that equals `lazyctl unpack` of the image,
//! runs under a plain `chroot` and Charliecloud's `ch-run`, survives a daemon crash, and goes with a
//! detach. Real registry, real lazyfsd.

mod common;
mod lazyrun_host;

use std::path::Path;
use std::process::Command;

use common::assert_same_tree;
use lazy_testkit::require_privileges;
use lazyrun_host::{Host, code, stderr, stdout};

fn lazyctl_ok(host: &Host, args: &[&str]) -> String {
    let out = host.lazyctl(args);
    assert!(out.status.success(), "lazyctl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// What `sh -c script` prints when `runner` runs image directory `root`:
/// its command and arguments before `root`, then those after it.
fn run_in(runner: (&[&str], &[&str]), root: &Path, script: &str) -> String {
    let (before, after) = runner;
    let out = Command::new(before[0])
        .args(&before[1..])
        .arg(root)
        .args(after)
        .args(["/bin/sh", "-c", script])
        .env("USER", "root")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{runner:?} {}: {}",
        root.display(),
        stderr(&out)
    );
    stdout(&out)
}

/// A plain chroot.
const CHROOT: (&[&str], &[&str]) = (&["chroot"], &[]);
/// Charliecloud's `ch-run`: an HTC runtime that runs an image directory as
/// it is (read-only, no overlay), as Apptainer runs a sandbox directory.
const CH_RUN: (&[&str], &[&str]) = (&["ch-run", "--no-passwd", "--cd=/"], &["--"]);

const SCRIPT: &str = "cat /etc/motd /etc/changed /data/replace-me; ls -a /data /data/opaque; \
                      test -e /data/deleted || echo deleted is gone; busybox wc -c </data/big.bin";

#[test]
fn privileged_a_flat_view_is_the_unpacked_image_and_runs_under_chroot_and_ch_run() {
    require_privileges!();
    let mut host = Host::with_sample();
    let image = format!("{}/sample:lazy", host.registry.host());
    let unpacked = host.work.path().join("unpacked");
    let registry = host.registry.host();
    common::lazyctl_ok(&[
        "unpack",
        "--insecure",
        &registry,
        &image,
        unpacked.to_str().unwrap(),
    ]);

    let flat = lazyctl_ok(&host, &["attach", "--flat", &image]);
    let flat = Path::new(flat.trim());
    assert!(
        flat.starts_with(&host.files.mountpoint),
        "{}",
        flat.display()
    );
    assert_same_tree(&unpacked, flat);
    let expected = run_in(CHROOT, &unpacked, SCRIPT);
    assert!(
        expected.contains("now a file") && expected.contains("deleted is gone"),
        "{expected}"
    );
    assert_eq!(run_in(CHROOT, flat, SCRIPT), expected);
    assert_eq!(run_in(CH_RUN, flat, SCRIPT), expected);
    let again = lazyctl_ok(&host, &["attach", "--flat", &image]);
    assert_eq!(Path::new(again.trim()), flat, "one view per image");

    // A crashed daemon shows the view again when it restarts.
    let daemon = host.daemon.as_mut().unwrap();
    daemon.kill9();
    daemon.spawn();
    assert_same_tree(&unpacked, flat);

    lazyctl_ok(&host, &["detach", &image]);
    assert!(!flat.exists(), "the view goes with the image");
    let images_dir = host.files.mountpoint.join("images");
    assert!(!images_dir.exists(), "no views, no images/");

    let out = host.lazyctl(&[
        "attach",
        "--flat",
        &format!("{}/absent:x", host.registry.host()),
    ]);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("absent"), "{}", stderr(&out));
}
