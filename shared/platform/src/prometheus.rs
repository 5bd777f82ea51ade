//! The metrics `serve` shows at `GET /metrics`, in Prometheus' text format.
//!
//! Every metric the code emits goes through one [`crate::observe::MetricsSink`]:
//! in Lambda it becomes a CloudWatch EMF line, in `serve` it is also
//! recorded here, under the **same name**, with the EMF dimensions as
//! labels, so a dashboard query means the same thing in both places. A
//! `Count` metric is a counter (the sum of the values emitted); a
//! `Milliseconds` metric is a histogram in milliseconds ([`BUCKETS_MS`]),
//! from which `histogram_quantile` gives p50/p95/p99 as CloudWatch's
//! percentiles do. Gauges that are read rather than emitted (queue depth and
//! age) are passed to [`Registry::render`] by the caller, named as the
//! AWS/SQS metrics they stand for.
//!
//! Label values come from code (service, route template, worker, event
//! type), never from request text; still, the number of series is bounded
//! ([`MAX_SERIES`]): past it, new series are dropped (and that is logged
//! once), existing ones keep counting.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::observe::Metric;

/// Upper bounds of the latency histograms' buckets, in milliseconds.
pub const BUCKETS_MS: [f64; 14] = [
    1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 2500.0, 5000.0, 10000.0,
];

/// The most series kept over all metrics.
pub const MAX_SERIES: usize = 10_000;

/// A gauge read at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    /// The metric name.
    pub name: &'static str,
    /// What it means (the `# HELP` line).
    pub help: &'static str,
    /// Its labels, in order.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// Counters and histograms of everything emitted since start.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<Families>,
    overflow_logged: AtomicBool,
}

#[derive(Debug, Default)]
struct Families {
    by_name: HashMap<&'static str, Family>,
    series: usize,
}

#[derive(Debug)]
struct Family {
    unit: &'static str,
    /// Keyed by the rendered label set (`Service="kv",Route="GET /"`).
    series: HashMap<String, Values>,
}

#[derive(Debug)]
enum Values {
    Counter(f64),
    Histogram {
        buckets: [u64; BUCKETS_MS.len()],
        sum: f64,
        count: u64,
    },
}

fn is_histogram(unit: &str) -> bool {
    unit == "Milliseconds"
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `metrics` with `labels` (the EMF dimensions and any extra
    /// labels, in the order they are to be shown).
    pub fn record(&self, labels: &[(&str, &str)], metrics: &[Metric]) {
        let key = render_labels(labels.iter().map(|(k, v)| (*k, *v)));
        let mut families = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Families { by_name, series } = &mut *families;
        for m in metrics {
            let family = by_name.entry(m.name).or_insert_with(|| Family {
                unit: m.unit,
                series: HashMap::new(),
            });
            let values = match family.series.get_mut(key.as_str()) {
                Some(v) => v,
                None if *series >= MAX_SERIES => {
                    if !self.overflow_logged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            max = MAX_SERIES,
                            metric = m.name,
                            "metrics registry full; new series are dropped"
                        );
                    }
                    continue;
                }
                None => {
                    *series += 1;
                    family.series.entry(key.clone()).or_insert_with(|| {
                        if is_histogram(family.unit) {
                            Values::Histogram {
                                buckets: [0; BUCKETS_MS.len()],
                                sum: 0.0,
                                count: 0,
                            }
                        } else {
                            Values::Counter(0.0)
                        }
                    })
                }
            };
            match values {
                Values::Counter(total) => *total += m.value,
                Values::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    if let Some(i) = BUCKETS_MS.iter().position(|b| m.value <= *b) {
                        buckets[i] += 1;
                    }
                    *sum += m.value;
                    *count += 1;
                }
            }
        }
    }

    /// The names recorded so far, sorted.
    #[cfg(test)]
    fn names(&self) -> Vec<&'static str> {
        let families = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut names: Vec<_> = families.by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Everything recorded, then `gauges`, in the text exposition format
    /// (version 0.0.4), families and series sorted.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::with_capacity(4096);
        {
            let families = self
                .families
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut names: Vec<_> = families.by_name.iter().collect();
            names.sort_unstable_by_key(|(name, _)| **name);
            for (name, family) in names {
                let histogram = is_histogram(family.unit);
                let kind = if histogram { "histogram" } else { "counter" };
                let _ = writeln!(out, "# HELP {name} EMF metric {name} ({}).", family.unit);
                let _ = writeln!(out, "# TYPE {name} {kind}");
                let mut series: Vec<_> = family.series.iter().collect();
                series.sort_unstable_by_key(|(labels, _)| labels.as_str());
                for (labels, values) in series {
                    write_values(&mut out, name, labels, values);
                }
            }
        }
        let mut gauges: Vec<&Gauge> = gauges.iter().collect();
        gauges.sort_by(|a, b| a.name.cmp(b.name));
        let mut last = "";
        for g in gauges {
            if g.name != last {
                let _ = writeln!(out, "# HELP {} {}", g.name, g.help);
                let _ = writeln!(out, "# TYPE {} gauge", g.name);
                last = g.name;
            }
            let labels = render_labels(g.labels.iter().map(|(k, v)| (*k, v.as_str())));
            let _ = writeln!(out, "{}{} {}", g.name, braces(&labels), number(g.value));
        }
        out
    }
}

