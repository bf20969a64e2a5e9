//! Converts one OCI layer stream into one lazy layer blob.

use std::io::{self, Read, Write};

use lazy_format::{EntryKind, LayerMeta, LayerStats, encode_tail};
use sha2::{Digest, Sha256};

use crate::entry::{EntryHeader, read_header};
use crate::error::{ConvertError, Result, lossy};
use crate::input::{decompress, read_full};
use crate::pipeline::{ChunkPipeline, WrittenChunks};
use crate::tar_path::{TarName, classify};
use crate::tree::{LayerTree, TreeError};

/// How layers are converted.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Files larger than this are cut into chunks of this size.
    pub chunk_size: u32,
    /// zstd level for chunk data (1–19).
    pub zstd_level: i32,
    /// Compression threads per layer.
    pub threads: usize,
}

/// Default chunk size: 512 KiB (see bench/ for the trade-off).
pub const DEFAULT_CHUNK_SIZE: u32 = 512 * 1024;

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            zstd_level: 3,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// The result of converting one layer.
#[derive(Debug, Clone)]
pub struct ConvertedLayer {
    /// `sha256:<hex>` of the whole blob.
    pub digest: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Offset of `[metadata][footer]` in the blob.
    pub meta_offset: u64,
    /// Length of `[metadata][footer]`.
    pub meta_len: u64,
    /// The layer's metadata.
    pub meta: LayerMeta,
    /// Counts for reports.
    pub stats: LayerStats,
}

/// Converts the layer read from `input` (tar, tar+gzip or tar+zstd), writing
/// the lazy blob to `out`. `layer` names the layer in errors. The input is
/// read to its end, so a verifying reader can report a digest mismatch.
pub fn convert_layer<R: Read, W: Write + Send>(
    mut input: R,
    out: W,
    opts: &ConvertOptions,
    layer: &str,
) -> Result<ConvertedLayer> {
    let result = convert_stream(&mut input, out, opts, layer);
    if let Err(err) = &result
        && !matches!(err, ConvertError::Write { .. })
    {
        // A corrupt blob often breaks the decompressor or the tar parser
        // before its digest is checked at the end: if the rest of the stream
        // fails verification, that is the error worth reporting.
        if let Err(source) = io::copy(&mut input, &mut io::sink()) {
            return Err(ConvertError::read(layer)(source));
        }
    }
    result
}

fn convert_stream<R: Read, W: Write + Send>(
    input: R,
    out: W,
    opts: &ConvertOptions,
    layer: &str,
) -> Result<ConvertedLayer> {
    let read_err = ConvertError::read(layer);
    let write_err = ConvertError::write(layer);
    let (_, tar_stream) = decompress(input).map_err(read_err)?;
    let out = HashingWriter::new(out);

    std::thread::scope(|scope| {
        let mut pipeline = ChunkPipeline::start(scope, out, opts.threads, opts.zstd_level);
        let read_result = read_tar(tar_stream, &mut pipeline, opts, layer);
        let written = pipeline.finish().map_err(write_err)?;
        let tree = read_result?;
        finish_blob(tree, written, layer)
    })
}

fn finish_blob<W: Write>(
    tree: LayerTree,
    written: WrittenChunks<HashingWriter<W>>,
    layer: &str,
) -> Result<ConvertedLayer> {
    let WrittenChunks {
        table,
        index_of_seq,
        out,
    } = written;
    let meta_offset = table.data_len();
    let mut entries = tree.into_entries();
    for entry in &mut entries {
        if let EntryKind::File { chunks, .. } = &mut entry.kind {
            for seq in chunks.iter_mut() {
                *seq = index_of_seq[*seq as usize];
            }
        }
    }
    let meta = LayerMeta {
        entries,
        chunks: table.into_records(),
    };
    finish_layer(out, meta, meta_offset, layer)
}

