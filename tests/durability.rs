//! Durability of the local write path: `serve` is killed with SIGKILL while
//! clients write, and every write it acknowledged — the entry and its change
//! event — is there after a restart. This proves group commit answers a write
//! only after its batch's transaction has committed; that the commit itself
//! reached the disk (power loss, not just a killed process) is SQLite's
//! `synchronous = FULL`, which no test here can cut the power to check.
//!
//! Local backend only: on AWS, durability is DynamoDB's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use constellation_platform::clock::SystemClock;
use constellation_platform::local::LocalBackend;

/// A free port on the loopback interface.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the built binary's `serve` on `dir` and waits until it answers.
async fn start(dir: &Path) -> (Child, String) {
    let base = format!("http://127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_constellation"))
        .args([
            "serve",
            "--no-rate-limit",
            "--addr",
            base.trim_start_matches("http://"),
        ])
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env_remove("CONSTELLATION_BACKEND")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let up = client.get(format!("{base}/v1/kv/health")).send().await;
        if up.is_ok_and(|r| r.status().is_success()) {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("serve did not come up at {base}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path()).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "organization": "Durable",
        "email": "ops@example.com",
        "password": "correct horse battery"
    });
    let registered = client
        .post(format!("{base}/v1/auth/register"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let registered: serde_json::Value = serde_json::from_slice(&registered).unwrap();
    let bearer = format!("Bearer {}", registered["access_token"].as_str().unwrap());

    // Writers put distinct keys as fast as they can and note each write the
    // server acknowledged; they stop at the first failure (the kill).
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (client, base, bearer, acked) =
                (client.clone(), base.clone(), bearer.clone(), acked.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let key = format!("w{w}-{n}");
                    let reply = client
                        .put(format!("{base}/v1/kv/durable/{key}"))
                        .header("authorization", &bearer)
                        .header("content-type", "text/plain")
                        .body(key.clone())
                        .send()
                        .await;
                    match reply {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push(key),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Kill once a good number of writes is through, mid-stream.
    while acked.lock().unwrap().len() < 400 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    let (mut child, base) = start(dir.path()).await;
    let mut missing = Vec::new();
    for key in &acked {
        let got = client
            .get(format!("{base}/v1/kv/durable/{key}"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        if !got.status().is_success() || got.text().await.unwrap() != *key {
            missing.push(key.clone());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );

    // Each acknowledged write's change event committed with it.
    let backend = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
    let events = backend
        .peek("constellation-kv-changes", 100_000)
        .await
        .unwrap();
    let evented: BTreeSet<String> = events
        .iter()
        .map(|m| {
            let envelope: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            envelope["detail"]["data"]["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let without_event: Vec<&String> = acked.iter().filter(|k| !evented.contains(*k)).collect();
    assert!(
        without_event.is_empty(),
        "acknowledged writes without a change event: {without_event:?}"
    );
}
