//! Schedules: a handler run at a rate or cron expression.
//!
//! The expression is written once, in EventBridge Scheduler's syntax
//! (`rate(1 minute)`, `cron(0 7 * * ? *)`), in the service's description;
//! template.yaml's `ScheduleExpression` is the same string (a test checks), and
//! `serve` computes the next run from it with [`ScheduleExpr::next_after`].
//! The handler receives a [`ScheduledEvent`], the JSON the template's
//! `Input` gives EventBridge Scheduler, so `constellation run <schedule>`,
//! `serve` and Lambda all call it with the same payload.
//!
//! Cron fields are minutes, hours, day-of-month, month, day-of-week, year
//! (UTC), with `*`, `?`, lists, ranges and `/` steps, month names `JAN`-`DEC`
//! and day names `SUN`-`SAT` (1 = Sunday). AWS's `L`, `W` and `#` are refused:
//! no schedule here uses them, and refusing is better than running at the
//! wrong time locally.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::observe::{METRICS_NAMESPACE, Metric, MetricsSink};
use crate::trace;

/// The payload a schedule's handler receives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledEvent {
    /// The schedule's name (as in the service description and template.yaml).
    #[serde(default)]
    pub schedule: String,
    /// When this run was due (RFC 3339), if the scheduler said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
    /// The scheduler's id for this run, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// The day a daily job covers (`YYYY-MM-DD`), when run by hand for a
    /// given day (`constellation run <schedule> --date`); scheduled runs
    /// leave it out and the job derives its day from `scheduled_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// What a schedule runs.
#[async_trait]
pub trait ScheduledHandler: Send + Sync + std::fmt::Debug {
    /// Runs once; the returned JSON is the run's report (logged, and the
    /// Lambda function's result).
    async fn run(&self, event: ScheduledEvent) -> anyhow::Result<Value>;
}

/// `handler` counted and traced: each run starts a trace (the Lambda
/// invocation's, else a new one) that the events it commits carry, and
/// emits `ScheduleRuns` and `ScheduleFailures` (dimension `Schedule` =
/// `name`).
pub fn observed(
    name: &'static str,
    handler: Arc<dyn ScheduledHandler>,
    metrics: MetricsSink,
) -> Arc<dyn ScheduledHandler> {
    Arc::new(Observed {
        name,
        handler,
        metrics,
    })
}

#[derive(Debug)]
struct Observed {
    name: &'static str,
    handler: Arc<dyn ScheduledHandler>,
    metrics: MetricsSink,
}

#[async_trait]
impl ScheduledHandler for Observed {
    async fn run(&self, event: ScheduledEvent) -> anyhow::Result<Value> {
        let invocation = std::env::var("_X_AMZN_TRACE_ID").ok();
        let work = trace::Work::start([invocation.as_deref()]);
        let span = tracing::info_span!(
            "schedule",
            schedule = self.name,
            trace_id = %work.trace_id,
            span_id = %work.span_id,
            parent_id = work.parent_id.as_deref(),
        );
        let result = trace::scope(work.header, self.handler.run(event))
            .instrument(span)
            .await;
        self.metrics.emit(
            METRICS_NAMESPACE,
            &[("Schedule", self.name)],
            &[
                Metric {
                    name: "ScheduleRuns",
                    value: 1.0,
                    unit: "Count",
                },
                Metric {
                    name: "ScheduleFailures",
                    value: if result.is_err() { 1.0 } else { 0.0 },
                    unit: "Count",
                },
            ],
            &[],
        );
        result
    }
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule expression `{expr}`: {reason}")]
pub struct ExprError {
    expr: String,
    reason: String,
}

/// A parsed `rate(...)` or `cron(...)` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpr {
    /// Every so often.
    Rate(Duration),
    /// At the times the fields match.
    Cron(Box<Cron>),
}

/// The fields of a cron expression, each the set of values it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Option<Vec<bool>>,
    months: Vec<bool>,
    weekdays: Option<Vec<bool>>,
    years: Vec<bool>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FIRST_YEAR: u32 = 1970;
const LAST_YEAR: u32 = 2199;

impl FromStr for ScheduleExpr {
    type Err = ExprError;

