//! Coalescing: adjacent missing chunks of one blob become one range read.

use std::ops::Range;

use lazy_format::ChunkRecord;

/// Groups `records` (sorted by offset) into runs whose stored bytes are at
/// most `max_gap` apart and span at most `max_span` bytes (a single chunk
/// larger than that is a run of its own). Returns index ranges into `records`.
pub(crate) fn coalesce(records: &[ChunkRecord], max_gap: u64, max_span: u64) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=records.len() {
        let split = match records.get(i) {
            None => true,
            Some(next) => {
                let run_start = records[start].offset;
                let prev_end = records[i - 1].end();
                next.offset.saturating_sub(prev_end) > max_gap
                    || next.end().saturating_sub(run_start) > max_span
            }
        };
        if split {
            runs.push(start..i);
            start = i;
        }
    }
    runs
}

/// The byte range covering a run of records.
pub(crate) fn span(run: &[ChunkRecord]) -> Range<u64> {
    let start = run.first().map_or(0, |r| r.offset);
    let end = run.iter().map(ChunkRecord::end).max().unwrap_or(start);
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazy_format::{ChunkDigest, Compression};

    fn rec(offset: u64, len: u32) -> ChunkRecord {
        ChunkRecord {
            digest: ChunkDigest([0; 32]),
            offset,
            stored_len: len,
            size: len,
            compression: Compression::None,
        }
    }

    #[test]
    fn joins_neighbours_within_gap_and_span() {
        let r = [
            rec(0, 10),
            rec(10, 10),
            rec(25, 10),
            rec(100, 10),
            rec(110, 50),
        ];
        assert_eq!(coalesce(&r, 5, 1000), vec![0..3, 3..5]);
        assert_eq!(coalesce(&r, 0, 1000), vec![0..2, 2..3, 3..5]);
        assert_eq!(coalesce(&r, 100, 40), vec![0..3, 3..4, 4..5]);
        assert_eq!(span(&r[0..3]), 0..35);
        assert!(coalesce(&[], 5, 5).is_empty());
    }
}
