//! Round trip through a real registry: convert the sample image, unpack the
//! lazy image, and compare with `umoci raw unpack` of the source.

mod common;

use common::{assert_same_tree, lazyctl_ok, skopeo_push, umoci_unpack, write_sample};
use lazy_testkit::images::write_sample_image;
use lazy_testkit::layout::TestCompression;
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;

#[test]
fn privileged_registry_round_trip_matches_umoci() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let src = write_sample(work.path());
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    skopeo_push(&src, "v1", &format!("{host}/sample:v1"));

    let source = format!("{host}/sample:v1");
    let lazy = format!("{host}/sample:lazy");
    lazyctl_ok(&["convert", "--insecure", &host, &source, &lazy]);
    let unpacked = work.path().join("lazy-rootfs");
    lazyctl_ok(&[
        "unpack",
        "--insecure",
        &host,
        &lazy,
        unpacked.to_str().unwrap(),
    ]);
    let reference = work.path().join("umoci-rootfs");
    umoci_unpack(&src, "v1", &reference);
    assert_same_tree(&reference, &unpacked);

    let report: serde_json::Value = serde_json::from_str(&lazyctl_ok(&[
        "inspect",
        "--json",
        "--insecure",
        &host,
        &lazy,
    ]))
    .unwrap();
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    let base = &layers[0]["stats"];
    assert!(
        base["unique_chunks"].as_u64() < base["chunk_refs"].as_u64(),
        "duplicate files share chunks: {base}"
    );
    assert!(
        report["totals"]["files"].as_u64().unwrap() >= 20,
        "{report}"
    );
}

#[test]
fn privileged_layout_round_trip_for_every_compression() {
    require_privileges!();
    // umoci reads no zstd: the reference is the same tars, gzipped.
    let work = tempfile::tempdir().unwrap();
    let gzip_src = work.path().join("gzip-src");
    write_sample_image(&gzip_src, "v1", TestCompression::Gzip).unwrap();
    let reference = work.path().join("umoci-rootfs");
    umoci_unpack(&gzip_src, "v1", &reference);
    for (i, compression) in [
        TestCompression::None,
        TestCompression::Gzip,
        TestCompression::Zstd,
    ]
    .into_iter()
    .enumerate()
    {
        let src = work.path().join(format!("src-{i}"));
        write_sample_image(&src, "v1", compression).unwrap();
        let lazy = format!(
            "oci:{}:lazy",
            work.path().join(format!("dst-{i}")).display()
        );
        lazyctl_ok(&["convert", &format!("oci:{}:v1", src.display()), &lazy]);
        let unpacked = work.path().join(format!("lazy-rootfs-{i}"));
        lazyctl_ok(&["unpack", &lazy, unpacked.to_str().unwrap()]);
        assert_same_tree(&reference, &unpacked);
    }
}
