//! The cut of one layer blob into pieces: consecutive byte ranges, each
//! stored as one object named by the sha256 of its bytes.
//!
//! Encoding: `LZPIECES1\n`, the blob size (u64 LE), the piece count (u64
//! LE), then per piece its length (u32 LE) and sha256 (32 bytes). Pieces
//! start where the previous one ends; their lengths add up to the blob size.

use std::ops::Range;

const MAGIC: &[u8] = b"LZPIECES1\n";
const HEADER_LEN: usize = MAGIC.len() + 16;
const ENTRY_LEN: usize = 4 + 32;

/// One piece: where it is in the blob, and its object's sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Offset in the blob.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// sha256 of the bytes.
    pub sha256: [u8; 32],
}

impl Piece {
    /// The piece's byte range in the blob.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + u64::from(self.len)
    }

    /// `sha256:<hex>`: the object's digest.
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.sha256))
    }
}

/// How one blob is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceTable {
    blob_size: u64,
    pieces: Vec<Piece>,
}

impl PieceTable {
    /// The cut of a blob of `blob_size` bytes at `cuts` (offsets, in any
    /// order; those at 0, at the end or beyond are ignored), with no piece
    /// longer than `max_piece`. `hash` gives the sha256 of each range.
    pub fn cut(
        blob_size: u64,
        cuts: impl IntoIterator<Item = u64>,
        max_piece: u32,
        mut hash: impl FnMut(Range<u64>) -> std::io::Result<[u8; 32]>,
    ) -> std::io::Result<Self> {
        let mut cuts: Vec<u64> = cuts
            .into_iter()
            .filter(|&c| c > 0 && c < blob_size)
            .collect();
        cuts.push(blob_size);
        cuts.sort_unstable();
        cuts.dedup();
        let max_piece = u64::from(max_piece.max(1));
        let mut pieces = Vec::new();
        let mut start = 0;
        for end in cuts {
            while start < end {
                let piece_end = end.min(start + max_piece);
                let len = u32::try_from(piece_end - start).expect("at most max_piece");
                pieces.push(Piece {
                    offset: start,
                    len,
                    sha256: hash(start..piece_end)?,
                });
                start = piece_end;
            }
        }
        Ok(Self { blob_size, pieces })
    }

    /// The blob's size.
    pub fn blob_size(&self) -> u64 {
        self.blob_size
    }

    /// Every piece, in blob order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The pieces that hold bytes of `range`.
    pub fn overlapping(&self, range: Range<u64>) -> &[Piece] {
        let first = self
            .pieces
            .partition_point(|p| p.range().end <= range.start);
        let end = self.pieces.partition_point(|p| p.offset < range.end);
        &self.pieces[first..end.max(first)]
    }

    /// The table as stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.pieces.len() * ENTRY_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.blob_size.to_le_bytes());
        out.extend_from_slice(&(self.pieces.len() as u64).to_le_bytes());
        for piece in &self.pieces {
            out.extend_from_slice(&piece.len.to_le_bytes());
            out.extend_from_slice(&piece.sha256);
        }
        out
    }

    /// Decodes a stored table of a blob of `blob_size` bytes, checking that
    /// its pieces cover exactly the blob.
    pub fn decode(bytes: &[u8], blob_size: Option<u64>) -> Result<Self, String> {
        let body = bytes
            .strip_prefix(MAGIC)
            .ok_or("not a lazyfs piece table")?;
        let (header, entries) = body.split_at_checked(16).ok_or("truncated piece table")?;
        let word = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
        let (size, count) = (word(0), word(8));
        if blob_size.is_some_and(|expected| expected != size) {
            return Err(format!(
                "piece table of a {size}-byte blob, not {blob_size:?}"
            ));
        }
        if u64::try_from(entries.len()).ok() != count.checked_mul(ENTRY_LEN as u64) {
            return Err(format!(
                "piece table of {count} pieces has {} bytes of entries",
                entries.len()
            ));
        }
        let mut pieces = Vec::new();
        let mut offset = 0u64;
        for entry in entries.chunks_exact(ENTRY_LEN) {
            let len = u32::from_le_bytes(entry[..4].try_into().expect("4 bytes"));
            if len == 0 {
                return Err("piece table has an empty piece".into());
            }
            pieces.push(Piece {
                offset,
                len,
                sha256: entry[4..].try_into().expect("32 bytes"),
            });
            offset += u64::from(len);
        }
        if offset != size {
            return Err(format!("pieces cover {offset} bytes of a {size}-byte blob"));
        }
        Ok(Self {
            blob_size: size,
            pieces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(size: u64, cuts: Vec<u64>, max: u32) -> PieceTable {
        PieceTable::cut(size, cuts, max, |r| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&r.start.to_le_bytes());
            Ok(h)
        })
        .unwrap()
    }

    #[test]
    fn cuts_at_boundaries_and_caps_piece_size() {
        let t = table(100, vec![40, 10, 10, 0, 100, 200], 35);
        let ranges: Vec<_> = t.pieces().iter().map(Piece::range).collect();
        assert_eq!(ranges, [0..10, 10..40, 40..75, 75..100]);
        assert_eq!(t.overlapping(0..1).len(), 1);
        assert_eq!(
            t.overlapping(9..11)
                .iter()
                .map(|p| p.offset)
                .collect::<Vec<_>>(),
            [0, 10]
        );
        assert_eq!(t.overlapping(75..100)[0].offset, 75);
        assert!(t.overlapping(100..100).is_empty());
    }

    #[test]
    fn damaged_tables_are_refused() {
        let bytes = table(100, vec![50], 1000).encode();
        assert!(PieceTable::decode(&bytes, Some(101)).is_err());
        assert!(PieceTable::decode(&bytes[..bytes.len() - 1], None).is_err());
        assert!(PieceTable::decode(b"garbage", None).is_err());
        let mut wrong_sum = bytes.clone();
        wrong_sum[MAGIC.len()] = 99;
        assert!(
            PieceTable::decode(&wrong_sum, None)
                .unwrap_err()
                .contains("cover")
        );
    }

    proptest! {
        #[test]
        fn round_trip_and_cover(size in 1u64..5000, cuts in proptest::collection::vec(0u64..6000, 0..20), max in 1u32..3000) {
            let t = table(size, cuts, max);
            let decoded = PieceTable::decode(&t.encode(), Some(size)).unwrap();
            prop_assert_eq!(&decoded, &t);
            let mut end = 0;
            for p in t.pieces() {
                prop_assert_eq!(p.offset, end);
                prop_assert!(p.len <= max);
                end = p.range().end;
            }
            prop_assert_eq!(end, size);
        }
    }
}
