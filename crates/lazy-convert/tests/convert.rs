//! Layer conversion on tars built in memory: every entry kind, chunking,
//! dedup, compression formats, and refusal of unsafe entries.

use std::io::Write;

use lazy_convert::{ConvertError, ConvertOptions, convert_layer, unpack_layer};
use lazy_format::{EntryKind, verify_blob};

fn header(name: &[u8], kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    h
}

fn tar_of(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = header(name, *kind, data.len() as u64);
        if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            h.set_size(0);
            h.set_link_name_literal(data).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

fn opts(chunk_size: u32) -> ConvertOptions {
    ConvertOptions {
        chunk_size,
        zstd_level: 3,
        threads: 2,
    }
}

#[test]
fn converts_chunks_and_dedups() {
    let big: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let tar = tar_of(&[
        (b"./", tar::EntryType::Directory, b""),
        (b"./data/", tar::EntryType::Directory, b""),
        (b"./data/big", tar::EntryType::Regular, &big),
        (b"./data/big-copy", tar::EntryType::Regular, &big),
        (b"./data/empty", tar::EntryType::Regular, b""),
        (b"./data/link", tar::EntryType::Symlink, b"big"),
        (b"./data/hard", tar::EntryType::Link, b"./data/big"),
        (b"./data/.wh.gone", tar::EntryType::Regular, b""),
        (b"./opaque/.wh..wh..opq", tar::EntryType::Regular, b""),
    ]);
    let mut blob = Vec::new();
    let out = convert_layer(&tar[..], &mut blob, &opts(64 * 1024), "test").unwrap();
    assert_eq!(out.size, blob.len() as u64);
    let meta = verify_blob(&blob).unwrap();
    assert_eq!(meta, out.meta);
    let big_entry = meta.find(b"data/big").unwrap();
    let EntryKind::File { size, chunks } = &big_entry.kind else {
        panic!("not a file")
    };
    assert_eq!(*size, 400_000);
    assert_eq!(chunks.len(), 7, "400000 bytes in 64 KiB chunks");
    assert_eq!(out.stats.unique_chunks, 7, "the copy shares every chunk");
    assert_eq!(out.stats.chunk_refs, 14);
    assert_eq!(meta.find(b"data/gone").unwrap().kind, EntryKind::Whiteout);
    assert_eq!(
        meta.find(b"opaque").unwrap().kind,
        EntryKind::Dir { opaque: true }
    );
    assert_eq!(
        meta.find(b"data/hard").unwrap().kind,
        EntryKind::Hardlink {
            target: b"data/big".to_vec()
        }
    );
    assert_eq!(
        out.digest,
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&blob))
        )
    );
}

#[test]
fn gzip_and_zstd_layers_give_the_same_blob() {
    let tar = tar_of(&[(b"f", tar::EntryType::Regular, b"hello lazy world")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let digests: Vec<String> = [tar, gz, zst]
        .iter()
        .map(|input| {
            convert_layer(&input[..], Vec::new(), &opts(1024), "t")
                .unwrap()
                .digest
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], digests[2]);
}

fn refused(entries: &[(&[u8], tar::EntryType, &[u8])]) -> ConvertError {
    let tar = tar_of(entries);
    convert_layer(&tar[..], Vec::new(), &opts(1024), "evil").expect_err("unsafe layer converted")
}

#[test]
fn traversal_is_refused_with_the_entry_named() {
    let err = refused(&[(b"../../etc/passwd", tar::EntryType::Regular, b"x")]);
    assert!(
        matches!(&err, ConvertError::UnsafeEntry { entry, .. } if entry == "../../etc/passwd"),
        "{err}"
    );
    let err = refused(&[(b"/etc/passwd", tar::EntryType::Regular, b"x")]);
    assert!(err.to_string().contains("absolute path"), "{err}");
    let err = refused(&[
        (b"evil", tar::EntryType::Symlink, b"/etc"),
        (b"evil/passwd", tar::EntryType::Regular, b"x"),
    ]);
    assert!(
        err.to_string().contains("evil/passwd") && err.to_string().contains("not a directory"),
        "{err}"
    );
    let err = refused(&[(b"l", tar::EntryType::Link, b"../../etc/shadow")]);
    assert!(matches!(err, ConvertError::UnsafeEntry { .. }), "{err}");
}

#[test]
fn broken_input_is_an_error() {
    let tar = tar_of(&[(b"f", tar::EntryType::Regular, &[7u8; 5000])]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let truncated = &gz[..gz.len() / 2];
    let err = convert_layer(truncated, Vec::new(), &opts(1024), "cut").unwrap_err();
    assert!(matches!(err, ConvertError::Read { .. }), "{err}");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
    let err = convert_layer(&garbage[..], Vec::new(), &opts(1024), "junk").unwrap_err();
    assert!(matches!(err, ConvertError::Read { .. }), "{err}");
}

#[test]
fn unpack_applies_whiteouts_and_opaque_dirs() {
    let lower = tar_of(&[
        (b"keep", tar::EntryType::Regular, b"kept"),
        (b"gone", tar::EntryType::Regular, b"x"),
        (b"dir/", tar::EntryType::Directory, b""),
        (b"dir/old", tar::EntryType::Regular, b"old"),
    ]);
    let upper = tar_of(&[
        (b".wh.gone", tar::EntryType::Regular, b""),
        (b"dir/.wh..wh..opq", tar::EntryType::Regular, b""),
        (b"dir/new", tar::EntryType::Regular, b"new"),
    ]);
    let root = tempfile::tempdir().unwrap();
    for (i, tar) in [lower, upper].iter().enumerate() {
        let blob_file = tempfile::tempfile().unwrap();
        let out = convert_layer(&tar[..], &blob_file, &opts(1024), "t").unwrap();
        unpack_layer(root.path(), &out.meta, &blob_file, &i.to_string()).unwrap();
    }
    let p = root.path();
    assert_eq!(std::fs::read(p.join("keep")).unwrap(), b"kept");
    assert!(!p.join("gone").exists());
    assert!(!p.join("dir/old").exists());
    assert_eq!(std::fs::read(p.join("dir/new")).unwrap(), b"new");
}
