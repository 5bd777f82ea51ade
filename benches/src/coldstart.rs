//! Cold-start meter: runs a Lambda bootstrap N times against the fake
//! Runtime API, one invocation per process, as Lambda does for a new
//! execution environment.
//!
//! Per run it measures, from just before the process is spawned:
//! - **init**: until the first `GET /invocation/next` (the function's own
//!   start-up: runtime, configuration, SDK clients, secrets it reads eagerly);
//! - **cold**: until the first invocation's response arrives (init plus the
//!   first request, which pays for lazily built clients and first connections);
//! - **peak RSS**: `VmHWM` from `/proc/<pid>/status`, read once the function
//!   polls again after answering (so the invocation's memory is included),
//!   just before the process is killed.
//!
//! A run fails loudly (with the end of the function's log) when the function
//! exits, reports an init or invocation error, answers something the
//! `expect` checks reject, or takes longer than the timeout.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use tokio::sync::mpsc::unbounded_channel;

use crate::runtime_api::{FakeRuntimeApi, Invocation, Step};
use crate::stats::{Millis, Samples, Summary, percentile};

/// What to run and how often.
#[derive(Debug, Clone)]
pub struct ColdStartConfig {
    /// The bootstrap binary.
    pub bootstrap: PathBuf,
    /// The function's name (`AWS_LAMBDA_FUNCTION_NAME`, and the report's label).
    pub name: String,
    /// The event handed to each run.
    pub event: Bytes,
    /// Measured runs.
    pub runs: usize,
    /// Runs done first and not counted (they load the binary into the page cache).
    pub warmup: usize,
    /// The most one run may take.
    pub timeout: Duration,
    /// Top-level fields the response must have, with their values.
    pub expect: Vec<(String, serde_json::Value)>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u32,
    /// Where the function's stdout and stderr go.
    pub log: PathBuf,
}

/// One measured run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTimes {
    /// Spawn to first poll.
    pub init: Duration,
    /// Spawn to first response.
    pub cold: Duration,
    /// Peak resident set, in KiB.
    pub peak_rss_kib: u64,
}

/// The runs of one function.
#[derive(Debug, Clone)]
pub struct ColdStartReport {
    /// The function's name.
    pub name: String,
    /// Every measured run, in order.
    pub runs: Vec<RunTimes>,
}

impl ColdStartReport {
    fn summary(&self, f: impl Fn(&RunTimes) -> Duration) -> Option<Summary> {
        let mut s = Samples::with_capacity(self.runs.len());
        for r in &self.runs {
            s.push(f(r));
        }
        s.summary()
    }

    /// Median, p90 and maximum peak RSS in KiB (zeros without runs).
    pub fn rss_kib(&self) -> (u64, u64, u64) {
        let mut v: Vec<u64> = self.runs.iter().map(|r| r.peak_rss_kib).collect();
        v.sort_unstable();
        (
            percentile(&v, 50.0),
            percentile(&v, 90.0),
            v.last().copied().unwrap_or_default(),
        )
    }

    /// One markdown table row: name, runs, init p50/p90, cold p50/p90, peak RSS p50/max.
    pub fn row(&self) -> String {
        let init = self.summary(|r| r.init);
        let cold = self.summary(|r| r.cold);
        let ms = |s: Option<Summary>, f: fn(&Summary) -> Duration| {
            s.map_or("-".to_owned(), |s| Millis(f(&s)).to_string())
        };
        let (rss50, _, rss_max) = self.rss_kib();
        format!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            self.name,
            self.runs.len(),
            ms(init, |s| s.p50),
            ms(init, |s| s.p90),
            ms(cold, |s| s.p50),
            ms(cold, |s| s.p90),
            rss50 as f64 / 1024.0,
            rss_max as f64 / 1024.0,
        )
    }

    /// The header of [`ColdStartReport::row`]'s table.
    pub fn header() -> &'static str {
        "| function | runs | init p50 ms | init p90 ms | cold start p50 ms | cold start p90 ms | peak RSS p50 MiB | peak RSS max MiB |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    }

    /// The numbers as JSON (for scripts/bench's tables).
    pub fn json(&self) -> serde_json::Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let pair = |s: Option<Summary>| {
            s.map(|s| serde_json::json!({"p50": ms(s.p50), "p90": ms(s.p90), "max": ms(s.max)}))
        };
        let (rss50, rss90, rss_max) = self.rss_kib();
        serde_json::json!({
            "function": self.name,
            "runs": self.runs.len(),
            "init_ms": pair(self.summary(|r| r.init)),
            "cold_ms": pair(self.summary(|r| r.cold)),
            "peak_rss_kib": {"p50": rss50, "p90": rss90, "max": rss_max},
        })
    }
}

