//! Bad input: malicious or broken images give a clear error naming what is
//! wrong, never a panic, and leave no lazy image or stray file behind.

mod common;

use std::path::Path;

use common::{lazyctl_err, lazyctl_ok, write_sample};
use lazy_testkit::layout::{
    TestCompression, corrupt_manifest, layout_tags, replace_layer_blob, write_oci_image,
};
use lazy_testkit::tarball::TarLayer;

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Converts `layers` and expects failure; checks nothing was stored and
/// nothing appeared next to the work dirs. Returns stderr.
fn convert_fails(layers: &[Vec<u8>]) -> String {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_oci_image(&src, "v1", layers, TestCompression::Gzip).unwrap();
    convert_fails_from(work.path(), &src)
}

fn convert_fails_from(work: &Path, src: &Path) -> String {
    let dst = work.join("dst");
    let stderr = lazyctl_err(&["convert", &oci(src, "v1"), &oci(&dst, "lazy")]);
    let tags = if dst.join("index.json").exists() {
        layout_tags(&dst).unwrap()
    } else {
        vec![]
    };
    assert!(
        tags.is_empty(),
        "a failed conversion stored an image: {tags:?}"
    );
    let mut names: Vec<_> = std::fs::read_dir(work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(
        names.iter().all(|n| n == "src" || n == "dst"),
        "stray files: {names:?}"
    );
    stderr
}

fn raw_tar(name: &[u8], kind: tar::EntryType, data: &[u8], link: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    if !link.is_empty() {
        h.set_link_name_literal(link).unwrap();
    }
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn dot_dot_entry_is_refused_by_name() {
    let err = convert_fails(&[raw_tar(b"../../escape", tar::EntryType::Regular, b"x", b"")]);
    assert!(
        err.contains("\"../../escape\"") && err.contains("`..`"),
        "{err}"
    );
}

#[test]
fn absolute_entry_is_refused_by_name() {
    let err = convert_fails(&[raw_tar(
        b"/etc/cron.d/evil",
        tar::EntryType::Regular,
        b"x",
        b"",
    )]);
    assert!(
        err.contains("/etc/cron.d/evil") && err.contains("absolute path"),
        "{err}"
    );
}

#[test]
fn symlink_then_write_is_refused_by_name() {
    let mut t = TarLayer::new();
    t.symlink(b"evil", b"/etc")
        .file(b"evil/passwd", b"root::0:0::/:/bin/sh\n", 0o644);
    let err = convert_fails(&[t.finish()]);
    assert!(
        err.contains("evil/passwd") && err.contains("not a directory"),
        "{err}"
    );
}

#[test]
fn hardlink_out_of_the_layer_is_refused() {
    let err = convert_fails(&[raw_tar(
        b"link",
        tar::EntryType::Link,
        b"",
        b"../../etc/shadow",
    )]);
    assert!(err.contains("\"link\""), "{err}");
}

#[test]
fn truncated_gzip_layer_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let blob = std::fs::read(first_layer_path(&src)).unwrap();
    replace_layer_blob(&src, 0, &blob[..blob.len() / 2], true).unwrap();
    let err = convert_fails_from(work.path(), &src);
    assert!(err.contains("reading layer sha256:"), "{err}");
}

#[test]
fn garbage_layer_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let garbage = lazy_testkit::images::noise(100_000, 9);
    replace_layer_blob(&src, 1, &garbage, true).unwrap();
    let err = convert_fails_from(work.path(), &src);
    assert!(err.contains("reading layer sha256:"), "{err}");
}

#[test]
fn layer_that_fails_its_digest_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let path = first_layer_path(&src);
    let mut blob = std::fs::read(&path).unwrap();
    let last = blob.len() - 20;
    blob[last] ^= 0xff;
    replace_layer_blob(&src, 0, &blob, false).unwrap();
    let err = convert_fails_from(work.path(), &src);
    assert!(
        err.contains("sha256:") && err.to_lowercase().contains("digest"),
        "{err}"
    );
}

#[test]
fn manifest_that_fails_its_digest_is_an_error() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    corrupt_manifest(&src).unwrap();
    let err = convert_fails_from(work.path(), &src);
    assert!(err.to_lowercase().contains("digest"), "{err}");
}

#[test]
fn lazy_images_are_not_converted_twice_and_plain_ones_not_unpacked() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let lazy = oci(&work.path().join("lazy"), "v1");
    lazyctl_ok(&["convert", &oci(&src, "v1"), &lazy]);
    let err = lazyctl_err(&["convert", &lazy, &oci(&work.path().join("again"), "v1")]);
    assert!(err.contains("already a lazy image"), "{err}");
    let err = lazyctl_err(&[
        "unpack",
        &oci(&src, "v1"),
        work.path().join("out").to_str().unwrap(),
    ]);
    assert!(err.contains("is not a lazy image"), "{err}");
    let err = lazyctl_err(&["inspect", &oci(&src, "v1")]);
    assert!(err.contains("is not a lazy image"), "{err}");
}

#[test]
fn unpack_refuses_a_non_empty_directory() {
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let lazy = oci(&work.path().join("lazy"), "v1");
    lazyctl_ok(&["convert", &oci(&src, "v1"), &lazy]);
    let target = work.path().join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("precious"), b"keep me").unwrap();
    let err = lazyctl_err(&["unpack", &lazy, target.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(target.join("precious")).unwrap(), b"keep me");
}

#[test]
fn privileged_symlink_in_lower_layer_cannot_redirect_unpack() {
    lazy_testkit::require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let mut lower = TarLayer::new();
    lower.symlink(b"evil", outside.as_os_str().as_encoded_bytes());
    let mut upper = TarLayer::new();
    upper
        .dir("evil", 0o755)
        .file(b"evil/planted", b"gotcha", 0o644);
    let src = work.path().join("src");
    write_oci_image(
        &src,
        "v1",
        &[lower.finish(), upper.finish()],
        TestCompression::Gzip,
    )
    .unwrap();
    let lazy = oci(&work.path().join("lazy"), "v1");
    lazyctl_ok(&["convert", &oci(&src, "v1"), &lazy]);
    let root = work.path().join("rootfs");
    lazyctl_ok(&["unpack", &lazy, root.to_str().unwrap()]);
    assert!(
        !outside.join("planted").exists(),
        "unpack wrote through a symlink"
    );
    assert_eq!(std::fs::read(root.join("evil/planted")).unwrap(), b"gotcha");
}

fn first_layer_path(layout: &Path) -> std::path::PathBuf {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| layout.join("blobs/sha256").join(&d["sha256:".len()..]);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    blob(manifest["layers"][0]["digest"].as_str().unwrap())
}