fn write_values(out: &mut String, name: &str, labels: &str, values: &Values) {
    match values {
        Values::Counter(total) => {
            let _ = writeln!(out, "{name}{} {}", braces(labels), number(*total));
        }
        Values::Histogram {
            buckets,
            sum,
            count,
        } => {
            let sep = if labels.is_empty() { "" } else { "," };
            let mut cumulative = 0;
            for (bound, n) in BUCKETS_MS.iter().zip(buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                    number(*bound)
                );
            }
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{} {}", braces(labels), number(*sum));
            let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
        }
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// `k="v",…` with `\`, `"` and line feeds escaped as the format requires.
fn render_labels<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::with_capacity(64);
    for (i, (k, v)) in labels.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

fn number(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(name: &'static str, value: f64) -> Metric {
        Metric {
            name,
            value,
            unit: "Count",
        }
    }

    #[test]
    fn counters_sum_and_histograms_bucket_per_label_set() {
        let r = Registry::new();
        let kv = [("Service", "kv"), ("Route", "GET /v1/kv/{key}")];
        for latency in [0.4, 3.0, 3.0, 7000.0, 20000.0] {
            r.record(
                &kv,
                &[
                    count("Requests", 1.0),
                    Metric {
                        name: "Latency",
                        value: latency,
                        unit: "Milliseconds",
                    },
                ],
            );
        }
        r.record(&[("Service", "auth")], &[count("Requests", 2.0)]);
        let text = r.render(&[Gauge {
            name: "ApproximateNumberOfMessagesVisible",
            help: "Messages waiting.",
            labels: vec![("QueueName", "q\"1".to_owned())],
            value: 3.0,
        }]);
        let lines: Vec<&str> = text.lines().collect();
        for expected in [
            "# TYPE Requests counter",
            r#"Requests{Service="kv",Route="GET /v1/kv/{key}"} 5"#,
            r#"Requests{Service="auth"} 2"#,
            "# TYPE Latency histogram",
            r#"Latency_bucket{Service="kv",Route="GET /v1/kv/{key}",le="1"} 1"#,
            r#"Latency_bucket{Service="kv",Route="GET /v1/kv/{key}",le="5"} 3"#,
            r#"Latency_bucket{Service="kv",Route="GET /v1/kv/{key}",le="10000"} 4"#,
            r#"Latency_bucket{Service="kv",Route="GET /v1/kv/{key}",le="+Inf"} 5"#,
            r#"Latency_sum{Service="kv",Route="GET /v1/kv/{key}"} 27006.4"#,
            r#"Latency_count{Service="kv",Route="GET /v1/kv/{key}"} 5"#,
            "# TYPE ApproximateNumberOfMessagesVisible gauge",
            r#"ApproximateNumberOfMessagesVisible{QueueName="q\"1"} 3"#,
        ] {
            assert!(lines.contains(&expected), "missing {expected}\n{text}");
        }
        assert_eq!(r.names(), ["Latency", "Requests"]);
    }

    #[test]
    fn series_past_the_bound_are_dropped_and_old_ones_still_count() {
        let r = Registry::new();
        for i in 0..MAX_SERIES + 5 {
            r.record(&[("Type", &i.to_string())], &[count("Events", 1.0)]);
        }
        r.record(&[("Type", "0")], &[count("Events", 1.0)]);
        let text = r.render(&[]);
        assert_eq!(
            text.lines().filter(|l| l.starts_with("Events{")).count(),
            MAX_SERIES
        );
        assert!(text.contains("Events{Type=\"0\"} 2\n"), "{text}");
        assert!(!text.contains(&format!("Type=\"{MAX_SERIES}\"")));
    }
}
