//! Invariants every decoded (or about to be encoded) [`LayerMeta`] must hold.

use crate::path::{check_path, invalid};
use crate::{Compression, EntryKind, FormatError, LayerMeta, MAX_CHUNK_SIZE, parent_of};

/// Checks paths, tree shape, references and chunk ranges against chunk data
/// of `data_len` bytes.
pub(crate) fn validate(meta: &LayerMeta, data_len: u64) -> Result<(), FormatError> {
    for (index, chunk) in meta.chunks.iter().enumerate() {
        let bad = |reason| FormatError::InvalidChunk { index, reason };
        if chunk.size > MAX_CHUNK_SIZE {
            return Err(bad("larger than the maximum chunk size"));
        }
        if chunk
            .offset
            .checked_add(u64::from(chunk.stored_len))
            .is_none_or(|end| end > data_len)
        {
            return Err(bad("stored bytes lie outside the chunk data"));
        }
        if chunk.compression == Compression::None && chunk.stored_len != chunk.size {
            return Err(bad("raw chunk whose stored length differs from its size"));
        }
    }

    match meta.entries.first() {
        Some(root) if root.path.is_empty() && matches!(root.kind, EntryKind::Dir { .. }) => {}
        _ => return Err(invalid(b"", "the first entry must be the root directory")),
    }
    for pair in meta.entries.windows(2) {
        if pair[0].path >= pair[1].path {
            return Err(invalid(&pair[1].path, "entries not sorted or duplicated"));
        }
    }
    for entry in &meta.entries {
        let path = &entry.path;
        check_path(path).map_err(|reason| invalid(path, reason))?;
        if entry.mode & !0o7777 != 0 {
            return Err(invalid(path, "mode has bits beyond 0o7777"));
        }
        if entry.mtime_nanos >= 1_000_000_000 {
            return Err(invalid(path, "mtime nanoseconds out of range"));
        }
        if let Some(parent) = parent_of(path) {
            match meta.find(parent) {
                Some(p) if matches!(p.kind, EntryKind::Dir { .. }) => {}
                _ => return Err(invalid(path, "parent is not a directory of this layer")),
            }
        }
        match &entry.kind {
            EntryKind::File { size, chunks } => {
                let mut total: u64 = 0;
                for index in chunks {
                    let chunk = meta
                        .chunks
                        .get(*index as usize)
                        .ok_or_else(|| invalid(path, "chunk index out of range"))?;
                    total = total
                        .checked_add(u64::from(chunk.size))
                        .ok_or_else(|| invalid(path, "size overflow"))?;
                }
                if total != *size {
                    return Err(invalid(
                        path,
                        "file size differs from the sum of its chunks",
                    ));
                }
            }
            EntryKind::Hardlink { target } => match meta.find(target).map(|t| &t.kind) {
                Some(EntryKind::Dir { .. } | EntryKind::Hardlink { .. } | EntryKind::Whiteout)
                | None => {
                    return Err(invalid(
                        path,
                        "hardlink target is not a non-directory entry of this layer",
                    ));
                }
                Some(_) => {}
            },
            EntryKind::Whiteout if path.is_empty() => {
                return Err(invalid(path, "root is a whiteout"));
            }
            _ => {}
        }
    }
    Ok(())
}
