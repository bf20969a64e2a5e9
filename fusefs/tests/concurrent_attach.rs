//! Two callers at once is the normal case: concurrent attaches of images
//! that share a base layer install every layer once, in its own slot, and
//! every layer reads right; sharing survives a restart and a detach.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::{Lazyfsd, Overlay, convert_into_registry, lowerdirs, umoci_unpack};
use lazy_control::{AttachOptions, PrefetchMode};
use lazy_testkit::images::{base_layer, noise};
use lazy_testkit::layout::{TestCompression, write_oci_image};
use lazy_testkit::registry::TestRegistry;
use lazy_testkit::require_privileges;
use lazy_testkit::tarball::TarLayer;
use lazy_testkit::tree::diff_trees;

const IMAGES: usize = 4;
const ATTACHES: usize = 16;

/// A top layer of its own for image `k`.
fn variant_layer(k: usize) -> Vec<u8> {
    let mut t = TarLayer::new();
    t.dir("srv", 0o755)
        .file(b"srv/variant.txt", format!("{k}\n").as_bytes(), 0o644)
        .file(b"srv/noise", &noise(200_000, 100 + k as u64), 0o644);
    t.finish()
}

#[test]
fn privileged_concurrent_attaches_share_layers_and_never_collide() {
    require_privileges!();
    let work = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let base = base_layer().unwrap();
    let mut images = Vec::new();
    for k in 0..IMAGES {
        let src = work.path().join(format!("src{k}"));
        write_oci_image(
            &src,
            "v1",
            &[base.clone(), variant_layer(k)],
            TestCompression::Gzip,
        )
        .unwrap();
        let image = format!("{host}/img{k}:lazy");
        convert_into_registry(&src, "v1", &image, &host, 64 * 1024);
        images.push((src, image));
    }
    let mut daemon = Lazyfsd::start(&work.path().join("d"), &host, "");

    let attached: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..ATTACHES)
            .map(|i| {
                let (client, image) = (daemon.client(), images[i % IMAGES].1.clone());
                s.spawn(move || {
                    let options = AttachOptions {
                        prefetch: Some(PrefetchMode::None),
                        ..AttachOptions::default()
                    };
                    (i % IMAGES, client.attach(&image, options))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut layers_of = vec![Vec::new(); IMAGES];
    for (k, result) in attached {
        let image = result.unwrap_or_else(|e| panic!("attach of image {k}: {e}"));
        layers_of[k] = image.layers;
    }

    let listed = daemon.client().list().unwrap();
    let digests: HashSet<_> = listed.iter().map(|l| l.digest.clone()).collect();
    let paths: HashSet<_> = listed.iter().map(|l| l.path.clone()).collect();
    assert_eq!(
        listed.len(),
        1 + IMAGES,
        "one base and one top per image: {listed:#?}"
    );
    assert_eq!(digests.len(), listed.len(), "each layer listed once");
    assert_eq!(paths.len(), listed.len());
    let base_digest = &layers_of[0][0].digest;
    assert!(
        layers_of.iter().all(|l| &l[0].digest == base_digest),
        "the base is shared"
    );

    for (k, (src, _)) in images.iter().enumerate() {
        let top = Path::new(&layers_of[k][1].path);
        assert_eq!(
            std::fs::read_to_string(top.join("srv/variant.txt")).unwrap(),
            format!("{k}\n")
        );
        let expected = work.path().join(format!("unpacked{k}"));
        umoci_unpack(src, "v1", &expected);
        let overlay = Overlay::mount(
            &work.path().join(format!("ov{k}")),
            &lowerdirs(&layers_of[k]),
        );
        let diffs = diff_trees(&expected, &overlay.merged).unwrap();
        assert!(diffs.is_empty(), "image {k} reads as unpacked: {diffs:#?}");
    }

    // Slots and sharing are persisted: a restarted daemon lists the same.
    daemon.kill9();
    daemon.spawn();
    let mut again = daemon.client().list().unwrap();
    let mut before = listed.clone();
    again.sort_by(|a, b| a.digest.cmp(&b.digest));
    before.sort_by(|a, b| a.digest.cmp(&b.digest));
    assert_eq!(again, before);

    // Detaching one image keeps the base that the others still use.
    daemon.client().detach(&images[0].1).unwrap();
    let left = daemon.client().list().unwrap();
    assert_eq!(left.len(), IMAGES, "{left:#?}");
    assert!(left.iter().any(|l| &l.digest == base_digest));
    assert!(!left.iter().any(|l| l.digest == layers_of[0][1].digest));
    assert!(Path::new(&layers_of[1][0].path).join("etc/passwd").exists());
}
