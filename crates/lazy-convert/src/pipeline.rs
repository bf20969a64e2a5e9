//! Chunk pipeline: workers hash and compress chunks in parallel; one writer
//! appends them to the blob in submission order, storing each distinct chunk once.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use lazy_format::{ChunkTable, EncodedChunk, encode_chunk};

/// A chunk's position in submission order.
pub(crate) type ChunkSeq = u32;

/// What the writer hands back: the chunk table, the table index of every
/// submitted chunk (by sequence number), and the output.
pub(crate) struct WrittenChunks<W> {
    pub table: ChunkTable,
    pub index_of_seq: Vec<u32>,
    pub out: W,
}

/// The running pipeline; `submit` chunks, then `finish`.
pub(crate) struct ChunkPipeline<'scope, W> {
    jobs: SyncSender<(ChunkSeq, Vec<u8>)>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    writer: ScopedJoinHandle<'scope, io::Result<WrittenChunks<W>>>,
    next_seq: ChunkSeq,
}

impl<'scope, W: Write + Send + 'scope> ChunkPipeline<'scope, W> {
    /// Starts `threads` compression workers and the writer inside `scope`.
    pub(crate) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        out: W,
        threads: usize,
        level: i32,
    ) -> Self {
        let threads = threads.max(1);
        // Bounded queues keep memory at a few chunks per worker.
        let (jobs, job_rx) = sync_channel::<(ChunkSeq, Vec<u8>)>(threads * 2);
        let (done_tx, done_rx) = sync_channel::<(ChunkSeq, EncodedChunk)>(threads * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                scope.spawn(move || compress_jobs(&job_rx, &done_tx, level))
            })
            .collect();
        drop(done_tx);
        let writer = scope.spawn(move || write_in_order(done_rx, out));
        Self {
            jobs,
            workers,
            writer,
            next_seq: 0,
        }
    }

    /// Queues one chunk; blocks while the workers are busy. An error means
    /// the writer has stopped (its own error comes out of `finish`).
    pub(crate) fn submit(&mut self, data: Vec<u8>) -> Result<ChunkSeq, PipelineClosed> {
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(PipelineClosed)?;
        self.jobs.send((seq, data)).map_err(|_| PipelineClosed)?;
        Ok(seq)
    }

    /// Waits for every chunk to be written.
    pub(crate) fn finish(self) -> io::Result<WrittenChunks<W>> {
        drop(self.jobs);
        for worker in self.workers {
            worker.join().expect("compression worker panicked");
        }
        self.writer.join().expect("chunk writer panicked")
    }
}

/// The writer stopped taking chunks.
#[derive(Debug)]
pub(crate) struct PipelineClosed;

fn compress_jobs(
    jobs: &Mutex<Receiver<(ChunkSeq, Vec<u8>)>>,
    done: &SyncSender<(ChunkSeq, EncodedChunk)>,
    level: i32,
) {
    loop {
        let job = jobs.lock().expect("job queue lock").recv();
        let Ok((seq, data)) = job else { return };
        if done.send((seq, encode_chunk(&data, level))).is_err() {
            return;
        }
    }
}

fn write_in_order<W: Write>(
    done: Receiver<(ChunkSeq, EncodedChunk)>,
    mut out: W,
) -> io::Result<WrittenChunks<W>> {
    let mut table = ChunkTable::new();
    let mut index_of_seq = Vec::new();
    let mut waiting = BTreeMap::new();
    let mut next: ChunkSeq = 0;
    for (seq, chunk) in done {
        waiting.insert(seq, chunk);
        // Workers take jobs in order, so at most a few chunks wait here.
        while let Some(chunk) = waiting.remove(&next) {
            let (index, is_new) = table.insert(&chunk);
            if is_new {
                out.write_all(&chunk.bytes)?;
            }
            index_of_seq.push(index);
            next += 1;
        }
    }
    debug_assert!(waiting.is_empty(), "chunks lost in the pipeline");
    Ok(WrittenChunks {
        table,
        index_of_seq,
        out,
    })
}
