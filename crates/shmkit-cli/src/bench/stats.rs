//! Percentiles of round-trip samples.

use serde::Serialize;

/// Round-trip times of one transport at one size, in nanoseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    /// Summarises `samples` (sorted in place); `None` if there are none.
    pub fn of(samples: &mut [u64]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        Some(Latency {
            samples: samples.len(),
            mean: samples.iter().map(|&s| s as f64).sum::<f64>() / samples.len() as f64,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: *samples.last().expect("not empty"),
        })
    }
}

/// Streaming results of one transport at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub messages: u64,
    pub seconds: f64,
    pub messages_per_sec: f64,
    pub gigabytes_per_sec: f64,
}

impl Throughput {
    pub fn of(messages: u64, size: usize, seconds: f64) -> Throughput {
        let seconds = seconds.max(1e-9);
        Throughput {
            messages,
            seconds,
            messages_per_sec: messages as f64 / seconds,
            gigabytes_per_sec: (messages as f64 * size as f64) / seconds / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let mut v: Vec<u64> = (1..=1000).rev().collect();
        let l = Latency::of(&mut v).unwrap();
        assert_eq!((l.p50, l.p99, l.p999, l.max), (501, 991, 1000, 1000));
        assert_eq!(l.mean, 500.5);
        assert!(Latency::of(&mut []).is_none());
    }

    #[test]
    fn throughput_counts_bytes_and_messages() {
        let t = Throughput::of(1000, 1_000_000, 2.0);
        assert_eq!(t.messages_per_sec, 500.0);
        assert_eq!(t.gigabytes_per_sec, 0.5);
    }
}
