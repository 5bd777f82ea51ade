//! Open-loop kv load: `loadgen --get-rate 2000 --put-rate 500 --duration 10s --token T`.
//! Prints a markdown table (and, with `--json`, writes the numbers as JSON).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use constellation_benches::loadgen::{LoadConfig, authority_of, run};
use constellation_benches::stats::parse_duration;

/// Sends GETs and PUTs to the kv API at fixed rates and reports achieved
/// rates, errors and latency percentiles measured from each request's
/// scheduled send time.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Bearer token sent with every request.
    #[arg(long, env = "BENCH_TOKEN")]
    token: Option<String>,
    /// The kv namespace.
    #[arg(long, default_value = "bench")]
    namespace: String,
    /// Distinct keys the requests spread over (uniformly).
    #[arg(long, default_value_t = 1000)]
    keys: u32,
    /// GET requests per second (0: none).
    #[arg(long, default_value_t = 2000.0)]
    get_rate: f64,
    /// PUT requests per second (0: none).
    #[arg(long, default_value_t = 500.0)]
    put_rate: f64,
    /// How long to schedule requests for (10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Keep-alive connections in the pool.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Bytes in each PUT body.
    #[arg(long, default_value_t = 64)]
    value_size: usize,
    /// How long one request may take before it counts as a transport error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Do not write every key once before the run (GETs of missing keys answer 404).
    #[arg(long)]
    no_prefill: bool,
    /// Also write the numbers as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.get_rate >= 0.0 && args.put_rate >= 0.0 && args.get_rate + args.put_rate > 0.0,
        "give --get-rate and/or --put-rate above zero"
    );
    let cfg = LoadConfig {
        authority: authority_of(&args.url)?,
        token: args.token,
        namespace: args.namespace,
        keys: args.keys,
        get_rate: args.get_rate,
        put_rate: args.put_rate,
        duration: args.duration,
        connections: args.connections,
        value_size: args.value_size,
        timeout: args.timeout,
    };
    let report = run(cfg, !args.no_prefill).await?;
    print!("{}", report.table());
    for (op, r) in &report.ops {
        if !r.statuses.is_empty() {
            eprintln!("{} non-2xx answers by status: {:?}", op.name(), r.statuses);
        }
    }
    for e in &report.error_samples {
        eprintln!("transport error: {e}");
    }
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report.json())?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
