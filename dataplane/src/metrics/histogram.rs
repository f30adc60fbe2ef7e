//! A latency histogram that records with a few atomic adds: no lock, no allocation, so
//! every request can be recorded (both request paths call it once or twice per request).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds: Prometheus's default buckets, which ingress-nginx's request
/// duration histograms use too, so their dashboards' quantiles read the same.
pub const BOUNDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// `BOUNDS` in microseconds, compared against a request's duration.
const BOUNDS_MICROS: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// Counts per bucket (not cumulative: one add per observation), the last for values past
/// every bound, and the sum in nanoseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.partition_point(|b| *b < micros);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts) as prometheus-client's encoder takes
    /// them (it makes them cumulative).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BOUNDS.len() + 1);
        for (i, bound) in BOUNDS.iter().chain([f64::INFINITY].iter()).enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            count += n;
            buckets.push((*bound, n));
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_it_does_not_pass() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(5)); // le 0.005: bounds are inclusive
        h.observe(Duration::from_micros(5_001));
        h.observe(Duration::from_secs(11));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 11.010_001).abs() < 1e-9, "{sum}");
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets[1], (0.01, 1));
        assert_eq!(buckets[10], (10.0, 0));
        assert_eq!(buckets[11], (f64::INFINITY, 1));
    }
}
