//! A circuit breaker: after a run of failures, stop calling a dependency for
//! a while instead of piling retries onto it.
//!
//! Closed, it counts consecutive failures; the `failure_threshold`-th opens
//! it, which is logged and counted (EMF metric `CircuitOpened`, dimension
//! `Breaker`). Open, [`CircuitBreaker::check`] refuses calls until
//! `open_for` has passed. Then it is half-open: calls go through, and the
//! next result decides: a success closes it (and resets the count), a
//! failure opens it for another `open_for`.
//!
//! Time comes from the [`Clock`] port, so tests move it instead of sleeping.
//! The state sits behind a mutex held only for a few instructions, never
//! across an await: callers check, make their call, then record its result.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::observe::METRICS_NAMESPACE;
use crate::observe::{Metric, MetricsSink};

/// Refused by an open breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; retry in {}s", retry_after.as_secs().max(1))]
pub struct BreakerOpen {
    /// How long until the breaker lets a call through again.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calls go through; this many have failed in a row.
    Closed { failures: u32 },
    /// Calls are refused until `until`.
    Open { until: OffsetDateTime },
    /// `open_for` has passed: calls go through and the next result decides.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    name: String,
    threshold: u32,
    open_for: Duration,
    clock: Arc<dyn Clock>,
    metrics: MetricsSink,
    state: Mutex<State>,
}

