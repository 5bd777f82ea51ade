//! A bounded load run against a local `constellation serve`, to measure kv
//! throughput and latency (the seed system asked for 2000 reads/s and 500
//! writes/s). It only targets loopback addresses and stops by itself.
//!
//! ```sh
//! cargo run --release -- serve --data-dir /tmp/kv-bench &
//! cargo run --release --example kv_load -- http://127.0.0.1:3000 10 32
//! ```
//! Arguments: base URL, seconds (at most 60), concurrent clients (at most 256).
//! It registers a throwaway organization for its access token, then each
//! client writes one key in four requests and reads in the other three.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

#[derive(Default)]
struct Tally {
    reads: Vec<Duration>,
    writes: Vec<Duration>,
    errors: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into());
    let seconds: u64 = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10)
        .min(60);
    let clients: usize = args
        .get(3)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(32)
        .clamp(1, 256);
    let host = base
        .strip_prefix("http://")
        .and_then(|r| r.split(['/', ':']).next())
        .context("base URL must be http://")?;
    if !(host == "localhost" || host.starts_with("127.")) {
        bail!("refusing to load anything but a loopback address, not {host}");
    }

    let registration = reqwest::Client::new()
        .post(format!("{base}/v1/auth/register"))
        .header("content-type", "application/json")
        .body(
            serde_json::json!({
                "organization": "load test",
                "email": format!("load-{}@example.com", uuid::Uuid::new_v4().simple()),
                "password": "a long load-test passphrase",
            })
            .to_string(),
        )
        .send()
        .await?;
    anyhow::ensure!(
        registration.status().is_success(),
        "register: {}",
        registration.status()
    );
    let session: serde_json::Value = serde_json::from_str(&registration.text().await?)?;
    let token = session["access_token"]
        .as_str()
        .context("no access token")?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse()?);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .default_headers(headers)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let http = http.clone();
        let url = format!("{base}/v1/kv/bench/client-{c}");
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let value = vec![b'x'; 512];
            let mut n: u64 = 0;
            while Instant::now() < deadline && n < 1_000_000 {
                let t = Instant::now();
                let ok = if n.is_multiple_of(4) {
                    let r = http
                        .put(&url)
                        .header("content-type", "application/octet-stream")
                        .body(value.clone())
                        .send()
                        .await;
                    let ok = r.is_ok_and(|r| r.status().is_success());
                    tally.writes.push(t.elapsed());
                    ok
                } else {
                    let r = http.get(&url).send().await;
                    let ok = match r {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    tally.reads.push(t.elapsed());
                    ok
                };
                if !ok {
                    tally.errors += 1;
                }
                n += 1;
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        let t = t.await?;
        total.reads.extend(t.reads);
        total.writes.extend(t.writes);
        total.errors += t.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.reads.sort();
    total.writes.sort();
    println!(
        "{clients} clients, {elapsed:.1} s: reads {:.0}/s (p50 {:.2} ms, p99 {:.2} ms), writes {:.0}/s (p50 {:.2} ms, p99 {:.2} ms), errors {}",
        total.reads.len() as f64 / elapsed,
        percentile(&total.reads, 0.50),
        percentile(&total.reads, 0.99),
        total.writes.len() as f64 / elapsed,
        percentile(&total.writes, 0.50),
        percentile(&total.writes, 0.99),
        total.errors
    );
    Ok(())
}
