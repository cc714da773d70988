//! Latency histograms (log-linear buckets, under 1% error) and number formatting.

/// Values below this are kept exactly.
const EXACT: u64 = 256;
/// Sub-buckets per power of two above [`EXACT`]: a relative error of at most 1/128.
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;

/// A histogram of microsecond values; mergeable, fixed memory.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index_of(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros(); // >= 8
    let shift = msb - SUB_BITS;
    let mantissa = (v >> shift) & (SUB - 1);
    (EXACT + u64::from(msb - 8) * SUB + mantissa) as usize
}

/// The smallest value of a bucket.
fn value_of(index: usize) -> u64 {
    let i = index as u64;
    if i < EXACT {
        return i;
    }
    let rel = i - EXACT;
    let msb = (rel / SUB) as u32 + 8;
    let mantissa = rel % SUB;
    (1u64 << msb) | (mantissa << (msb - SUB_BITS))
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; index_of(u64::MAX) + 1],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0..=1), within the bucket precision; the exact maximum for 1.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value_of(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Microseconds as milliseconds: `0.84`, `12.3`, `1520`.
pub fn ms(micros: u64) -> String {
    let v = micros as f64 / 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Thousands separators: `200,000`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let head = s.len() % 3;
    let mut out = s[..head].to_owned();
    for chunk in s.as_bytes()[head..].chunks(3) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

/// A rate rounded to three significant figures, with separators.
pub fn rate(per_sec: f64) -> String {
    if !per_sec.is_finite() || per_sec <= 0.0 {
        return "0".into();
    }
    let digits = per_sec.log10().floor() as i32;
    let scale = 10f64.powi((digits - 2).max(0));
    thousands(((per_sec / scale).round() * scale) as u64)
}

/// Bytes as KiB with one decimal.
pub fn kib(bytes: f64) -> String {
    format!("{:.1}", bytes / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_precision() {
        for v in [
            0u64,
            1,
            255,
            256,
            257,
            1000,
            12_345,
            1 << 20,
            987_654_321,
            u64::MAX / 3,
        ] {
            let lo = value_of(index_of(v));
            assert!(lo <= v, "{v}: {lo}");
            assert!((v - lo) as f64 <= v as f64 / 128.0 + 1.0, "{v}: {lo}");
        }
        for i in 0..index_of(u64::MAX) {
            assert!(value_of(i) < value_of(i + 1));
            assert_eq!(index_of(value_of(i)), i);
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile(0.5), 500);
        let p99 = h.quantile(0.99);
        assert!((982..=990).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1000);
        let mut other = Histogram::new();
        other.record(5000);
        h.merge(&other);
        assert_eq!(h.max(), 5000);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(200_000), "200,000");
        assert_eq!(thousands(12), "12");
        assert_eq!(thousands(1_234), "1,234");
        assert_eq!(thousands(0), "0");
        assert_eq!(rate(123_456.0), "123,000");
        assert_eq!(ms(840), "0.84");
        assert_eq!(ms(12_345), "12.3");
    }
}