/// A circuit breaker around one dependency. Clones share one state.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the metric's `Breaker` dimension) that
    /// opens at the `failure_threshold`-th consecutive failure (at least 1)
    /// and stays open for `open_for`.
    pub fn new(
        name: &str,
        failure_threshold: u32,
        open_for: Duration,
        clock: Arc<dyn Clock>,
        metrics: MetricsSink,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                threshold: failure_threshold.max(1),
                open_for,
                clock,
                metrics,
                state: Mutex::new(State::Closed { failures: 0 }),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok` when a call may go ahead; while open, how long until one may.
    pub fn check(&self) -> Result<(), BreakerOpen> {
        let now = self.inner.clock.now();
        let mut state = self.state();
        match *state {
            State::Open { until } if now < until => Err(BreakerOpen {
                retry_after: (until - now).try_into().unwrap_or_default(),
            }),
            State::Open { .. } => {
                *state = State::HalfOpen;
                Ok(())
            }
            State::Closed { .. } | State::HalfOpen => Ok(()),
        }
    }

    /// A call succeeded: the breaker closes and the failure count restarts.
    pub fn record_success(&self) {
        *self.state() = State::Closed { failures: 0 };
    }

    /// A call failed: the `failure_threshold`-th failure in a row, or any
    /// failure while half-open, opens the breaker for `open_for`.
    pub fn record_failure(&self) {
        let now = self.inner.clock.now();
        let opened = {
            let mut state = self.state();
            let failures = match *state {
                State::Closed { failures } => failures.saturating_add(1),
                State::HalfOpen => self.inner.threshold,
                // A call that began before the breaker opened: it stays open as it is.
                State::Open { .. } => return,
            };
            if failures >= self.inner.threshold {
                let open_for =
                    time::Duration::try_from(self.inner.open_for).unwrap_or(time::Duration::MAX);
                let until = now.checked_add(open_for).unwrap_or(now);
                *state = State::Open { until };
                true
            } else {
                *state = State::Closed { failures };
                false
            }
        };
        if opened {
            self.opened();
        }
    }

    /// Whether calls are being refused now.
    pub fn is_open(&self) -> bool {
        matches!(*self.state(), State::Open { until } if self.inner.clock.now() < until)
    }

    /// Logs and counts one opening (outside the lock: the sink may write).
    fn opened(&self) {
        tracing::warn!(
            breaker = %self.inner.name,
            open_for_secs = self.inner.open_for.as_secs(),
            "circuit breaker opened; calls are refused until it half-opens"
        );
        self.inner.metrics.emit(
            METRICS_NAMESPACE,
            &[("Breaker", &self.inner.name)],
            &[Metric {
                name: "CircuitOpened",
                value: 1.0,
                unit: "Count",
            }],
            &[],
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    struct Fx {
        breaker: CircuitBreaker,
        clock: Arc<ManualClock>,
        lines: Arc<Mutex<Vec<String>>>,
    }

    fn fx() -> Fx {
        let clock = Arc::new(ManualClock::starting_now());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let breaker = CircuitBreaker::new(
            "ses",
            5,
            Duration::from_secs(30),
            clock.clone(),
            MetricsSink::from_fn(move |line| sink.lock().unwrap().push(line)),
        );
        Fx {
            breaker,
            clock,
            lines,
        }
    }

    impl Fx {
        fn fail(&self, times: usize) {
            for _ in 0..times {
                self.breaker.record_failure();
            }
        }

        fn openings(&self) -> usize {
            self.lines.lock().unwrap().len()
        }

        fn advance(&self, secs: i64) {
            self.clock.advance(time::Duration::seconds(secs));
        }
    }

    #[test]
    fn the_fifth_consecutive_failure_opens_it() {
        let fx = fx();
        fx.fail(4);
        assert!(fx.breaker.check().is_ok(), "4 failures stay closed");
        assert!(!fx.breaker.is_open());
        assert_eq!(fx.openings(), 0);
        fx.fail(1);
        assert!(fx.breaker.is_open());
        let refused = fx.breaker.check().unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        fx.advance(10);
        assert_eq!(
            fx.breaker.check().unwrap_err().retry_after,
            Duration::from_secs(20),
            "refused while open, counting down"
        );
        assert_eq!(fx.openings(), 1);
    }

    #[test]
    fn after_open_for_calls_go_through_and_a_success_closes_it() {
        let fx = fx();
        fx.fail(5);
        fx.advance(29);
        assert!(fx.breaker.check().is_err());
        fx.advance(1);
        assert!(!fx.breaker.is_open());
        assert!(fx.breaker.check().is_ok(), "half-open after 30 s");
        assert!(fx.breaker.check().is_ok(), "half-open lets calls through");
        fx.breaker.record_success();
        assert!(fx.breaker.check().is_ok());
        fx.fail(4);
        assert!(
            fx.breaker.check().is_ok(),
            "closed again, with the count reset"
        );
        assert_eq!(fx.openings(), 1);
    }

    #[test]
    fn a_failure_while_half_open_reopens_it() {
        let fx = fx();
        fx.fail(5);
        fx.advance(30);
        assert!(fx.breaker.check().is_ok());
        fx.fail(1);
        assert!(fx.breaker.is_open(), "one failure re-opens it");
        assert_eq!(
            fx.breaker.check().unwrap_err().retry_after,
            Duration::from_secs(30),
            "for another open_for"
        );
        assert_eq!(fx.openings(), 2, "a re-opening counts as an opening");
        fx.advance(30);
        assert!(fx.breaker.check().is_ok());
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let fx = fx();
        fx.fail(4);
        fx.breaker.record_success();
        fx.fail(4);
        assert!(fx.breaker.check().is_ok());
        fx.fail(1);
        assert!(fx.breaker.check().is_err());
    }

    #[test]
    fn failures_while_open_neither_extend_it_nor_count_again() {
        let fx = fx();
        fx.fail(5);
        fx.advance(20);
        fx.fail(10);
        assert_eq!(fx.openings(), 1, "the metric is emitted once per opening");
        fx.advance(10);
        assert!(fx.breaker.check().is_ok(), "still half-opens at 30 s");
    }

    #[test]
    fn the_metric_names_the_breaker() {
        let fx = fx();
        fx.fail(5);
        let lines = fx.lines.lock().unwrap();
        let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(v["CircuitOpened"], 1.0);
        assert_eq!(v["Breaker"], "ses");
        let decl = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(decl["Namespace"], "Constellation");
        assert_eq!(decl["Dimensions"][0], serde_json::json!(["Breaker"]));
        assert_eq!(
            decl["Metrics"][0],
            serde_json::json!({"Name": "CircuitOpened", "Unit": "Count"})
        );
    }

    #[test]
    fn clones_share_their_state_across_threads() {
        let fx = fx();
        let handles: Vec<_> = (0..5)
            .map(|_| {
                let b = fx.breaker.clone();
                std::thread::spawn(move || b.record_failure())
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(fx.breaker.is_open());
        assert_eq!(fx.openings(), 1);
    }
}
