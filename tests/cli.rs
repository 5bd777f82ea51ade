//! The `constellation` command as an operator runs it: `queue list`, `queue
//! peek`, `queue redrive` and `run <schedule>`, on both backends, against
//! the built binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use constellation_platform::aws::AwsBackend;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::Platform;
use constellation_platform::{QueueReceiver as _, QueueSpec};
use constellation_testkit::fixtures::{aws_endpoint, emulator_sdk_config};

/// Runs the binary with `args` on the local backend in `dir`, or on AWS at
/// `aws` (an emulator endpoint); returns stdout, failing on a non-zero exit.
fn constellation(dir: &Path, aws: Option<&str>, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_constellation"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env_remove("CONSTELLATION_BACKEND");
    if let Some(endpoint) = aws {
        cmd.args(["--backend", "aws", "--aws-endpoint-url", endpoint]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "constellation {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn constellation_fails(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_constellation"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "constellation {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

#[tokio::test]
async fn queue_list_peek_and_redrive_on_the_local_backend() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let spec = QueueSpec::with_dlq("jobs", std::time::Duration::from_secs(30), 1);
    platform
        .queue("jobs-dlq")
        .send_batch(&["dead-1".into(), "dead-2".into()])
        .await
        .unwrap();

    let listed = constellation(dir.path(), None, &["queue", "list"]);
    let declared = listed
        .lines()
        .find(|l| l.starts_with("constellation-kv-changes-dlq "))
        .unwrap_or_else(|| panic!("the services' queues are listed even when empty: {listed}"));
    assert_eq!(
        declared.split_whitespace().collect::<Vec<_>>(),
        ["constellation-kv-changes-dlq", "0", "0"]
    );
    let row = listed.lines().find(|l| l.starts_with("jobs-dlq")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["jobs-dlq", "2", "0"]
    );
    let peeked = constellation(dir.path(), None, &["queue", "peek", "jobs-dlq"]);
    assert_eq!(peeked.lines().collect::<Vec<_>>(), ["dead-1", "dead-2"]);

    let moved = constellation(dir.path(), None, &["queue", "redrive", "jobs-dlq"]);
    assert_eq!(moved.trim(), "moved 2 messages from jobs-dlq to jobs");
    let receiver = platform.receiver(&spec, "jobs").await.unwrap();
    let back = receiver
        .receive(10, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let mut bodies: Vec<_> = back.iter().map(|m| m.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["dead-1", "dead-2"]);
    assert!(
        back.iter().all(|m| m.receive_count == 1),
        "receive counts start over"
    );
    assert!(
        constellation(dir.path(), None, &["queue", "peek", "jobs-dlq"]).is_empty(),
        "the dead-letter queue is empty after the redrive"
    );

    let err = constellation_fails(dir.path(), &["queue", "redrive", "jobs"]);
    assert!(err.contains("--to"), "{err}");
}

#[tokio::test]
async fn queue_redrive_on_the_aws_backend() {
    let endpoint = aws_endpoint().unwrap();
    let aws = AwsBackend::from_sdk_config(&emulator_sdk_config(&endpoint).await);
    let name = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let spec = QueueSpec::with_dlq(&name, std::time::Duration::from_secs(30), 1);
    let url = aws.ensure_queue(&spec).await.unwrap();
    let dlq = format!("{name}-dlq");
    let dlq_url = aws.queue_url(&dlq).await.unwrap();
    use constellation_platform::Queue as _;
    aws.queue(&dlq_url)
        .send_batch(&["dead-1".into()])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let listed = constellation(dir.path(), Some(&endpoint), &["queue", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(dlq.as_str())),
        "{listed}"
    );
    let moved = constellation(dir.path(), Some(&endpoint), &["queue", "redrive", &dlq]);
    assert_eq!(
        moved.trim(),
        format!("moved 1 messages from {dlq} to {name}")
    );
    let receiver = aws.receiver(&url).await.unwrap();
    let back = receiver
        .receive(10, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["dead-1"]
    );
}

#[test]
fn run_runs_a_schedule_by_name_and_names_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let report = constellation(dir.path(), None, &["run", "kv-outbox"]);
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(
        report,
        serde_json::json!({ "sent": 0, "refused": 0, "superseded": 0 })
    );
    let err = constellation_fails(dir.path(), &["run", "no-such-schedule"]);
    assert!(err.contains("kv-outbox"), "lists the schedules: {err}");
}

/// `comms resync` has auth republish a snapshot of every account (of one
/// organization with `--org`) to the queues account events are routed to,
/// and says how many; a malformed or unknown `--org` fails.
#[tokio::test]
async fn comms_resync_republishes_account_snapshots() {
    use constellation_auth::store::{OrgName, Registration};
    use constellation_core::auth::{Email, Password};
    use constellation_core::directory::events;
    use constellation_platform::DomainEvent;
    use constellation_platform::events::Route;
    use constellation_web::host::DEFAULT_EVENT_BUS;

    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let routes: Vec<Route> = events::ALL
        .iter()
        .map(|t| Route::new(*t, "directory"))
        .collect();
    platform
        .local_backend()
        .unwrap()
        .set_routes(DEFAULT_EVENT_BUS, &routes)
        .await
        .unwrap();
    let store = constellation_auth::store(
        &platform,
        &constellation_auth::AuthResources::local(),
        constellation_auth::PasswordHasherParams::insecure_fast_for_tests(),
        constellation_platform::observe::MetricsSink::discard(),
    )
    .await
    .unwrap();
    let mut orgs = Vec::new();
    for email in ["a@example.com", "b@example.com"] {
        let email = Email::parse(email).unwrap();
        let session = store
            .register(
                Registration {
                    organization: OrgName::parse("Acme").unwrap(),
                    password: Password::new_for("a long and unusual passphrase", &email).unwrap(),
                    email,
                },
                &constellation_auth::ClientAddr::unknown(),
            )
            .await
            .unwrap();
        orgs.push(session.account.org.to_string());
    }
    let spec = QueueSpec::with_dlq("directory", std::time::Duration::from_secs(30), 5);
    let receiver = platform.receiver(&spec, "directory").await.unwrap();
    let drain = async || {
        let mut types = Vec::new();
        loop {
            let batch = receiver
                .receive(10, std::time::Duration::from_millis(300))
                .await
                .unwrap();
            if batch.is_empty() {
                return types;
            }
            for m in batch {
                types.push(DomainEvent::from_queue_body(&m.body).unwrap().event_type);
                receiver.delete(&m.receipt_handle).await.unwrap();
            }
        }
    };
    assert_eq!(drain().await, [events::ACCOUNT_CREATED; 2]);

    let out = constellation(dir.path(), None, &["comms", "resync"]);
    assert_eq!(out.trim(), "published 2 account snapshots");
    assert_eq!(drain().await, [events::ACCOUNT_UPDATED; 2]);
    let out = constellation(dir.path(), None, &["comms", "resync", "--org", &orgs[0]]);
    assert_eq!(out.trim(), "published 1 account snapshots");
    assert_eq!(drain().await, [events::ACCOUNT_UPDATED]);

    let err = constellation_fails(dir.path(), &["comms", "resync", "--org", "not an org"]);
    assert!(err.contains("--org"), "{err}");
    let unknown = "f".repeat(32);
    constellation_fails(dir.path(), &["comms", "resync", "--org", &unknown]);
}

#[tokio::test]
async fn mail_list_and_show_read_what_the_local_mailer_wrote() {
    use constellation_platform::mail::OutgoingMail;
    let dir = tempfile::tempdir().unwrap();
    assert!(
        constellation(dir.path(), None, &["mail", "list"]).starts_with("no mail in "),
        "an empty mailbox says so"
    );
    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut ids = Vec::new();
    for (to, subject) in [
        ("first@example.org", "Welcome"),
        ("second@example.org", "Grüße"),
    ] {
        let mail = OutgoingMail {
            from: "Constellation <noreply@example.com>".into(),
            to: to.into(),
            to_name: None,
            subject: subject.into(),
            text: "Hello".into(),
            html: "<p>Hello</p>".into(),
        };
        ids.push(platform.mailer().send(&mail).await.unwrap());
        // Ids are time-ordered to the millisecond.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }

    let listed = constellation(dir.path(), None, &["mail", "list"]);
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{listed}");
    for (row, (id, to, subject)) in rows.iter().zip([
        (&ids[0], "first@example.org", "Welcome"),
        (&ids[1], "second@example.org", "Grüße"),
    ]) {
        assert_eq!(row[0], id.as_str(), "newest last: {listed}");
        assert!(row[1].ends_with('Z'), "an RFC 3339 date: {listed}");
        assert_eq!(&row[2..], [to, subject], "{listed}");
    }

    let shown = constellation(dir.path(), None, &["mail", "show", &ids[1]]);
    assert!(shown.starts_with("From: \"Constellation\" <noreply@example.com>\r\n"));
    assert!(shown.contains("\r\nTo: second@example.org\r\n"), "{shown}");
    assert!(shown.contains("Content-Type: text/html; charset=utf-8\r\n"));

    let err = constellation_fails(dir.path(), &["mail", "show", "no-such-id"]);
    assert!(err.contains("no message no-such-id"), "{err}");
    let err = constellation_fails(dir.path(), &["mail", "show", "../constellation"]);
    assert!(err.contains("bad message id"), "{err}");
    let err = constellation_fails(dir.path(), &["mail", "list", "--backend", "aws"]);
    assert!(err.contains("mail goes through SES in AWS"), "{err}");
}
