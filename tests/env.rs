//! `constellation env` as a user runs it (`constellation env > .env`),
//! against the built binary: the variables every function reads at start,
//! one `NAME=value` line each, for the local backend and for AWS (moto at
//! `CONSTELLATION_TEST_AWS_ENDPOINT`), where a failure prints nothing to
//! stdout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use constellation::SERVICES;
use constellation_testkit::fixtures::aws_endpoint;
use constellation_web::host::ResourceKind;

/// Runs `constellation env` with `args` in `cwd`, in `region`, with none
/// of the variables it prints already set (they would override the local
/// names).
fn env_command(cwd: &Path, region: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_constellation"));
    cmd.arg("env")
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env("AWS_REGION", region)
        .env_remove("AWS_ENDPOINT_URL");
    for name in [
        "CONSTELLATION_BACKEND",
        "CONSTELLATION_DATA_DIR",
        "AUTH_ISSUER",
        "AUTH_AUDIENCE",
        "AUTH_PUBLIC_KEYS_SECRET_ID",
        "AUTH_SIGNING_KEYS_SECRET_ID",
        "AUTH_TRUSTED_PROXIES",
        "AUTH_LOGIN_ADDRESS_LIMIT",
    ] {
        cmd.env_remove(name);
    }
    for service in SERVICES {
        for def in service.resources {
            cmd.env_remove(def.var);
        }
    }
    cmd.output().unwrap()
}

/// The output of a successful run, as lines and as a map.
fn env_ok(cwd: &Path, region: &str, args: &[&str]) -> (String, BTreeMap<String, String>) {
    let out = env_command(cwd, region, args);
    assert!(
        out.status.success(),
        "constellation env {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut map = BTreeMap::new();
    let mut names = Vec::new();
    for line in text.lines() {
        let (name, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a NAME=value line: {line:?}"));
        names.push(name.to_owned());
        map.insert(name.to_owned(), value.to_owned());
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "lines are sorted, each name once");
    (text, map)
}

/// Every variable a service declares is there, and what template.yaml's
/// Globals and auth's settings give every function.
fn assert_complete(env: &BTreeMap<String, String>) {
    for service in SERVICES {
        for def in service.resources {
            assert!(
                env.contains_key(def.var),
                "{} of {} missing",
                def.var,
                service.name
            );
        }
    }
    for (name, value) in [
        ("AUTH_ISSUER", "constellation"),
        ("AUTH_AUDIENCE", "constellation-api"),
        (
            "AUTH_PUBLIC_KEYS_SECRET_ID",
            "constellation/auth/public-keys",
        ),
        (
            "AUTH_SIGNING_KEYS_SECRET_ID",
            "constellation/auth/signing-keys",
        ),
        ("AUTH_TRUSTED_PROXIES", "0"),
        ("AUTH_LOGIN_ADDRESS_LIMIT", "50"),
        ("EVENT_BUS_NAME", "constellation"),
        ("KV_TABLE_NAME", "constellation-kv"),
        ("CURSOR_KEY_SECRET_ID", "constellation/cursor-key"),
        ("MEDIA_BUCKET_NAME", "constellation-media"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
}

#[test]
fn env_local_prints_the_local_names_and_the_absolute_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, env) = env_ok(
        tmp.path(),
        "us-east-1",
        &["--backend", "local", "--data-dir", "data"],
    );
    assert_complete(&env);
    let data_dir = tmp.path().join("data");
    assert_eq!(env["CONSTELLATION_BACKEND"], "local");
    assert_eq!(env["CONSTELLATION_DATA_DIR"], data_dir.to_str().unwrap());
    assert_eq!(env["KV_CHANGES_QUEUE_URL"], "constellation-kv-changes");
    assert_eq!(env["MEDIA_QUEUE_URL"], "constellation-media");
    assert_eq!(env["MEDIA_DLQ_URL"], "constellation-media-dlq");
    assert!(!env.contains_key("AWS_ENDPOINT_URL"));
    // Printing the names reads and creates nothing.
    assert!(!data_dir.exists());
}

#[test]
fn env_aws_gives_the_provisioned_queue_urls_with_or_without_provision() {
    let endpoint = aws_endpoint().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--backend", "aws", "--aws-endpoint-url", endpoint.as_str()];
    let provision: Vec<&str> = args.iter().copied().chain(["--provision"]).collect();
    let (provisioned, env) = env_ok(tmp.path(), "us-east-1", &provision);
    let (looked_up, _) = env_ok(tmp.path(), "us-east-1", &args);
    assert_eq!(provisioned, looked_up);

    assert_complete(&env);
    assert_eq!(env["CONSTELLATION_BACKEND"], "aws");
    assert_eq!(env["AWS_ENDPOINT_URL"], endpoint);
    assert!(!env.contains_key("CONSTELLATION_DATA_DIR"));
    let mut queues = 0;
    for service in SERVICES {
        for def in service.resources {
            let value = &env[def.var];
            match def.kind {
                ResourceKind::Queue { .. } | ResourceKind::DeadLetterQueue { .. } => {
                    queues += 1;
                    assert!(value.starts_with("http"), "{}={value}", def.var);
                    assert_eq!(
                        value.rsplit('/').next(),
                        Some(def.default),
                        "{}={value}",
                        def.var
                    );
                }
                _ => assert_eq!(value, def.default, "{}", def.var),
            }
        }
    }
    assert!(queues >= 11, "only {queues} queues");
    assert!(env["MEDIA_DLQ_URL"].ends_with("/constellation-media-dlq"));
}

#[test]
fn env_aws_without_provision_fails_on_an_empty_account_and_prints_nothing() {
    let endpoint = aws_endpoint().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // No test provisions in this region: its queues do not exist.
    let out = env_command(
        tmp.path(),
        "ap-northeast-3",
        &["--backend", "aws", "--aws-endpoint-url", &endpoint],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("constellation-kv-changes") && stderr.contains("--provision"),
        "{stderr}"
    );
}
