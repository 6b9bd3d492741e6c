//! Small statistics and formatting helpers for the benchmarks.

use std::time::Duration;

/// Median of the samples (mean of the middle two for an even count).
pub fn median(samples: &[Duration]) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

/// Throughput in MiB/s for `bytes` in `d`.
pub fn mib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

/// Samples as `0.412 s` values, comma-separated.
pub fn list(samples: &[Duration]) -> String {
    samples
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        let s = |v: &[u64]| {
            v.iter()
                .map(|&x| Duration::from_millis(x))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(&s(&[5, 1, 3])), Duration::from_millis(3));
        assert_eq!(median(&s(&[4, 1, 3, 2])), Duration::from_micros(2500));
    }
}
