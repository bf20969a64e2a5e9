//! A multi-GB sparse file (GNU tar --sparse): its size survives, its zero
//! chunks are stored once, and unpack writes it back sparse.

mod common;

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use common::{lazyctl_ok, run};
use lazy_testkit::layout::{TestCompression, write_oci_image};

const SIZE: u64 = (5 << 30) + 4097;

#[test]
fn multi_gigabyte_sparse_file_round_trips() {
    lazy_testkit::require_program("tar", "tar").unwrap();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let file = File::create(tree.join("disk.img")).unwrap();
    file.set_len(SIZE).unwrap();
    let marks: [(u64, &[u8]); 3] = [(0, b"head"), (3 << 30, b"middle"), (SIZE - 4, b"tail")];
    for (offset, data) in marks {
        file.write_all_at(data, offset).unwrap();
    }
    drop(file);
    let layer_tar = work.path().join("layer.tar");
    run(
        "tar",
        &[
            "--sparse",
            "--format=gnu",
            "--numeric-owner",
            "-cf",
            layer_tar.to_str().unwrap(),
            "-C",
            tree.to_str().unwrap(),
            ".",
        ],
    );
    let tar_bytes = std::fs::read(&layer_tar).unwrap();
    assert!(
        tar_bytes.len() < 1 << 20,
        "GNU sparse tar stays small: {}",
        tar_bytes.len()
    );
    let src = work.path().join("src");
    write_oci_image(&src, "v1", &[tar_bytes], TestCompression::Gzip).unwrap();

    let lazy = format!("oci:{}:lazy", work.path().join("lazy").display());
    lazyctl_ok(&["convert", &format!("oci:{}:v1", src.display()), &lazy]);
    let report: serde_json::Value =
        serde_json::from_str(&lazyctl_ok(&["inspect", "--json", &lazy])).unwrap();
    let stats = &report["layers"][0]["stats"];
    assert_eq!(stats["file_bytes"].as_u64(), Some(SIZE), "{stats}");
    assert!(
        stats["unique_chunks"].as_u64().unwrap() <= 6,
        "zero chunks are stored once: {stats}"
    );
    assert!(
        report["layers"][0]["size"].as_u64().unwrap() < 1 << 20,
        "lazy layer stays small: {report}"
    );

    let out = work.path().join("rootfs");
    lazyctl_ok(&["unpack", &lazy, out.to_str().unwrap()]);
    let unpacked = File::open(out.join("disk.img")).unwrap();
    let meta = unpacked.metadata().unwrap();
    assert_eq!(meta.len(), SIZE);
    assert!(
        meta.blocks() * 512 < 64 << 20,
        "unpacked file is sparse: {} blocks",
        meta.blocks()
    );
    for (offset, data) in marks {
        let mut buf = vec![0u8; data.len()];
        unpacked.read_exact_at(&mut buf, offset).unwrap();
        assert_eq!(buf, data, "bytes at {offset}");
    }
    let mut zeros = vec![1u8; 4096];
    unpacked.read_exact_at(&mut zeros, 1 << 30).unwrap();
    assert!(zeros.iter().all(|b| *b == 0));
}
