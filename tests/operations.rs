//! Operating `serve` as a user does, on both backends: the real binary
//! with `--emf`, its stdout read the way CloudWatch Logs would read a
//! function's. After a scripted session (a registration, a failed and a
//! good login, kv writes, an order saga across catalog and orders),
//! `GET /metrics` has each counter at the value the session implies, and
//! every metric name in it is one the EMF lines carry (and the other way
//! round); and the trace id the order request came with is on the request's
//! log line and on the log lines of both workers the saga went through.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_traces_after_a_session_local() {
    session_on("local").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_traces_after_a_session_aws() {
    session_on("aws").await;
}

/// A `constellation serve` process and every line it printed.
struct Serve {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
    _data: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(backend: &str, otlp: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_constellation"));
        cmd.args(["serve", "--addr", "127.0.0.1:0", "--emf", "--no-rate-limit"])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--backend", backend, "--otlp-endpoint", otlp])
            .env("RUST_LOG", "info")
            .env_remove("AWS_LAMBDA_LOG_LEVEL")
            .env_remove("AWS_LAMBDA_LOG_FORMAT")
            .env_remove("CONSTELLATION_LOG_FORMAT")
            .env_remove("_X_AMZN_TRACE_ID")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if backend == "aws" {
            let endpoint = constellation_testkit::fixtures::aws_endpoint().unwrap();
            cmd.args(["--provision", "--aws-endpoint-url", &endpoint]);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(addr) = v["addr"].as_str()
                {
                    let _ = addr_tx.send(addr.to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("serve did not start listening");
        Self {
            child,
            base: format!("http://{addr}"),
            lines,
            _data: data,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

async fn body(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text format (enough of it for what `serve` writes).
fn parse_exposition(text: &str) -> (BTreeSet<String>, Vec<Sample>) {
    let mut families = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            families.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Values here never hold `",`: split on it.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").unwrap();
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        samples.push((name.to_owned(), map, value.parse().unwrap()));
    }
    (families, samples)
}

/// The sum of `name` over the samples whose labels include all of `want`.
fn total(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// An OTLP/HTTP collector: every body posted to `/v1/traces`.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                assert_eq!(headers["content-type"], "application/json");
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), bodies)
}

/// The spans of trace `trace` the collector got: (service.name, span).
fn spans_of(bodies: &[Value], trace: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for body in bodies {
        for rs in body["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .unwrap()["value"]["stringValue"]
                .as_str()
                .unwrap()
                .to_owned();
            for ss in rs["scopeSpans"].as_array().unwrap() {
                for span in ss["spans"].as_array().unwrap() {
                    if span["traceId"] == trace {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
    }
    out
}

async fn session_on(backend: &str) {
    let (otlp, exported) = collector().await;
    let serve = Serve::start(backend, &otlp);
    let http = reqwest::Client::new();
    let base = &serve.base;
    let email = format!("ops-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "an operations passphrase";

    // Register, one wrong password, one good login.
    let r = http
        .post(format!("{base}/v1/auth/register"))
        .header("content-type", "application/json")
        .body(json!({"organization": "Ops", "email": email, "password": password}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = body(r).await["access_token"].as_str().unwrap().to_owned();
    let login = |password: &'static str| {
        http.post(format!("{base}/v1/auth/login"))
            .header("content-type", "application/json")
            .body(json!({"email": email, "password": password}).to_string())
            .send()
    };
    assert_eq!(login("not the passphrase").await.unwrap().status(), 401);
    assert_eq!(login(password).await.unwrap().status(), 200);
    let bearer = format!("Bearer {token}");

    // Three kv writes.
    for i in 0..3 {
        let r = http
            .put(format!("{base}/v1/kv/ops/key-{i}"))
            .header("authorization", &bearer)
            .header("content-type", "text/plain")
            .body(format!("value {i}"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    // The saga: a product with stock, one order placed with a trace header.
    let r = http
        .post(format!("{base}/v1/catalog/products"))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
            .body(json!({"sku": "OPS-1", "name": "Observed", "price": {"amount": "5.00", "currency": "EUR"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let product = body(r).await["id"].as_str().unwrap().to_owned();
    let r = http
        .post(format!(
            "{base}/v1/catalog/products/{product}/stock/adjustments"
        ))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body(json!({"delta": 5, "reason": "received"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let root = format!(
        "1-{:08x}-{}",
        time::OffsetDateTime::now_utc().unix_timestamp(),
        &uuid::Uuid::new_v4().simple().to_string()[..24]
    );
    let r = http
        .post(format!("{base}/v1/orders"))
        .header("authorization", &bearer)
        .header("idempotency-key", "ops-order-1")
        .header("x-amzn-trace-id", format!("Root={root};Sampled=1"))
        .header("content-type", "application/json")
        .body(json!({"lines": [{"product_id": product, "quantity": 2}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()["x-amzn-trace-id"].to_str().unwrap(),
        format!("Root={root}")
    );
    let order = body(r).await["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let o = http
            .get(format!("{base}/v1/orders/{order}"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        let o = body(o).await;
        if o["status"] == "confirmed" {
            break;
        }
        assert!(Instant::now() < deadline, "order never confirmed: {o}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The orders worker's batch ends (and is counted) after the record that
    // confirmed the order committed: wait for its metric, then for quiet.
    let metrics = |http: reqwest::Client| async move {
        let r = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        r.text().await.unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics(http.clone()).await;
        let (_, samples) = parse_exposition(&text);
        let done = |w| total(&samples, "RecordsProcessed", &[("Worker", w)]);
        if done("orders-worker") >= 1.0 && done("catalog-worker") >= 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "workers never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (families, samples) = parse_exposition(&text);

    // Requests by service, route template and status; latency histograms.
    let login_route = [("Service", "auth"), ("Route", "POST /v1/auth/login")];
    assert_eq!(
        total(
            &samples,
            "Requests",
            &[login_route[0], login_route[1], ("status", "401")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "Requests",
            &[login_route[0], login_route[1], ("status", "200")]
        ),
        1.0
    );
    assert_eq!(total(&samples, "ClientErrors", &login_route), 1.0);
    assert_eq!(total(&samples, "Errors", &[]), 0.0, "{text}");
    let kv_puts: f64 = samples
        .iter()
        .filter(|(n, l, _)| {
            n == "Requests"
                && l.get("Service").map(String::as_str) == Some("kv")
                && l.get("Route").is_some_and(|r| r.starts_with("PUT "))
        })
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(kv_puts, 3.0, "{text}");
    let orders_post = [("Service", "orders"), ("Route", "POST /v1/orders")];
    assert_eq!(total(&samples, "Latency_count", &orders_post), 1.0);
    assert_eq!(
        total(
            &samples,
            "Latency_bucket",
            &[orders_post[0], orders_post[1], ("le", "+Inf")]
        ),
        1.0
    );
    assert_eq!(total(&samples, "ColdStart", &[("Service", "kv")]), 1.0);

    // Business counters, once per committed event.
    let events = |service, kind| total(&samples, "Events", &[("Service", service), ("Type", kind)]);
    assert_eq!(events("kv", "kv.changed"), 3.0, "{text}");
    assert_eq!(events("orders", "order.placed"), 1.0, "{text}");
    assert_eq!(events("orders", "order.confirmed"), 1.0, "{text}");
    assert_eq!(events("catalog", "stock.reserved"), 1.0, "{text}");
    assert_eq!(events("orders", "order.rejected"), 0.0);
    assert_eq!(total(&samples, "FailedLogin", &[("Service", "auth")]), 1.0);

    // Workers: what they handled, nothing failed.
    assert_eq!(total(&samples, "PermanentFailures", &[]), 0.0, "{text}");
    assert_eq!(total(&samples, "RetryableFailures", &[]), 0.0, "{text}");

    // Queue gauges for every consumer's queue and dead-letter queue.
    for queue in [
        "constellation-catalog",
        "constellation-catalog-dlq",
        "constellation-orders",
        "constellation-orders-dlq",
        "constellation-kv-changes",
    ] {
        let depth = samples.iter().find(|(n, l, _)| {
            n == "ApproximateNumberOfMessagesVisible"
                && l.get("QueueName").map(String::as_str) == Some(queue)
        });
        assert!(depth.is_some(), "no depth for {queue}:\n{text}");
        if backend == "local" {
            assert!(
                samples
                    .iter()
                    .any(|(n, l, _)| n == "ApproximateAgeOfOldestMessage"
                        && l.get("QueueName").map(String::as_str) == Some(queue)),
                "no age for {queue}"
            );
        }
    }

    // The names: every family /metrics shows is an EMF metric name of the
    // lines printed, and every EMF name printed is a family (the queue
    // gauges are AWS/SQS's own metrics, not EMF).
    let lines = serve.lines();
    let mut emf = BTreeSet::new();
    for line in &lines {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for decl in v["_aws"]["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(decl["Namespace"], "Constellation");
            for m in decl["Metrics"].as_array().unwrap() {
                emf.insert(m["Name"].as_str().unwrap().to_owned());
            }
        }
    }
    let sqs = [
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesVisible",
    ];
    let prometheus: BTreeSet<String> = families
        .iter()
        .filter(|f| !sqs.contains(&f.as_str()))
        .cloned()
        .collect();
    assert_eq!(prometheus, emf);
    for name in &emf {
        assert!(
            constellation_platform::observe::EMF_METRICS.contains(&name.as_str()),
            "{name} is emitted but not in EMF_METRICS"
        );
    }
    for name in [
        "Requests",
        "Latency",
        "ClientErrors",
        "Errors",
        "ColdStart",
        "Events",
        "FailedLogin",
        "RecordsProcessed",
    ] {
        assert!(emf.contains(name), "no EMF {name}: {emf:?}");
    }

    // One trace through the saga: the order request's line, then a record
    // handled by the catalog worker (order.placed) and one by the orders
    // worker (stock.reserved), all carrying the root the client sent.
    let traced: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains(&root))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let in_span = |line: &Value, span: &str, field: &str, value: &str| {
        line["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == span && s[field] == value)
    };
    let request_line = traced.iter().any(|l| {
        in_span(l, "request", "trace_id", &root) && in_span(l, "request", "service", "orders")
    });
    assert!(request_line, "no request line with the trace: {traced:#?}");
    for worker in ["catalog-worker", "orders-worker"] {
        let handled = traced.iter().any(|l| {
            l["message"] == "record handled"
                && in_span(l, "record", "trace_id", &root)
                && in_span(l, "handle_batch", "worker", worker)
        });
        assert!(
            handled,
            "{worker} logged no record of the trace: {traced:#?}"
        );
    }
    // Nothing else carries it: the kv writes before had traces of their own.
    assert!(
        traced
            .iter()
            .all(|l| !in_span(l, "request", "service", "kv")),
        "{traced:#?}"
    );

    // The same trace exported over OTLP: the order request (a SERVER span
    // of service orders) and a CONSUMER span of each worker, one trace id.
    let otel_trace: String = root.trim_start_matches("1-").replace('-', "");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = spans_of(&exported.lock().unwrap(), &otel_trace);
        let has = |service: &str, name: &str, kind: u64| {
            spans
                .iter()
                .any(|(s, span)| s == service && span["name"] == name && span["kind"] == kind)
        };
        if has("orders", "request", 2) && has("catalog", "record", 5) && has("orders", "record", 5)
        {
            // Every span names its parent within the trace, or none (once
            // what the saga set off later has been exported too).
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let spans = spans_of(&exported.lock().unwrap(), &otel_trace);
            let ids: BTreeSet<&str> = spans
                .iter()
                .map(|(_, s)| s["spanId"].as_str().unwrap())
                .collect();
            for (_, span) in &spans {
                if let Some(parent) = span["parentSpanId"].as_str() {
                    assert!(ids.contains(parent), "dangling parent: {span}");
                }
                assert!(
                    span["startTimeUnixNano"].as_str().unwrap()
                        <= span["endTimeUnixNano"].as_str().unwrap()
                );
                // No personal data: the registering email, say.
                assert!(!span.to_string().contains('@'), "{span}");
            }
            // One tree: the request is the root, each worker's record hangs
            // under the span that published what it handles.
            let find = |service: &str, name: &str| {
                spans
                    .iter()
                    .find(|(s, span)| s == service && span["name"] == name)
                    .map(|(_, span)| span.clone())
                    .unwrap()
            };
            let request = find("orders", "request");
            assert!(request.get("parentSpanId").is_none(), "{request}");
            let catalog = find("catalog", "record");
            assert_eq!(catalog["parentSpanId"], request["spanId"]);
            let orders = find("orders", "record");
            assert_eq!(orders["parentSpanId"], catalog["spanId"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the trace never reached the collector: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