/// Ends a layer blob whose chunk data `out` has written: appends the
/// metadata and footer for `meta` (at `meta_offset`), flushes, and
/// describes the blob.
pub(crate) fn finish_layer<W: Write>(
    mut out: HashingWriter<W>,
    meta: LayerMeta,
    meta_offset: u64,
    layer: &str,
) -> Result<ConvertedLayer> {
    let tail = encode_tail(&meta, meta_offset).map_err(|source| ConvertError::Format {
        layer: layer.to_owned(),
        source,
    })?;
    out.write_all(&tail.bytes)
        .and_then(|()| out.flush())
        .map_err(ConvertError::write(layer))?;
    let (digest, size) = out.finish();
    Ok(ConvertedLayer {
        digest,
        size,
        meta_offset,
        meta_len: tail.bytes.len() as u64,
        stats: meta.stats(),
        meta,
    })
}

/// Reads every tar entry into the tree, sending file content to the pipeline
/// (chunk lists hold pipeline sequence numbers until the writer is done).
fn read_tar<'s, W: Write + Send + 's>(
    tar_stream: Box<dyn Read + '_>,
    pipeline: &mut ChunkPipeline<'s, W>,
    opts: &ConvertOptions,
    layer: &str,
) -> Result<LayerTree> {
    let read_err = ConvertError::read(layer);
    let mut archive = tar::Archive::new(tar_stream);
    let mut tree = LayerTree::default();
    let mut buf = vec![0u8; opts.chunk_size as usize];
    for item in archive.entries().map_err(read_err)? {
        let mut item = item.map_err(read_err)?;
        let raw_name = item.path_bytes().into_owned();
        let unsafe_entry = |reason: String| ConvertError::UnsafeEntry {
            layer: layer.to_owned(),
            entry: lossy(&raw_name),
            reason,
        };
        let Some(EntryHeader { entry, content }) =
            read_header(&mut item, layer).map_err(|e| e.named(&raw_name))?
        else {
            continue;
        };
        let entry = match classify(&raw_name).map_err(|r| unsafe_entry(r.to_owned()))? {
            TarName::AufsMeta => continue,
            TarName::Whiteout(path) => {
                tree.whiteout(path, entry)
                    .map_err(|e| tree_error(e, &unsafe_entry))?;
                continue;
            }
            TarName::Opaque(dir) => {
                tree.opaque(dir, entry)
                    .map_err(|e| tree_error(e, &unsafe_entry))?;
                continue;
            }
            TarName::Entry(path) => lazy_format::Entry { path, ..entry },
        };
        let entry = if content {
            let mut chunks = Vec::new();
            let mut size: u64 = 0;
            loop {
                let n = read_full(&mut item, &mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                let seq = pipeline
                    .submit(buf[..n].to_vec())
                    .map_err(|_| read_err(io::Error::other("chunk writer stopped")))?;
                chunks.push(seq);
                if n < buf.len() {
                    break;
                }
            }
            lazy_format::Entry {
                kind: EntryKind::File { size, chunks },
                ..entry
            }
        } else {
            entry
        };
        tree.insert(entry)
            .map_err(|e| tree_error(e, &unsafe_entry))?;
    }
    // Drain trailing padding so a verifying reader sees the end of the blob.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(read_err)?;
    Ok(tree)
}

fn tree_error(err: TreeError, unsafe_entry: &dyn Fn(String) -> ConvertError) -> ConvertError {
    match err {
        TreeError::BeneathNonDirectory { ancestor } => unsafe_entry(format!(
            "lies beneath {:?}, which is not a directory (a symlink would let it escape the root)",
            lossy(&ancestor)
        )),
        TreeError::BadHardlinkTarget => unsafe_entry(
            "hardlink target is not an earlier non-directory entry of this layer".into(),
        ),
    }
}

/// Counts and hashes what passes through to the blob.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    /// Bytes written so far.
    pub(crate) written: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The blob's `sha256:<hex>` digest and size.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