/// Parses `field=value` (the value as JSON when it is, else as a string).
pub fn parse_expect(text: &str) -> Result<(String, serde_json::Value), String> {
    let (field, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected field=value, such as statusCode=200"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
    Ok((field.to_owned(), value))
}

/// Checks the response body against `expect`.
pub fn check_response(body: &[u8], expect: &[(String, serde_json::Value)]) -> anyhow::Result<()> {
    if expect.is_empty() {
        return Ok(());
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).context("the response is not JSON")?;
    for (field, want) in expect {
        let got = json.get(field);
        if got != Some(want) {
            bail!(
                "response field `{field}` is {}, expected {want}",
                got.map_or("missing".to_owned(), ToString::to_string)
            );
        }
    }
    Ok(())
}

/// `VmHWM` (peak resident set) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_vm_hwm(&status).with_context(|| format!("no VmHWM line in {path}"))
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The last `n` lines of the log, to show with a failure.
fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills the child (if it still runs) and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs the function `cfg.warmup + cfg.runs` times and returns the measured runs.
pub async fn measure(cfg: &ColdStartConfig) -> anyhow::Result<ColdStartReport> {
    let api = FakeRuntimeApi::start().await?;
    let mut runs = Vec::with_capacity(cfg.runs);
    for i in 0..cfg.warmup + cfg.runs {
        let result = one_run(cfg, &api, i).await;
        api.disarm();
        let times = result.with_context(|| {
            format!(
                "{}: run {} failed; the end of its log ({}):\n{}",
                cfg.name,
                i + 1,
                cfg.log.display(),
                log_tail(&cfg.log, 20)
            )
        })?;
        if i >= cfg.warmup {
            runs.push(times);
        }
    }
    Ok(ColdStartReport {
        name: cfg.name.clone(),
        runs,
    })
}

async fn one_run(
    cfg: &ColdStartConfig,
    api: &FakeRuntimeApi,
    i: usize,
) -> anyhow::Result<RunTimes> {
    let (tx, mut steps) = unbounded_channel();
    api.arm(
        Invocation {
            request_id: format!("bench-{}-{i}", std::process::id()),
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                cfg.name
            ),
            event: cfg.event.clone(),
            timeout: cfg.timeout,
        },
        tx,
    );
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&cfg.log)
        .with_context(|| format!("open {}", cfg.log.display()))?;
    let log_err = log.try_clone().context("clone the log handle")?;
    let task_root = cfg
        .bootstrap
        .parent()
        .map_or_else(|| ".".into(), |p| p.display().to_string());
    let mut command = Command::new(&cfg.bootstrap);
    command
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", &cfg.name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", cfg.memory_mb.to_string())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", cfg.name),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("_HANDLER", "bootstrap")
        .env("LAMBDA_TASK_ROOT", task_root)
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        // Lambda sets none of these; inherited, they would make every error
        // capture a backtrace, or the SDK load a CA bundle file at start.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    // template.yaml's LoggingConfig, which Lambda passes as these.
    for (var, value) in [
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(var).is_none() {
            command.env(var, value);
        }
    }

    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("spawn {}", cfg.bootstrap.display()))?;
    let outcome = watch_run(cfg, &mut child, &mut steps, started).await;
    stop(&mut child);
    outcome
}

/// Follows one run's steps to the second poll, then reads the peak RSS.
async fn watch_run(
    cfg: &ColdStartConfig,
    child: &mut Child,
    steps: &mut tokio::sync::mpsc::UnboundedReceiver<Step>,
    started: Instant,
) -> anyhow::Result<RunTimes> {
    let deadline = tokio::time::Instant::from_std(started + cfg.timeout);
    let mut init = None;
    let mut cold = None;
    let mut exit_check = tokio::time::interval(Duration::from_millis(2));
    loop {
        tokio::select! {
            step = steps.recv() => match step {
                Some(Step::Poll { number: 1, at }) => init = Some(at - started),
                Some(Step::Poll { at: _, .. }) => {
                    let (Some(init), Some(cold)) = (init, cold) else {
                        bail!("polled again before answering the invocation");
                    };
                    let peak_rss_kib = peak_rss_kib(child.id())?;
                    return Ok(RunTimes { init, cold, peak_rss_kib });
                }
                Some(Step::Response { at, body }) => {
                    check_response(&body, &cfg.expect).with_context(|| {
                        format!("unexpected response: {}", String::from_utf8_lossy(&body))
                    })?;
                    cold = Some(at - started);
                }
                Some(Step::InvocationError { body }) => {
                    bail!("invocation error: {}", String::from_utf8_lossy(&body));
                }
                Some(Step::InitError { body }) => {
                    bail!("init error: {}", String::from_utf8_lossy(&body));
                }
                None => bail!("the fake Runtime API went away"),
            },
            _ = exit_check.tick() => {
                if let Some(status) = child.try_wait().context("check the function process")? {
                    bail!("the function exited ({status}) during the run");
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                bail!("no response within {:?} (init {})", cfg.timeout,
                    init.map_or("not reached".to_owned(), |d| format!("{} ms", Millis(d))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_from_the_status_file() {
        let status = "Name:\tkv\nVmPeak:\t  123456 kB\nVmHWM:\t   15872 kB\nVmRSS:\t   15000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(15872));
        assert_eq!(parse_vm_hwm("Name:\tkv\n"), None);
        // Our own process has one.
        assert!(peak_rss_kib(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn expectations_compare_top_level_fields() {
        let body = br#"{"statusCode":200,"isAuthorized":true,"body":"ok"}"#;
        let ok = [parse_expect("statusCode=200").unwrap()];
        assert!(check_response(body, &ok).is_ok());
        let authorized = [parse_expect("isAuthorized=true").unwrap()];
        assert!(check_response(body, &authorized).is_ok());
        let wrong = [parse_expect("statusCode=404").unwrap()];
        let err = check_response(body, &wrong).unwrap_err().to_string();
        assert!(err.contains("statusCode") && err.contains("200"), "{err}");
        let missing = [parse_expect("nope=x").unwrap()];
        assert!(check_response(body, &missing).is_err());
        assert!(check_response(b"not json", &ok).is_err());
        assert!(check_response(b"not json", &[]).is_ok());
        assert!(parse_expect("statusCode").is_err());
    }
}
