//! An open-loop HTTP/1.1 load generator for the kv API.
//!
//! Closed-loop tools (wrk, hey) send the next request when the previous one
//! answers, so a slow server is offered less load and its stalls vanish from
//! the percentiles ("coordinated omission"). Here a scheduler thread decides
//! every request's send time in advance, at a fixed rate per operation, and
//! latency is measured from that scheduled time: a request that waited for a
//! free connection because the server fell behind counts its wait.
//!
//! Requests go over a fixed pool of keep-alive connections (one request at a
//! time on each, as HTTP/1.1 without pipelining allows). The scheduler runs on
//! its own OS thread with `thread::sleep`, whose wake-ups are tens of
//! microseconds late, where a tokio timer would round to the millisecond and
//! add that to every sample.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::stats::{Millis, Samples, Summary};

/// What to send, how fast, and for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `host:port` of the server (from an `http://` URL).
    pub authority: String,
    /// A bearer token sent with every request, if any.
    pub token: Option<String>,
    /// The kv namespace the keys live in.
    pub namespace: String,
    /// How many distinct keys (`k0` … `k{keys-1}`) the requests spread over.
    pub keys: u32,
    /// GET requests per second.
    pub get_rate: f64,
    /// PUT requests per second.
    pub put_rate: f64,
    /// How long requests are scheduled for.
    pub duration: Duration,
    /// Keep-alive connections in the pool.
    pub connections: usize,
    /// Bytes in each PUT body.
    pub value_size: usize,
    /// How long one request may take before it counts as a transport error.
    pub timeout: Duration,
}

/// Turns `http://host:port[/]` into `host:port`.
pub fn authority_of(url: &str) -> anyhow::Result<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("`{url}`: only http:// URLs are supported");
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("`{url}`: give the server's base URL, such as http://127.0.0.1:3000");
    }
    Ok(authority.to_owned())
}

/// The two operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// `GET /v1/kv/{ns}/{key}`.
    Get,
    /// `PUT /v1/kv/{ns}/{key}` with a text body.
    Put,
}

impl Op {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
        }
    }
}

/// One scheduled request.
#[derive(Debug, Clone, Copy)]
struct Job {
    op: Op,
    key: u32,
    due: Instant,
}

/// What happened to one operation's requests.
#[derive(Debug, Clone, Default)]
pub struct OpReport {
    /// Requests the scheduler issued.
    pub scheduled: u64,
    /// 2xx answers received before the end of the scheduled period.
    pub ok_in_window: u64,
    /// All 2xx answers, including those that arrived while draining.
    pub ok: u64,
    /// Answers that were not 2xx, by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Connection failures and timeouts.
    pub transport_errors: u64,
    /// Requests never sent because the drain deadline passed first.
    pub unsent: u64,
    /// Latency from scheduled send time to the end of the answer, of every answer.
    pub latency: Samples,
}

impl OpReport {
    /// Non-2xx answers.
    pub fn non_2xx(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Every request that did not get a 2xx.
    pub fn errors(&self) -> u64 {
        self.non_2xx() + self.transport_errors + self.unsent
    }

    fn merge(&mut self, mut other: OpReport) {
        self.ok_in_window += other.ok_in_window;
        self.ok += other.ok;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.unsent += other.unsent;
        self.latency.append(&mut other.latency);
    }
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// The configuration it ran with.
    pub config: LoadConfig,
    /// Per operation, for those with a rate above zero.
    pub ops: BTreeMap<Op, OpReport>,
    /// The first few transport error messages, to say what went wrong.
    pub error_samples: Vec<String>,
}

impl LoadReport {
    fn rate_of(&self, op: Op) -> f64 {
        match op {
            Op::Get => self.config.get_rate,
            Op::Put => self.config.put_rate,
        }
    }

