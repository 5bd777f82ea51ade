//! Progress of a long migration step (a file, a table, a legacy source) on
//! stderr, where it never mixes with the summary on stdout.
//!
//! On a terminal it is one line redrawn in place at most five times a
//! second: `label [#####.....] done/total  rate/s  ETA mm:ss`. Anywhere else
//! (a CI log, `2> file`) a redrawn line would be noise, so it prints one
//! plain line every 10 s or every 10,000 records, whichever comes first,
//! with the same numbers. Without a known total there is no bar and no ETA.
//! What to print and when is decided by pure code over an injected
//! `Instant`, so the rules are tested without waiting for a clock.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// The shortest time between two redraws on a terminal.
const REDRAW_EVERY: Duration = Duration::from_millis(200);
/// Without a terminal: a line at least this often ...
const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// ... or after this many records since the last line.
const PLAIN_EVERY_RECORDS: u64 = 10_000;
/// The bar's width in characters.
const BAR: u64 = 20;

/// A progress reporter for one step; see the module documentation.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    terminal: bool,
    label: String,
    total: Option<u64>,
    start: Instant,
    /// When and at which count the last line was printed.
    last: Option<(Instant, u64)>,
}

impl Progress {
    /// A reporter labelled `label`, out of `total` records if known; prints
    /// nothing unless `enabled`.
    pub fn new(enabled: bool, label: &str, total: Option<u64>) -> Self {
        Self::with_terminal(enabled, std::io::stderr().is_terminal(), label, total)
    }

    fn with_terminal(enabled: bool, terminal: bool, label: &str, total: Option<u64>) -> Self {
        Self {
            enabled,
            terminal,
            label: label.to_owned(),
            total,
            start: Instant::now(),
            last: None,
        }
    }

    /// `done` records so far: redraws or prints a line when it is time to.
    pub fn record(&mut self, done: u64) {
        if let Some(line) = self.tick(done, Instant::now()) {
            self.emit(&line, false);
        }
    }

    /// The step is over with `done` records: prints the final line (and
    /// ends the terminal's redrawn line), whenever the last one was.
    pub fn finish(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let line = render(&self.label, done, self.total, now - self.start, true);
        self.last = Some((now, done));
        self.emit(&line, true);
    }

    /// The line to print for `done` records at `now`, if it is time for one.
    fn tick(&mut self, done: u64, now: Instant) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let due = match self.last {
            None if self.terminal => true,
            // The first plain line waits like the others: a step of a few
            // records prints only its final line.
            None => now - self.start >= PLAIN_EVERY || done >= PLAIN_EVERY_RECORDS,
            Some((at, _)) if self.terminal => now - at >= REDRAW_EVERY,
            Some((at, count)) => {
                now - at >= PLAIN_EVERY || done.saturating_sub(count) >= PLAIN_EVERY_RECORDS
            }
        };
        if !due {
            return None;
        }
        self.last = Some((now, done));
        Some(render(
            &self.label,
            done,
            self.total,
            now - self.start,
            false,
        ))
    }

    fn emit(&self, line: &str, last: bool) {
        let mut err = std::io::stderr().lock();
        // Progress is a courtesy: a closed stderr must not fail the import.
        let _ = if self.terminal {
            // Back to the start of the line, and clear what is left of a
            // longer previous one.
            write!(err, "\r{line}\x1b[K{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

/// `seconds` as `mm:ss` (minutes grow past 59).
fn clock(seconds: u64) -> String {
    format!("{:02}:{:02}", seconds / 60, seconds % 60)
}

/// One progress line. `finished` replaces the ETA with the time taken.
fn render(label: &str, done: u64, total: Option<u64>, elapsed: Duration, finished: bool) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let mut line = label.to_owned();
    match total {
        Some(total) => {
            let filled = (done.min(total) * BAR).checked_div(total).unwrap_or(BAR);
            let bar: String = (0..BAR)
                .map(|i| if i < filled { '#' } else { '.' })
                .collect();
            line.push_str(&format!(" [{bar}] {done}/{total}  {rate:.0}/s"));
            if finished {
                line.push_str(&format!("  in {}", clock(elapsed.as_secs())));
            } else if rate > 0.0 {
                let left = total.saturating_sub(done) as f64 / rate;
                line.push_str(&format!("  ETA {}", clock(left.ceil() as u64)));
            } else {
                line.push_str("  ETA --:--");
            }
        }
        None => {
            line.push_str(&format!(" {done}  {rate:.0}/s"));
            if finished {
                line.push_str(&format!("  in {}", clock(elapsed.as_secs())));
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_a_total_has_a_bar_a_rate_and_an_eta() {
        let line = render(
            "kv.ns.jsonl",
            250,
            Some(1000),
            Duration::from_secs(5),
            false,
        );
        assert_eq!(
            line,
            "kv.ns.jsonl [#####...............] 250/1000  50/s  ETA 00:15"
        );
        let done = render(
            "kv.ns.jsonl",
            1000,
            Some(1000),
            Duration::from_secs(75),
            true,
        );
        assert_eq!(
            done,
            "kv.ns.jsonl [####################] 1000/1000  13/s  in 01:15"
        );
    }

    #[test]
    fn a_line_without_a_total_has_no_bar_and_no_eta() {
        let line = render("kv", 600, None, Duration::from_secs(2), false);
        assert_eq!(line, "kv 600  300/s");
        assert!(!render("kv", 0, None, Duration::ZERO, false).contains("ETA"));
        // Nothing done yet: no rate to guess an ETA from.
        assert!(render("kv", 0, Some(10), Duration::ZERO, false).ends_with("ETA --:--"));
    }

    #[test]
    fn a_terminal_redraws_at_most_five_times_a_second() {
        let mut p = Progress::with_terminal(true, true, "x", Some(100));
        let t0 = p.start;
        assert!(p.tick(1, t0).is_some(), "the first call draws");
        assert!(p.tick(2, t0 + Duration::from_millis(100)).is_none());
        assert!(p.tick(3, t0 + Duration::from_millis(199)).is_none());
        assert!(p.tick(4, t0 + Duration::from_millis(200)).is_some());
        assert!(p.tick(5, t0 + Duration::from_millis(300)).is_none());
    }

    #[test]
    fn elsewhere_a_line_every_ten_seconds_or_ten_thousand_records() {
        let mut p = Progress::with_terminal(true, false, "x", None);
        let t0 = p.start;
        assert!(p.tick(1, t0).is_none());
        assert!(p.tick(9_999, t0 + Duration::from_secs(1)).is_none());
        assert!(p.tick(10_000, t0 + Duration::from_secs(2)).is_some());
        assert!(p.tick(19_999, t0 + Duration::from_secs(3)).is_none());
        assert!(p.tick(20_000, t0 + Duration::from_secs(4)).is_some());
        assert!(p.tick(20_001, t0 + Duration::from_secs(13)).is_none());
        let line = p
            .tick(20_002, t0 + Duration::from_secs(14))
            .unwrap_or_default();
        assert!(line.starts_with("x 20002 "), "{line}");
    }

    #[test]
    fn disabled_prints_nothing() {
        let mut p = Progress::with_terminal(false, true, "x", Some(1));
        assert!(p.tick(1, p.start + Duration::from_secs(60)).is_none());
    }
}
