//! Latency samples and their percentiles, shared by `loadgen` and `coldstart`.
//!
//! Samples are kept whole and sorted once at the end rather than binned in a
//! histogram: a 10-second run at 2,500 requests/s is 25,000 numbers, and
//! exact nearest-rank percentiles need no extra crate and no bucket error.

use std::fmt;
use std::time::Duration;

/// A set of durations, in the order they were recorded.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

/// The percentiles a report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest sample.
    pub max: Duration,
}

impl Samples {
    /// An empty set with room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            values: Vec::with_capacity(n),
        }
    }

    /// Records one sample.
    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    /// Moves every sample of `other` into this set.
    pub fn append(&mut self, other: &mut Samples) {
        self.values.append(&mut other.values);
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The percentiles, or `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let max = *sorted.last()?;
        Some(Summary {
            count: sorted.len(),
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max,
        })
    }
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of `sorted`, which must be
/// sorted and not empty: the smallest sample that at least `p`% of the
/// samples are less than or equal to (the default value when empty).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A duration in milliseconds with two decimals (`4.87`), as the tables show it.
#[derive(Debug, Clone, Copy)]
pub struct Millis(pub Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0.as_secs_f64() * 1000.0)
    }
}

/// Parses `10s`, `500ms`, `2m` or a plain number of seconds (`10`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s = Samples::default();
        // 1..=100 ms in reverse order: sorting is the summary's job.
        for n in (1..=100).rev() {
            s.push(ms(n));
        }
        let sum = s.summary().unwrap();
        assert_eq!(sum.count, 100);
        assert_eq!(sum.p50, ms(50));
        assert_eq!(sum.p90, ms(90));
        assert_eq!(sum.p99, ms(99));
        assert_eq!(sum.max, ms(100));
    }

    #[test]
    fn one_slow_request_in_a_hundred_is_the_p99() {
        let mut s = Samples::default();
        for _ in 0..99 {
            s.push(ms(1));
        }
        s.push(ms(500));
        let sum = s.summary().unwrap();
        assert_eq!(sum.p99, ms(1));
        assert_eq!(sum.max, ms(500));
        s.push(ms(500));
        assert_eq!(s.summary().unwrap().p99, ms(500));
    }

    #[test]
    fn a_single_sample_is_every_percentile_and_none_is_no_summary() {
        let mut s = Samples::default();
        assert!(s.summary().is_none());
        s.push(ms(7));
        let sum = s.summary().unwrap();
        assert_eq!((sum.p50, sum.p99, sum.max), (ms(7), ms(7), ms(7)));
    }

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(ms(1500)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn millis_show_two_decimals() {
        assert_eq!(Millis(Duration::from_micros(4_870)).to_string(), "4.87");
        assert_eq!(Millis(Duration::from_secs(1)).to_string(), "1000.00");
    }
}
