//! The one line of JSON a client run prints. Every key is always there (null when it does
//! not apply), so the keys stay stable for the scripts that read them.

use std::time::Duration;

use serde_json::{json, Value};

/// One measurement.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub scenario: String,
    pub impl_name: String,
    /// Message size in bytes (payload), where all messages have one.
    pub size: Option<u64>,
    /// Messages, round trips, connections: what the scenario counts (warm-up excluded).
    pub count: Option<u64>,
    pub warmup: Option<u64>,
    pub msgs_per_sec: Option<f64>,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_sec: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub conns_per_sec: Option<f64>,
    pub bytes_per_conn: Option<f64>,
    /// Duration of the measured part.
    pub secs: Option<f64>,
    /// Payload bytes received in the measured part (both ways for `large`).
    pub bytes: Option<u64>,
    /// Bytes on the wire for those payload bytes, frame headers included (the feeds).
    pub wire_bytes: Option<u64>,
    pub rss_before: Option<u64>,
    pub rss_after: Option<u64>,
    pub notes: Option<String>,
    /// Set when this impl cannot run this scenario (exit status 2).
    pub skipped: Option<String>,
    /// Set when the run failed (exit status 1).
    pub error: Option<String>,
}

impl Report {
    pub fn new(scenario: &str, impl_name: &str) -> Self {
        Report {
            scenario: scenario.to_string(),
            impl_name: impl_name.to_string(),
            ..Report::default()
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "impl": self.impl_name,
            "size": self.size,
            "count": self.count,
            "warmup": self.warmup,
            "msgs_per_sec": self.msgs_per_sec.map(round1),
            "mb_per_sec": self.mb_per_sec.map(round1),
            "p50_us": self.p50_us.map(round1),
            "p99_us": self.p99_us.map(round1),
            "conns_per_sec": self.conns_per_sec.map(round1),
            "bytes_per_conn": self.bytes_per_conn.map(round1),
            "secs": self.secs.map(|s| (s * 1e6).round() / 1e6),
            "bytes": self.bytes,
            "wire_bytes": self.wire_bytes,
            "rss_before": self.rss_before,
            "rss_after": self.rss_after,
            "notes": self.notes,
            "skipped": self.skipped,
            "error": self.error,
        })
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted samples, in microseconds.
pub fn percentile_us(sorted: &[Duration], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    Some(sorted[i].as_secs_f64() * 1e6)
}

/// This process's resident memory (VmRSS), in bytes.
pub fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&v, 50.0), Some(50.0));
        assert_eq!(percentile_us(&v, 99.0), Some(99.0));
        assert_eq!(percentile_us(&v[..1], 99.0), Some(1.0));
        assert_eq!(percentile_us(&[], 50.0), None);
    }
}