    /// A markdown table, one row per operation.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| op | target/s | achieved/s | 2xx | non-2xx | transport errors | unsent | p50 ms | p90 ms | p99 ms | max ms |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        let secs = self.config.duration.as_secs_f64().max(f64::MIN_POSITIVE);
        for (op, r) in &self.ops {
            let s = r.latency.summary().unwrap_or(Summary {
                count: 0,
                p50: Duration::ZERO,
                p90: Duration::ZERO,
                p99: Duration::ZERO,
                max: Duration::ZERO,
            });
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                op.name(),
                self.rate_of(*op),
                r.ok_in_window as f64 / secs,
                r.ok,
                r.non_2xx(),
                r.transport_errors,
                r.unsent,
                Millis(s.p50),
                Millis(s.p90),
                Millis(s.p99),
                Millis(s.max),
            );
        }
        out
    }

    /// The same numbers as one JSON object (for scripts/bench's tables).
    pub fn json(&self) -> serde_json::Value {
        let secs = self.config.duration.as_secs_f64().max(f64::MIN_POSITIVE);
        let ms = |d: Duration| (d.as_secs_f64() * 1_000_000.0).round() / 1000.0;
        let ops: serde_json::Map<String, serde_json::Value> = self
            .ops
            .iter()
            .map(|(op, r)| {
                let s = r.latency.summary();
                let statuses: serde_json::Map<String, serde_json::Value> = r
                    .statuses
                    .iter()
                    .map(|(k, v)| (k.to_string(), (*v).into()))
                    .collect();
                (
                    op.name().to_owned(),
                    serde_json::json!({
                        "target_rate": self.rate_of(*op),
                        "scheduled": r.scheduled,
                        "achieved_rate": r.ok_in_window as f64 / secs,
                        "ok": r.ok,
                        "non_2xx": r.non_2xx(),
                        "statuses": statuses,
                        "transport_errors": r.transport_errors,
                        "unsent": r.unsent,
                        "errors": r.errors(),
                        "p50_ms": s.map(|s| ms(s.p50)),
                        "p90_ms": s.map(|s| ms(s.p90)),
                        "p99_ms": s.map(|s| ms(s.p99)),
                        "max_ms": s.map(|s| ms(s.max)),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "duration_s": secs,
            "connections": self.config.connections,
            "keys": self.config.keys,
            "ops": ops,
            "error_samples": self.error_samples,
        })
    }
}

type Body = Full<Bytes>;

/// The request for `op` on key `key`.
fn request(
    cfg: &LoadConfig,
    op: Op,
    key: u32,
    value: &Bytes,
) -> anyhow::Result<http::Request<Body>> {
    let uri = format!("/v1/kv/{}/k{key}", cfg.namespace);
    let mut builder = http::Request::builder()
        .uri(uri)
        .header(http::header::HOST, &cfg.authority);
    if let Some(token) = &cfg.token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = match op {
        Op::Get => builder
            .method(http::Method::GET)
            .body(Full::new(Bytes::new())),
        Op::Put => builder
            .method(http::Method::PUT)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(value.clone())),
    };
    req.context("build request")
}

/// Opens one keep-alive connection.
async fn connect(authority: &str) -> anyhow::Result<SendRequest<Body>> {
    let stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("connect to {authority}"))?;
    stream.set_nodelay(true).context("set TCP_NODELAY")?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; a failure
        // shows up as an error of the next request on it.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer: its status.
async fn send(sender: &mut SendRequest<Body>, req: http::Request<Body>) -> anyhow::Result<u16> {
    sender.ready().await.context("connection closed")?;
    let resp = sender.send_request(req).await.context("send request")?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .context("read response body")?;
    Ok(status)
}

/// Writes every key once (closed loop, over the whole pool), so that GETs
/// find them. Fails on the first error: a misconfigured run should stop here.
pub async fn prefill(
    cfg: &LoadConfig,
    pool: Vec<SendRequest<Body>>,
) -> anyhow::Result<Vec<SendRequest<Body>>> {
    let value = Bytes::from(vec![b'v'; cfg.value_size]);
    let n = pool.len().max(1) as u32;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut sender) in pool.into_iter().enumerate() {
        let cfg = cfg.clone();
        let value = value.clone();
        tasks.spawn(async move {
            let mut key = i as u32;
            while key < cfg.keys {
                let status = send(&mut sender, request(&cfg, Op::Put, key, &value)?).await?;
                if !(200..300).contains(&status) {
                    bail!("prefill: PUT k{key} answered {status}");
                }
                key += n;
            }
            Ok(sender)
        });
    }
    let mut pool = Vec::new();
    while let Some(done) = tasks.join_next().await {
        pool.push(done.context("prefill task")??);
    }
    Ok(pool)
}

