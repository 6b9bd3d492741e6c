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

/// The `p`-th percentile (0 to 100) of `sorted` (ascending), nearest-rank: the smallest
/// sample with at least `p`% of the samples at or below it. `None` when empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // ceil(p/100 * n) in 1..=n, as an index; p is clamped so the cast cannot wrap.
    let rank = (p.clamp(0.0, 100.0) / 100.0 * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Median of `v` (mean of the middle two for an even count); 0 when empty. NaNs sort last.
pub fn median_f64(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `median (min–max)` with `decimals` decimals, e.g. `12.3 (11.9–12.8)`; just the value for
/// one sample, `-` for none.
pub fn median_range(v: &[f64], decimals: usize) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match v.len() {
        0 => "-".to_owned(),
        1 => format!("{:.decimals$}", v[0]),
        _ => format!(
            "{:.decimals$} ({min:.decimals$}–{max:.decimals$})",
            median_f64(v)
        ),
    }
}

/// `a / b`, or NaN when `b` is zero (printed as `NaN`, never a division panic or `inf`).
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
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

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7u32], 99.0), Some(7));
        assert_eq!(percentile(&[1u32, 2, 3], 50.0), Some(2));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        // p99 of 1000 samples is the 990th, not the maximum.
        let v: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&v, 99.0), Some(990));
    }

    #[test]
    fn medians_and_ranges() {
        assert!((median_f64(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median_f64(&[4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < 1e-12);
        assert_eq!(median_f64(&[]), 0.0);
        assert_eq!(median_range(&[12.34, 11.9, 12.81], 1), "12.3 (11.9–12.8)");
        assert_eq!(median_range(&[5.0], 2), "5.00");
        assert_eq!(median_range(&[], 1), "-");
        assert_eq!(median_range(&[100.0, 200.0], 0), "150 (100–200)");
    }

    #[test]
    fn ratios() {
        assert!((ratio(3.0, 2.0) - 1.5).abs() < 1e-12);
        assert!(ratio(1.0, 0.0).is_nan());
    }
}
