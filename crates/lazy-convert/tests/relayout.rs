//! Relaying out a converted layer: recorded chunks first, in their order;
//! every file still reads back byte for byte; the blob verifies.

use std::io::Write;

use lazy_convert::{ConvertOptions, chunk_order, convert_layer, relayout_layer};
use lazy_format::{EntryKind, LayerMeta, decode_chunk, verify_blob};
use lazy_testkit::images::noise;

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn file_bytes(blob: &[u8], meta: &LayerMeta, path: &[u8]) -> Vec<u8> {
    let EntryKind::File { chunks, .. } = &meta.find(path).unwrap().kind else {
        panic!("not a file")
    };
    chunks
        .iter()
        .flat_map(|&i| {
            let r = &meta.chunks[usize::try_from(i).unwrap()];
            let range = usize::try_from(r.offset).unwrap()..usize::try_from(r.end()).unwrap();
            decode_chunk(r, &blob[range]).unwrap()
        })
        .collect()
}

fn chunks_of(meta: &LayerMeta, path: &[u8]) -> Vec<u32> {
    match &meta.find(path).unwrap().kind {
        EntryKind::File { chunks, .. } => chunks.clone(),
        _ => panic!("not a file"),
    }
}

#[test]
fn recorded_chunks_come_first_and_files_read_back() {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a", noise(200_000, 1)),
        ("b", noise(10_000, 2)),
        ("c", noise(150_000, 3)),
        ("d", noise(200_000, 1)), // the same chunks as "a"
    ];
    let tar = tar_of(&files);
    let opts = ConvertOptions {
        chunk_size: 64 * 1024,
        zstd_level: 3,
        threads: 2,
    };
    let mut blob = Vec::new();
    let converted = convert_layer(&tar[..], &mut blob, &opts, "test").unwrap();
    let meta = converted.meta;

    // A run read c, then b, then a's second chunk (twice: kept once).
    let mut first = chunks_of(&meta, b"c");
    first.extend(chunks_of(&meta, b"b"));
    first.push(chunks_of(&meta, b"a")[1]);
    first.push(chunks_of(&meta, b"a")[1]);
    first.push(9999); // out of range: ignored

    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&blob).unwrap();
    let mut out = Vec::new();
    let relaid = relayout_layer(&file, &meta, &first, &mut out, "test").unwrap();
    assert_eq!(relaid.size, out.len() as u64);
    let out_meta = verify_blob(&out).unwrap();
    assert_eq!(out_meta, relaid.meta);
    assert_eq!(
        out_meta.entries, meta.entries,
        "entries and chunk indices unchanged"
    );
    assert_ne!(relaid.digest, converted.digest);

    // The recorded chunks sit at the start, back to back, in read order.
    let order = chunk_order(&meta, &first);
    assert_eq!(order.len(), meta.chunks.len());
    assert_eq!(&order[..first.len() - 2], &first[..first.len() - 2]);
    let mut at = 0;
    for &i in &order {
        assert_eq!(out_meta.chunks[i as usize].offset, at);
        at += u64::from(out_meta.chunks[i as usize].stored_len);
    }
    assert_eq!(at, relaid.meta_offset);
    for (name, data) in &files {
        assert_eq!(
            &file_bytes(&out, &out_meta, name.as_bytes()),
            data,
            "{name}"
        );
    }
}
