//! What the link to the chunk source is like, learnt from the range requests
//! made so far: the round trip (the quickest request seen) and the
//! bandwidth (from the bigger responses). Their product is how many bytes
//! a request can carry for about one more round trip's time: how far a
//! miss reads around itself (see [`ReadAround`]).

use std::sync::Mutex;

/// How far past a missed chunk a read fetches the following chunks of the
/// blob (the files next to it: its directory's, in tar order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAround {
    /// Only what the reader asked for.
    Off,
    /// This many stored bytes.
    Bytes(u64),
    /// The link's bandwidth × round trip, within 128 KiB..4 MiB (512 KiB
    /// until requests have measured it).
    Auto,
}

/// Least read-around in `Auto` mode.
pub(crate) const AUTO_MIN: u64 = 128 << 10;
/// Most read-around in `Auto` mode.
pub(crate) const AUTO_MAX: u64 = 4 << 20;
/// Read-around in `Auto` mode before the link is measured.
pub(crate) const AUTO_FIRST: u64 = 512 << 10;

/// Responses this big measure bandwidth; smaller ones are mostly latency.
const BANDWIDTH_SAMPLE_BYTES: u64 = 128 << 10;
/// Weight of a new bandwidth sample in the running average.
const SAMPLE_WEIGHT: f64 = 0.25;

#[derive(Debug, Default)]
struct Measured {
    /// Seconds of the quickest request: round trip plus server time.
    round_trip: Option<f64>,
    /// Running average of bytes per second past the round trip.
    bytes_per_sec: Option<f64>,
}

/// The link as measured so far.
#[derive(Debug, Default)]
pub(crate) struct LinkEstimate {
    measured: Mutex<Measured>,
}

impl LinkEstimate {
    /// Notes a request that brought `bytes` in `seconds`.
    pub(crate) fn observe(&self, bytes: u64, seconds: f64) {
        let mut m = self.measured.lock().expect("link estimate lock");
        let round_trip = m.round_trip.map_or(seconds, |r| r.min(seconds));
        m.round_trip = Some(round_trip);
        let transfer = seconds - round_trip;
        if bytes >= BANDWIDTH_SAMPLE_BYTES && transfer > 0.001 {
            let sample = bytes as f64 / transfer;
            m.bytes_per_sec = Some(match m.bytes_per_sec {
                Some(avg) => avg + SAMPLE_WEIGHT * (sample - avg),
                None => sample,
            });
        }
    }

    /// Bandwidth × round trip in bytes, once both are measured.
    pub(crate) fn bandwidth_delay(&self) -> Option<u64> {
        let m = self.measured.lock().expect("link estimate lock");
        let product = m.bytes_per_sec? * m.round_trip?;
        // Within u64 by far (bounded by 1 EiB); a wild sample saturates.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(product.clamp(0.0, 1e18) as u64)
    }

    /// The read-around `setting` comes to now, in stored bytes.
    pub(crate) fn read_around_bytes(&self, setting: ReadAround) -> u64 {
        match setting {
            ReadAround::Off => 0,
            ReadAround::Bytes(n) => n,
            ReadAround::Auto => self
                .bandwidth_delay()
                .map_or(AUTO_FIRST, |b| b.clamp(AUTO_MIN, AUTO_MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_measured_link_within_bounds() {
        let link = LinkEstimate::default();
        assert_eq!(link.read_around_bytes(ReadAround::Auto), AUTO_FIRST);
        // 100 Mbit/s with a 30 ms request: 1 MiB takes 30 ms + 84 ms.
        link.observe(4 << 10, 0.030);
        link.observe(1 << 20, 0.030 + (1 << 20) as f64 / 12.5e6);
        let bdp = link.bandwidth_delay().unwrap();
        assert!((370_000..=380_000).contains(&bdp), "{bdp}");
        assert_eq!(link.read_around_bytes(ReadAround::Auto), bdp);
        // A quicker request lowers the round trip; a far faster link is capped.
        let fast = LinkEstimate::default();
        fast.observe(4 << 10, 0.5);
        fast.observe(64 << 20, 0.5 + 0.01);
        assert_eq!(fast.read_around_bytes(ReadAround::Auto), AUTO_MAX);
        let slow = LinkEstimate::default();
        slow.observe(1 << 10, 0.001);
        slow.observe(1 << 20, 10.0);
        assert_eq!(slow.read_around_bytes(ReadAround::Auto), AUTO_MIN);
        assert_eq!(slow.read_around_bytes(ReadAround::Off), 0);
        assert_eq!(slow.read_around_bytes(ReadAround::Bytes(7)), 7);
    }

    #[test]
    fn small_responses_measure_no_bandwidth() {
        let link = LinkEstimate::default();
        for _ in 0..10 {
            link.observe(4 << 10, 0.02);
        }
        assert_eq!(link.bandwidth_delay(), None);
    }
}
