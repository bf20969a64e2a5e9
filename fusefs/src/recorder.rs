//! Recording which chunks a run reads, for prefetch records.

use std::collections::HashSet;
use std::sync::Mutex;

use lazy_format::PrefetchRecord;

/// Notes chunk reads of the layers of one image while a recording runs.
#[derive(Debug, Default)]
pub struct Recorder {
    recording: Mutex<Option<Recording>>,
}

#[derive(Debug)]
struct Recording {
    record: PrefetchRecord,
    seen: HashSet<(u32, u32)>,
}

impl Recorder {
    /// Starts recording reads of `layers` (digests, manifest order).
    pub fn start(&self, layers: Vec<String>) -> Result<(), String> {
        let mut slot = self.recording.lock().expect("recorder lock");
        if slot.is_some() {
            return Err("a recording is already running".into());
        }
        *slot = Some(Recording {
            record: PrefetchRecord {
                layers,
                chunks: Vec::new(),
            },
            seen: HashSet::new(),
        });
        Ok(())
    }

    /// Notes that chunks `indexes` of layer `digest` were read.
    pub fn note(&self, digest: &str, indexes: &[u32]) {
        let mut slot = self.recording.lock().expect("recorder lock");
        let Some(recording) = slot.as_mut() else {
            return;
        };
        let Some(position) = recording.record.layers.iter().position(|l| l == digest) else {
            return;
        };
        let position = u32::try_from(position).expect("fewer than 4G layers");
        for &index in indexes {
            if recording.seen.insert((position, index)) {
                recording.record.chunks.push((position, index));
            }
        }
    }

    /// Whether a recording runs.
    pub fn is_recording(&self) -> bool {
        self.recording.lock().expect("recorder lock").is_some()
    }

    /// Ends the recording and returns it.
    pub fn stop(&self) -> Option<PrefetchRecord> {
        self.recording
            .lock()
            .expect("recorder lock")
            .take()
            .map(|r| r.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_first_reads_in_order() {
        let r = Recorder::default();
        r.note("a", &[1]);
        r.start(vec!["a".into(), "b".into()]).unwrap();
        assert!(r.start(vec![]).is_err());
        r.note("b", &[5, 6]);
        r.note("a", &[2]);
        r.note("b", &[5]);
        r.note("other", &[9]);
        assert_eq!(r.stop().unwrap().chunks, vec![(1, 5), (1, 6), (0, 2)]);
        assert!(r.stop().is_none());
    }
}
