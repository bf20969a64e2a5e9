//! The FUSE view through overlayfs equals the unpacked image; overlay
//! writes behave as on the unpacked image; reads are lazy.

mod common;

use common::{Lazyfsd, Overlay, convert_into_registry, lowerdirs};
use lazy_testkit::images::{BIG_FILE_LEN, write_sample_image};
use lazy_testkit::layout::TestCompression;
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;
use lazy_testkit::tree::diff_trees;

fn umoci_unpack(layout: &std::path::Path, tag: &str, dir: &std::path::Path) {
    let image = format!("{}:{tag}", layout.display());
    let out = std::process::Command::new("umoci")
        .args(["raw", "unpack", "--image", &image])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn privileged_overlay_of_lazy_layers_equals_unpacked_image() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_sample_image(&src, "v1", TestCompression::Gzip).unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let image = format!("{host}/sample:lazy");
    convert_into_registry(&src, "v1", &image, &host, 64 * 1024);

    let daemon = Lazyfsd::start(&work.path().join("d"), &host, "");
    let layers = daemon.attach(&image);
    assert_eq!(layers.len(), 2);
    let overlay = Overlay::mount(&work.path().join("ov"), &lowerdirs(&layers));
    let reference = work.path().join("reference");
    umoci_unpack(&src, "v1", &reference);
    let diffs = diff_trees(&reference, &overlay.merged).unwrap();
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    let stats = daemon.stats();
    assert!(
        stats.fetched_bytes > BIG_FILE_LEN as u64,
        "the comparison read every file: {stats:?}"
    );
}