    fn from_str(expr: &str) -> Result<Self, ExprError> {
        let err = |reason: &str| ExprError {
            expr: expr.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(inner) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
            let (n, unit) = inner
                .trim()
                .split_once(' ')
                .ok_or_else(|| err("a rate is `rate(<n> <unit>)`"))?;
            let n: u64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| err("the rate's value must be a positive whole number"))?;
            let seconds = match (n, unit) {
                (1, "minute") | (2.., "minutes") => 60,
                (1, "hour") | (2.., "hours") => 3600,
                (1, "day") | (2.., "days") => 86_400,
                _ => {
                    return Err(err(
                        "the unit is minute(s), hour(s) or day(s), singular for 1",
                    ));
                }
            };
            return Ok(Self::Rate(Duration::from_secs(n.saturating_mul(seconds))));
        }
        if let Some(inner) = expr.strip_prefix("cron(").and_then(|s| s.strip_suffix(')')) {
            let fields: Vec<&str> = inner.split_whitespace().collect();
            let [min, hour, dom, month, dow, year] = fields[..] else {
                return Err(err("a cron expression has six fields"));
            };
            let field = |text: &str, lo: u32, hi: u32, names: &[&str]| {
                parse_field(text, lo, hi, names).map_err(|r| err(&r))
            };
            let days = (dom != "?").then(|| field(dom, 1, 31, &[])).transpose()?;
            let weekdays = (dow != "?").then(|| field(dow, 1, 7, &DAYS)).transpose()?;
            if days.is_some() == weekdays.is_some() {
                return Err(err(
                    "exactly one of day-of-month and day-of-week must be `?`",
                ));
            }
            return Ok(Self::Cron(Box::new(Cron {
                minutes: field(min, 0, 59, &[])?,
                hours: field(hour, 0, 23, &[])?,
                days,
                months: field(month, 1, 12, &MONTHS)?,
                weekdays,
                years: field(year, FIRST_YEAR, LAST_YEAR, &[])?,
            })));
        }
        Err(err("expected `rate(...)` or `cron(...)`"))
    }
}

/// Parses one cron field into a membership table indexed by `value - lo`.
fn parse_field(text: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<bool>, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(lo + i as u32);
        }
        match s.parse::<u32>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(format!("`{s}` is not a value from {lo} to {hi}")),
        }
    };
    let mut set = vec![false; (hi - lo + 1) as usize];
    for part in text.split(',') {
        if part.contains(['L', 'W', '#']) && !names.iter().any(|n| part.contains(n)) {
            return Err(format!("`{part}`: L, W and # are not supported"));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("`{part}`: the step must be a positive number"))?,
            ),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(format!("`{part}`: the range runs backwards"));
        }
        for v in (from..=to).step_by(step as usize) {
            set[(v - lo) as usize] = true;
        }
    }
    Ok(set)
}

impl Cron {
    fn day_matches(&self, t: OffsetDateTime) -> bool {
        let month_ok = self.months[usize::from(u8::from(t.month())) - 1];
        let year_ok = u32::try_from(t.year())
            .ok()
            .and_then(|y| y.checked_sub(FIRST_YEAR))
            .and_then(|i| self.years.get(i as usize).copied())
            .unwrap_or(false);
        let dom_ok = self
            .days
            .as_ref()
            .is_none_or(|d| d[usize::from(t.day()) - 1]);
        let dow_ok = self
            .weekdays
            .as_ref()
            .is_none_or(|d| d[usize::from(t.weekday().number_days_from_sunday())]);
        month_ok && year_ok && dom_ok && dow_ok
    }
}

impl ScheduleExpr {
    /// The first time strictly after `after` at which the schedule fires
    /// (rates fire every interval from `after`); `None` if it never does again.
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Self::Rate(every) => Some(after + *every),
            Self::Cron(cron) => {
                let start = after.replace_second(0).ok()?.replace_nanosecond(0).ok()?
                    + time::Duration::minutes(1);
                let mut day = start.replace_time(time::Time::MIDNIGHT);
                let last = OffsetDateTime::new_utc(
                    time::Date::from_calendar_date(LAST_YEAR as i32, time::Month::December, 31)
                        .ok()?,
                    time::Time::MIDNIGHT,
                );
                while day <= last {
                    if cron.day_matches(day) {
                        for (h, _) in cron.hours.iter().enumerate().filter(|(_, on)| **on) {
                            for (m, _) in cron.minutes.iter().enumerate().filter(|(_, on)| **on) {
                                let t = day + time::Duration::minutes((h * 60 + m) as i64);
                                if t >= start {
                                    return Some(t);
                                }
                            }
                        }
                    }
                    day += time::Duration::days(1);
                }
                None
            }
        }
    }
}