/// A small fast generator of key numbers (xorshift), so that the scheduler
/// needs no extra crate and picks keys uniformly.
#[derive(Debug)]
struct KeyPicker(u64);

impl KeyPicker {
    fn next(&mut self, keys: u32) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x % u64::from(keys.max(1))) as u32
    }
}

/// The send times of one operation: `start + n / rate`.
#[derive(Debug)]
struct Stream {
    op: Op,
    rate: f64,
    n: u64,
    next: Instant,
}

impl Stream {
    fn advance(&mut self, start: Instant) {
        self.n += 1;
        let nanos = (self.n as f64 * 1e9 / self.rate).round() as u64;
        self.next = start + Duration::from_nanos(nanos);
    }
}

/// Issues every job at its time until `start + duration`; returns how many
/// of each op it issued.
fn schedule(cfg: &LoadConfig, start: Instant, tx: UnboundedSender<Job>) -> BTreeMap<Op, u64> {
    let end = start + cfg.duration;
    let mut streams: Vec<Stream> = [(Op::Get, cfg.get_rate), (Op::Put, cfg.put_rate)]
        .into_iter()
        .filter(|(_, rate)| *rate > 0.0)
        .map(|(op, rate)| Stream {
            op,
            rate,
            n: 0,
            next: start,
        })
        .collect();
    let mut picker = KeyPicker(0x9E37_79B9_7F4A_7C15);
    let mut issued = BTreeMap::new();
    loop {
        let now = Instant::now();
        for s in &mut streams {
            while s.next <= now && s.next < end {
                let job = Job {
                    op: s.op,
                    key: picker.next(cfg.keys),
                    due: s.next,
                };
                if tx.send(job).is_err() {
                    return issued;
                }
                *issued.entry(s.op).or_insert(0) += 1;
                s.advance(start);
            }
        }
        let Some(next) = streams.iter().map(|s| s.next).filter(|t| *t < end).min() else {
            return issued;
        };
        let wait = next.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// Takes jobs until the scheduler is done and the queue is empty.
async fn worker(
    cfg: Arc<LoadConfig>,
    mut sender: SendRequest<Body>,
    jobs: Arc<Mutex<UnboundedReceiver<Job>>>,
    end: Instant,
    drain_deadline: Instant,
) -> (BTreeMap<Op, OpReport>, Vec<String>) {
    let value = Bytes::from(vec![b'v'; cfg.value_size]);
    let mut reports: BTreeMap<Op, OpReport> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut connected = true;
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(job) = job else { break };
        let report = reports.entry(job.op).or_default();
        if Instant::now() > drain_deadline {
            report.unsent += 1;
            continue;
        }
        let outcome = async {
            if !connected {
                sender = connect(&cfg.authority).await?;
                connected = true;
            }
            let req = request(&cfg, job.op, job.key, &value)?;
            match tokio::time::timeout(cfg.timeout, send(&mut sender, req)).await {
                Ok(result) => result,
                Err(_) => bail!("no answer within {:?}", cfg.timeout),
            }
        }
        .await;
        let done = Instant::now();
        match outcome {
            Ok(status) => {
                report.latency.push(done.saturating_duration_since(job.due));
                if (200..300).contains(&status) {
                    report.ok += 1;
                    if done <= end {
                        report.ok_in_window += 1;
                    }
                } else {
                    *report.statuses.entry(status).or_default() += 1;
                }
            }
            Err(e) => {
                report.transport_errors += 1;
                connected = false;
                if errors.len() < 5 {
                    errors.push(format!("{} k{}: {e:#}", job.op.name(), job.key));
                }
            }
        }
    }
    (reports, errors)
}

/// Runs the load: opens the pool, optionally writes every key first, then
/// schedules requests for `cfg.duration` and waits for the last answer (or
/// `cfg.timeout` past the end).
pub async fn run(cfg: LoadConfig, prefill_keys: bool) -> anyhow::Result<LoadReport> {
    if cfg.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if cfg.keys == 0 {
        bail!("--keys must be at least 1");
    }
    let mut pool = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections {
        pool.push(connect(&cfg.authority).await?);
    }
    if prefill_keys {
        pool = prefill(&cfg, pool).await?;
    }

    let cfg = Arc::new(cfg);
    let (tx, rx) = unbounded_channel();
    let jobs = Arc::new(Mutex::new(rx));
    // A little head start, so that the first jobs are not late already.
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + cfg.duration;
    let drain_deadline = end + cfg.timeout;

    let mut workers = tokio::task::JoinSet::new();
    for sender in pool {
        workers.spawn(worker(
            cfg.clone(),
            sender,
            jobs.clone(),
            end,
            drain_deadline,
        ));
    }
    let scheduler = {
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("loadgen-scheduler".to_owned())
            .spawn(move || schedule(&cfg, start, tx))
            .context("start the scheduler thread")?
    };

    let mut ops: BTreeMap<Op, OpReport> = BTreeMap::new();
    let mut error_samples = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (reports, errors) = done.context("worker task")?;
        for (op, r) in reports {
            ops.entry(op).or_default().merge(r);
        }
        error_samples.extend(errors.into_iter().take(5 - error_samples.len().min(5)));
    }
    let issued = tokio::task::spawn_blocking(move || scheduler.join())
        .await
        .context("join the scheduler")?
        .map_err(|_| anyhow::anyhow!("the scheduler thread panicked"))?;
    for (op, n) in issued {
        ops.entry(op).or_default().scheduled = n;
    }
    let cfg = Arc::try_unwrap(cfg).unwrap_or_else(|arc| (*arc).clone());
    Ok(LoadReport {
        config: cfg,
        ops,
        error_samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_comes_from_an_http_url() {
        assert_eq!(
            authority_of("http://127.0.0.1:3000/").unwrap(),
            "127.0.0.1:3000"
        );
        assert_eq!(authority_of("http://localhost:80").unwrap(), "localhost:80");
        assert!(authority_of("https://example.com").is_err());
        assert!(authority_of("http://example.com/v1").is_err());
        assert!(authority_of("http://").is_err());
    }

    #[test]
    fn keys_are_spread_over_the_whole_range() {
        let mut p = KeyPicker(0x9E37_79B9_7F4A_7C15);
        let mut seen = [0_u32; 10];
        for _ in 0..10_000 {
            seen[p.next(10) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn the_scheduler_issues_each_rate_for_the_duration() {
        let cfg = LoadConfig {
            authority: "127.0.0.1:1".to_owned(),
            token: None,
            namespace: "bench".to_owned(),
            keys: 10,
            get_rate: 2000.0,
            put_rate: 500.0,
            duration: Duration::from_millis(200),
            connections: 1,
            value_size: 1,
            timeout: Duration::from_secs(1),
        };
        let (tx, mut rx) = unbounded_channel();
        let start = Instant::now();
        let issued = schedule(&cfg, start, tx);
        assert_eq!(issued.get(&Op::Get), Some(&400));
        assert_eq!(issued.get(&Op::Put), Some(&100));
        // Each job carries its own planned time, evenly spaced, whenever the
        // thread actually woke up.
        let mut gets = Vec::new();
        while let Ok(job) = rx.try_recv() {
            if job.op == Op::Get {
                gets.push(job.due);
            }
        }
        assert_eq!(gets.len(), 400);
        assert_eq!(gets[1] - gets[0], Duration::from_micros(500));
        assert_eq!(gets[399] - start, Duration::from_micros(399 * 500));
        // The scheduler did not finish early.
        assert!(start.elapsed() >= Duration::from_millis(199));
    }
}
