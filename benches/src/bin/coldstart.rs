//! Cold start of one Lambda bootstrap against a fake Runtime API:
//! `coldstart --bootstrap target/release/kv --event events/kv-health.json --expect statusCode=200`.
//! Prints a markdown table row (and, with `--json`, writes the numbers as JSON).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use constellation_benches::coldstart::{ColdStartConfig, ColdStartReport, measure, parse_expect};
use constellation_benches::stats::parse_duration;

/// Spawns the bootstrap N times, hands each process one event, and reports
/// the time to its first poll (init) and first response (cold start), and
/// its peak RSS: median and p90.
#[derive(Debug, Parser)]
#[command(name = "coldstart")]
struct Args {
    /// The bootstrap binary (e.g. target/release/kv).
    #[arg(long)]
    bootstrap: PathBuf,
    /// The function's name (default: the binary's file name).
    #[arg(long)]
    name: Option<String>,
    /// The event file (JSON), e.g. events/kv-health.json.
    #[arg(long)]
    event: PathBuf,
    /// Replaces `REPLACED-BY-TEST` in the event (the events' token placeholder).
    #[arg(long, env = "BENCH_TOKEN")]
    token: Option<String>,
    /// Measured runs.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Uncounted runs first (page cache).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// The most one run may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// A top-level field of the response and its value, e.g. statusCode=200
    /// or isAuthorized=true (repeatable).
    #[arg(long, value_parser = parse_expect)]
    expect: Vec<(String, serde_json::Value)>,
    /// AWS_LAMBDA_FUNCTION_MEMORY_SIZE.
    #[arg(long, default_value_t = 256)]
    memory_mb: u32,
    /// Where the function's output goes (default: a file in the temp dir).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Print the table header first.
    #[arg(long)]
    header: bool,
    /// Also write the numbers as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let name = match args.name {
        Some(n) => n,
        None => args
            .bootstrap
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("--bootstrap has no file name")?,
    };
    let mut event = std::fs::read_to_string(&args.event)
        .with_context(|| format!("read {}", args.event.display()))?;
    if let Some(token) = &args.token {
        event = event.replace("REPLACED-BY-TEST", token);
    }
    serde_json::from_str::<serde_json::Value>(&event)
        .with_context(|| format!("{} is not JSON", args.event.display()))?;
    let log = args
        .log
        .unwrap_or_else(|| std::env::temp_dir().join(format!("coldstart-{name}.log")));
    let cfg = ColdStartConfig {
        bootstrap: args.bootstrap,
        name,
        event: event.into(),
        runs: args.runs,
        warmup: args.warmup,
        timeout: args.timeout,
        expect: args.expect,
        memory_mb: args.memory_mb,
        log,
    };
    let report: ColdStartReport = measure(&cfg).await?;
    if args.header {
        println!("{}", ColdStartReport::header());
    }
    println!("{}", report.row());
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