impl fmt::Display for ScheduleExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate(d) => write!(f, "every {}s", d.as_secs()),
            Self::Cron(_) => f.write_str("cron"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        expr.parse::<ScheduleExpr>()
            .unwrap()
            .next_after(after)
            .unwrap()
    }

    #[test]
    fn rates() {
        let t = datetime!(2026-01-01 10:00:30 UTC);
        assert_eq!(
            next("rate(1 minute)", t),
            datetime!(2026-01-01 10:01:30 UTC)
        );
        assert_eq!(
            next("rate(5 minutes)", t),
            datetime!(2026-01-01 10:05:30 UTC)
        );
        assert_eq!(next("rate(2 hours)", t), datetime!(2026-01-01 12:00:30 UTC));
        assert_eq!(next("rate(1 day)", t), datetime!(2026-01-02 10:00:30 UTC));
        for bad in [
            "rate(0 minutes)",
            "rate(1 minutes)",
            "rate(2 minute)",
            "rate(1 week)",
            "rate()",
            "rate(x minutes)",
        ] {
            assert!(bad.parse::<ScheduleExpr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn daily_report_at_seven() {
        let e = "cron(0 7 * * ? *)";
        assert_eq!(
            next(e, datetime!(2026-03-01 06:59:59 UTC)),
            datetime!(2026-03-01 07:00 UTC)
        );
        assert_eq!(
            next(e, datetime!(2026-03-01 07:00 UTC)),
            datetime!(2026-03-02 07:00 UTC)
        );
        assert_eq!(
            next(e, datetime!(2026-12-31 08:00 UTC)),
            datetime!(2027-01-01 07:00 UTC)
        );
    }

    #[test]
    fn steps_lists_ranges_and_names() {
        let t = datetime!(2026-03-04 10:07 UTC); // a Wednesday
        assert_eq!(
            next("cron(0/15 * * * ? *)", t),
            datetime!(2026-03-04 10:15 UTC)
        );
        assert_eq!(
            next("cron(5,50 10 * * ? *)", t),
            datetime!(2026-03-04 10:50 UTC)
        );
        assert_eq!(
            next("cron(0 9 ? * MON-FRI *)", t),
            datetime!(2026-03-05 09:00 UTC)
        );
        assert_eq!(
            next("cron(0 9 ? * 1 *)", t),
            datetime!(2026-03-08 09:00 UTC),
            "1 is Sunday"
        );
        assert_eq!(
            next("cron(0 0 1 JAN,JUL ? *)", t),
            datetime!(2026-07-01 00:00 UTC)
        );
        assert_eq!(
            next("cron(30 12 29 2 ? 2026-2030)", t),
            datetime!(2028-02-29 12:30 UTC)
        );
        assert_eq!(
            "cron(0 0 1 1 ? 2020)"
                .parse::<ScheduleExpr>()
                .unwrap()
                .next_after(t),
            None,
            "a past year never fires"
        );
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for bad in [
            "cron(0 7 * * * *)",
            "cron(0 7 ? * ? *)",
            "cron(0 7 L * ? *)",
            "cron(0 7 ? * 6#3 *)",
            "cron(0 7 15W * ? *)",
            "cron(60 7 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 7 * * ?)",
            "cron(5-1 7 * * ? *)",
            "cron(*/0 7 * * ? *)",
            "every minute",
        ] {
            assert!(bad.parse::<ScheduleExpr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_event_round_trips_with_missing_fields() {
        let e: ScheduledEvent = serde_json::from_str("{}").unwrap();
        assert_eq!(e, ScheduledEvent::default());
        let e: ScheduledEvent = serde_json::from_str(
            r#"{"schedule":"kv-outbox","scheduled_time":"2026-01-01T00:00:00Z","execution_id":"x","extra":1}"#,
        )
        .unwrap();
        assert_eq!(e.schedule, "kv-outbox");
    }
}
