//! `constellation export` / `import` over data written through the real
//! services: a round trip gives the same bytes (locally, and through
//! DynamoDB on moto), an interrupted import resumes to the same result, a
//! damaged file stops the import before it writes, bad records are listed
//! with their line and the rest imported, no secret leaves, and with
//! `--with-media` media bytes move with their records (on both backends).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use constellation::migrate::{
    self, ExportOptions, ImportOptions, KindCounts, Manifest, ServiceTable, table_vars,
};
use constellation_core::auth::Role;
use constellation_platform::SecretValue;
use constellation_platform::blob::BlobStore;
use constellation_platform::table::{
    Add, Condition, Item, ItemKey, Page, Query, StoreError, Table, Write,
};
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::services::TestServices;
use constellation_web::ServiceDef;
use constellation_web::host::ResourceKind;
use http::StatusCode;
use serde_json::json;
use sha2::{Digest as _, Sha256};

const ORG: &str = "org-move";

const MOVED: &[&ServiceDef] = &[
    &constellation_auth::SERVICE,
    &constellation_kv::SERVICE,
    &constellation_expenses::SERVICE,
    &constellation_comms::SERVICE,
];

type App = TestApp<TestServices>;

async fn fx_app(env: TestPlatform) -> App {
    let services = TestServices::start(&env, MOVED).await.unwrap();
    let router = services.router();
    TestApp::new(env, router, services)
}

async fn tables(app: &App) -> Vec<ServiceTable> {
    tables_of(app, MOVED).await
}

async fn tables_of(app: &App, services: &[&ServiceDef]) -> Vec<ServiceTable> {
    let mut out = Vec::new();
    for def in services {
        let (table, cursor) = table_vars(def).unwrap();
        let ctx = app.service.context(def.name);
        out.push(ServiceTable {
            service: def.name,
            table: ctx.table(table, cursor).await.unwrap(),
        });
    }
    out
}

/// Data in every moved service: an organization with its owner (and its
/// session, refresh token and an invite, which must stay behind), 60 kv
/// entries (more than two batches), one with a TTL, an expense and an
/// announcement.
async fn fx_data(app: &App) {
    let r = app
        .post("/v1/auth/register")
        .anonymous()
        .json(&json!({"organization": "Movers", "email": "ada@example.com", "password": "correct horse battery"}))
        .await;
    r.assert_status(StatusCode::CREATED);
    let owner = r.json()["access_token"].as_str().unwrap().to_owned();
    app.post("/v1/auth/invites")
        .bearer(&owner)
        .json(&json!({"email": "bob@example.com", "role": "member"}))
        .await
        .assert_status(StatusCode::CREATED);

    let staff = app.service.tokens.token(ORG, Role::Staff);
    let admin = app.service.tokens.token(ORG, Role::Admin);
    for i in 0..60 {
        let r = app
            .put(&format!("/v1/kv/settings/key-{i:02}"))
            .bearer(&admin)
            .json(&json!({"n": i, "nested": {"z": 1, "a": [true, null]}}))
            .await;
        assert!(r.status.is_success(), "{}", r.json());
    }
    let r = app
        .put("/v1/kv/sessions/short?ttl=3600")
        .bearer(&admin)
        .json(&json!({"ttl": true}))
        .await;
    assert!(r.status.is_success(), "{}", r.json());
    app.post("/v1/expenses")
        .bearer(&staff)
        .json(&json!({
            "amount": "12.50", "currency": "EUR", "category": "meals",
            "merchant": "Café Zentral", "description": "team lunch",
            "incurred_on": app.now().date().to_string(),
        }))
        .await
        .assert_status(StatusCode::CREATED);
    app.post("/v1/comms/announcements")
        .bearer(&admin)
        .json(&json!({"title": "Moving day", "body": "We move.", "audience": "all"}))
        .await
        .assert_status(StatusCode::CREATED);
    app.service.pump().await.unwrap();
}

fn options(app: &App) -> ExportOptions {
    ExportOptions {
        now: app.now(),
        ..ExportOptions::default()
    }
}

/// Every file of an export directory (the manifest without its time).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && name != "rejects.jsonl" {
            out.insert(name, fs::read(&path).unwrap());
        }
    }
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    out.insert(
        "manifest.json (files)".to_owned(),
        serde_json::to_vec(&manifest.files).unwrap(),
    );
    out
}

fn assert_same_export(a: &Path, b: &Path) {
    let (a, b) = (contents(a), contents(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(
            b.get(name) == Some(bytes),
            "{name} differs:\n{}\n---\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&b[name])
        );
    }
}

async fn export_to(app: &App, dir: &Path) -> Manifest {
    migrate::export(&tables(app).await, dir, &options(app))
        .await
        .unwrap()
}

/// `app`'s tables, kv's failing its `fail_on`th batch put (a crash).
async fn failing_kv(app: &App, fail_on: usize) -> Vec<ServiceTable> {
    let mut failing = tables(app).await;
    for t in &mut failing {
        if t.service == "kv" {
            t.table = Arc::new(FailingPuts {
                inner: t.table.clone(),
                fail_on,
                calls: AtomicUsize::new(0),
            });
        }
    }
    failing
}

async fn import_into(
    app: &App,
    dir: &Path,
    options: &ImportOptions,
) -> anyhow::Result<migrate::ImportReport> {
    migrate::import(&tables(app).await, dir, options).await
}

#[tokio::test]
async fn a_local_round_trip_gives_the_same_bytes() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let (a, b, small) = (
        work.path().join("a"),
        work.path().join("b"),
        work.path().join("small"),
    );
    let manifest = export_to(&source, &a).await;
    let names: Vec<_> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    for expected in [
        "auth.email.jsonl",
        "auth.org.jsonl",
        "comms.ann.jsonl",
        "expenses.exp.jsonl",
        "kv.ns.jsonl",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let kv = manifest
        .files
        .iter()
        .find(|f| f.name == "kv.ns.jsonl")
        .unwrap();
    assert_eq!(kv.records, 61);
    // Without --with-media the manifest has no media list at all (exports
    // keep the bytes they had before media could travel).
    let text = fs::read_to_string(a.join("manifest.json")).unwrap();
    assert!(!text.contains("\"media\""), "{text}");
    assert!(!a.join("media").exists());

    // The external sort with tiny runs gives the same bytes.
    migrate::export(
        &tables(&source).await,
        &small,
        &ExportOptions {
            chunk_lines: 7,
            ..options(&source)
        },
    )
    .await
    .unwrap();
    assert_same_export(&a, &small);

    let target = fx_app(TestPlatform::local().await).await;
    let report = import_into(&target, &a, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(report.rejected(), 0, "{}", report.table());
    assert_eq!(report.kinds["kv.ns"].written, 61);
    export_to(&target, &b).await;
    assert_same_export(&a, &b);
}

#[tokio::test]
async fn local_to_dynamodb_to_local_gives_the_same_bytes() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let (a, c, d) = (
        work.path().join("a"),
        work.path().join("c"),
        work.path().join("d"),
    );
    export_to(&source, &a).await;

    // DynamoDB tables under this test's names, as `--provision` makes them.
    let env = TestPlatform::aws().await;
    let aws = env.aws_backend().unwrap();
    let secret = env.name("cursor-key");
    aws.ensure_secret(&secret, &SecretValue::new(env.name("key")))
        .await
        .unwrap();
    let mut dynamo = Vec::new();
    for def in MOVED {
        let table = def
            .resources
            .iter()
            .find(|r| r.kind == ResourceKind::Table)
            .unwrap();
        let name = env.name(table.default);
        aws.ensure_table(&name).await.unwrap();
        dynamo.push(ServiceTable {
            service: def.name,
            table: env.platform.table(&name, &secret).await.unwrap(),
        });
    }
    let report = migrate::import(&dynamo, &a, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(report.rejected(), 0);
    migrate::export(&dynamo, &c, &options(&source))
        .await
        .unwrap();
    assert_same_export(&a, &c);

    let back = fx_app(TestPlatform::local().await).await;
    import_into(&back, &c, &ImportOptions::default())
        .await
        .unwrap();
    export_to(&back, &d).await;
    assert_same_export(&a, &d);
}

#[tokio::test]
async fn an_interrupted_import_resumes_to_the_same_result() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let manifest = export_to(&source, &a).await;

    let target = fx_app(TestPlatform::local().await).await;
    // Every file before kv's is one batch (under 25 records): the crash
    // comes right after kv's second batch, with lines 1-50 written.
    let before_kv = manifest
        .files
        .iter()
        .position(|f| f.name == "kv.ns.jsonl")
        .unwrap();
    assert!(manifest.files[..before_kv].iter().all(|f| f.records <= 25));
    let crash = ImportOptions {
        stop_after_batches: Some(before_kv + 2),
        ..ImportOptions::default()
    };
    let err = import_into(&target, &a, &crash).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("stopped after {} batches", before_kv + 2)),
        "{err:#}"
    );
    let checkpoint = fs::read_to_string(a.join("import.checkpoint.json")).unwrap();
    assert!(
        checkpoint.contains("kv.ns.jsonl") && checkpoint.contains("50"),
        "{checkpoint}"
    );

    let resume = ImportOptions {
        resume: true,
        ..ImportOptions::default()
    };
    let report = import_into(&target, &a, &resume).await.unwrap();
    assert_eq!(report.rejected(), 0);
    // What the first run wrote is skipped, not written again.
    assert_eq!(
        report.kinds["kv.ns"],
        KindCounts {
            read: 61,
            written: 11,
            skipped: 50,
            rejected: 0
        },
        "{}",
        report.table()
    );
    for f in &manifest.files[..before_kv] {
        let c = report.kinds[&f.kind];
        assert_eq!((c.read, c.written, c.skipped), (f.records, 0, f.records));
    }
    for (kind, c) in &report.kinds {
        assert_eq!(c.read, c.written + c.skipped + c.rejected, "{kind}");
    }
    let table = report.table();
    assert!(table.lines().next().unwrap().contains("skipped"), "{table}");
    assert!(!a.join("import.checkpoint.json").exists());
    export_to(&target, &b).await;
    assert_same_export(&a, &b);
}

#[tokio::test]
async fn a_damaged_file_stops_the_import_before_any_write() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    export_to(&source, &a).await;
    let path = a.join("kv.ns.jsonl");
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.iter().position(|b| *b == b'9').unwrap();
    bytes[at] = b'8';
    fs::write(&path, bytes).unwrap();

    let target = fx_app(TestPlatform::local().await).await;
    let err = import_into(&target, &a, &ImportOptions::default())
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("kv.ns.jsonl") && message.contains("SHA-256"),
        "{message}"
    );
    let empty = work.path().join("empty");
    let manifest = export_to(&target, &empty).await;
    assert!(manifest.files.is_empty(), "{:?}", manifest.files);
}

/// Appends `lines` to `file` of the export in `dir`, fixing the manifest.
fn append(dir: &Path, file: &str, lines: &[serde_json::Value]) {
    let path = dir.join(file);
    let mut text = fs::read_to_string(&path).unwrap();
    for line in lines {
        text.push_str(&serde_json::to_string(line).unwrap());
        text.push('\n');
    }
    fs::write(&path, &text).unwrap();
    let mut manifest: Manifest =
        serde_json::from_slice(&fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest.files.iter_mut().find(|f| f.name == file).unwrap();
    entry.records = text.lines().count() as u64;
    entry.sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

fn record(pk: &str, attrs: serde_json::Value) -> serde_json::Value {
    json!({"kind": "kv.ns", "schema": 1, "pk": pk, "sk": "k", "gsi1": null, "gsi2": null,
           "version": 1, "expires_at": null, "attrs": attrs, "bytes": null})
}

#[tokio::test]
async fn bad_records_are_listed_with_their_line_and_the_rest_imported() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    export_to(&source, &a).await;
    // A real entry under a new key imports; the same entry without its
    // content type breaks kv's own rules and does not.
    let first: serde_json::Value = serde_json::from_str(
        fs::read_to_string(a.join("kv.ns.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let mut fine = first.clone();
    fine["sk"] = json!("zz-copied");
    let mut untyped = first;
    untyped["sk"] = json!("zz-untyped");
    untyped["attrs"]
        .as_object_mut()
        .unwrap()
        .remove("content_type");
    append(
        &a,
        "kv.ns.jsonl",
        &[
            record("NS", json!({"v": 1})),
            record(&format!("NS#{ORG}#settings"), json!({"pk": "reserved"})),
            untyped,
            fine,
        ],
    );

    let target = fx_app(TestPlatform::local().await).await;
    let dry = ImportOptions {
        dry_run: true,
        ..ImportOptions::default()
    };
    let report = import_into(&target, &a, &dry).await.unwrap();
    assert_eq!(report.rejected(), 3);
    assert!(
        !a.join("rejects.jsonl").exists(),
        "a dry run writes nothing"
    );
    assert!(
        export_to(&target, &work.path().join("none"))
            .await
            .files
            .is_empty()
    );

    let report = import_into(&target, &a, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(report.kinds["kv.ns"].rejected, 3);
    assert_eq!(report.kinds["kv.ns"].written, 62);
    let rejects: Vec<serde_json::Value> = fs::read_to_string(a.join("rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    assert_eq!(rejects[0]["file"], "kv.ns.jsonl");
    assert_eq!(rejects[0]["line"], 62);
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("organization"),
        "{rejects:?}"
    );
    assert_eq!(rejects[1]["line"], 63);
    assert!(
        rejects[1]["reason"].as_str().unwrap().contains("reserved"),
        "{rejects:?}"
    );
    assert_eq!(rejects[2]["line"], 64);
    assert!(
        rejects[2]["reason"]
            .as_str()
            .unwrap()
            .contains("content_type"),
        "{rejects:?}"
    );

    // The command fails on rejects unless told to accept them.
    let data = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_constellation"))
            .arg("import")
            .arg(&a)
            .args(["--backend", "local", "--data-dir"])
            .arg(data.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 records rejected"));
    let out = run(&["--allow-rejects"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("kv.ns"));
}

#[tokio::test]
async fn no_secret_is_exported() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    // A second login: another session and refresh token.
    source
        .post("/v1/auth/login")
        .anonymous()
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .await
        .assert_status(StatusCode::OK);
    // The secrets are there to leave out.
    let auth = source
        .service
        .context("auth")
        .table("AUTH_TABLE_NAME", "CURSOR_KEY_SECRET_ID")
        .await
        .unwrap();
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = auth.scan(1000, cursor.take()).await.unwrap();
        keys.extend(
            page.items
                .into_iter()
                .map(|i| format!("{} {}", i.key.pk, i.key.sk)),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    for secret in ["REFRESH#", "#FAMILY#", "INVITE#"] {
        assert!(
            keys.iter().any(|k| k.contains(secret)),
            "no {secret} in {keys:?}"
        );
    }

    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let manifest = export_to(&source, &a).await;
    let mut all = String::new();
    for f in &manifest.files {
        assert!(
            !f.name.starts_with("auth.refresh")
                && !f.name.starts_with("auth.invite")
                && !f.name.starts_with("auth.lock"),
            "{}",
            f.name
        );
        assert!(
            !f.name.contains("outbox") && !f.name.contains("inbox") && !f.name.contains("idem"),
            "{}",
            f.name
        );
        all.push_str(&fs::read_to_string(a.join(&f.name)).unwrap());
    }
    for secret in [
        "REFRESH#",
        "#FAMILY#",
        "\"INVITE#",
        "bob@example.com",
        "OUTBOX#",
        "INBOX#",
        "IDEM#",
    ] {
        assert!(!all.contains(secret), "{secret} was exported");
    }
    // Accounts move with their password hash: users keep their passwords.
    assert!(all.contains("password_hash"));
    assert!(all.contains("ada@example.com"));

    // --org keeps only that organization's records.
    let only = work.path().join("only");
    let manifest = migrate::export(
        &tables(&source).await,
        &only,
        &ExportOptions {
            org: Some(constellation_core::OrgId::parse(ORG).unwrap()),
            ..options(&source)
        },
    )
    .await
    .unwrap();
    let names: Vec<_> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"kv.ns.jsonl") && !names.contains(&"auth.org.jsonl"),
        "{names:?}"
    );
}

/// A table whose `n`th `put_batch` fails, as a lost connection would.
#[derive(Debug)]
struct FailingPuts {
    inner: Arc<dyn Table>,
    fail_on: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl Table for FailingPuts {
    async fn get(&self, key: &ItemKey) -> Result<Option<Item>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, item: &Item, condition: Condition) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn delete(
        &self,
        key: &ItemKey,
        condition: Condition,
    ) -> Result<Option<Item>, StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.inner.query(query).await
    }
    async fn add(&self, add: &Add) -> Result<i64, StoreError> {
        self.inner.add(add).await
    }
    async fn upsert(&self, item: &Item) -> Result<u64, StoreError> {
        self.inner.upsert(item).await
    }
    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.inner.transact(writes).await
    }
    async fn scan(&self, limit: u32, cursor: Option<String>) -> Result<Page, StoreError> {
        self.inner.scan(limit, cursor).await
    }
    async fn put_batch(&self, items: &[Item]) -> Result<(), StoreError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_on {
            return Err(StoreError::Invalid("injected failure".into()));
        }
        self.inner.put_batch(items).await
    }
}

#[tokio::test]
async fn a_failed_write_resumes_without_listing_a_reject_twice() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    export_to(&source, &a).await;
    append(
        &a,
        "kv.ns.jsonl",
        &[record("NS", json!({"v": 1})), record("NS", json!({"v": 2}))],
    );

    let target = fx_app(TestPlatform::local().await).await;
    // kv's third batch: lines 51-61 and nothing after the two bad ones.
    let failing = failing_kv(&target, 3).await;
    let err = migrate::import(&failing, &a, &ImportOptions::default())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("injected failure"), "{err:#}");
    let checkpoint = fs::read_to_string(a.join("import.checkpoint.json")).unwrap();
    assert!(
        checkpoint.contains("kv.ns.jsonl") && checkpoint.contains("50"),
        "{checkpoint}"
    );
    assert_eq!(
        fs::read_to_string(a.join("rejects.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let resume = ImportOptions {
        resume: true,
        ..ImportOptions::default()
    };
    let report = import_into(&target, &a, &resume).await.unwrap();
    assert_eq!(report.rejected(), 2);
    assert_eq!(
        report.kinds["kv.ns"],
        KindCounts {
            read: 63,
            written: 11,
            skipped: 50,
            rejected: 2
        }
    );
    let rejects = fs::read_to_string(a.join("rejects.jsonl")).unwrap();
    assert_eq!(rejects.lines().count(), 2, "{rejects}");
    export_to(&target, &b).await;
    let mut expected = contents(&a);
    let mut got = contents(&b);
    // The two bad lines were not imported, so only kv's file differs.
    expected.remove("kv.ns.jsonl");
    got.remove("kv.ns.jsonl");
    expected.remove("manifest.json (files)");
    got.remove("manifest.json (files)");
    assert_eq!(expected, got);
    assert_eq!(
        fs::read_to_string(b.join("kv.ns.jsonl"))
            .unwrap()
            .lines()
            .count(),
        61
    );
}

// --- --with-media --------------------------------------------------------

constellation_testkit::on_both_backends! {
    app = crate::fx_media_app;
    media_bytes_move_with_their_records,
}

const WITH_MEDIA: &[&ServiceDef] = &[&constellation_media::SERVICE];

async fn fx_media_app(env: TestPlatform) -> App {
    let services = TestServices::start(&env, WITH_MEDIA).await.unwrap();
    let router = services.router();
    TestApp::new(env, router, services)
}

async fn media_bucket(app: &App) -> Arc<dyn BlobStore> {
    app.service
        .context("media")
        .blob_store(constellation_media::config::BUCKET_VAR)
        .await
        .unwrap()
}

/// A media uploaded as a client does (upload request, presigned PUT) and
/// checked by the worker; returns its id once it is ready.
async fn fx_ready_media(app: &App, token: &str, content_type: &str, bytes: Vec<u8>) -> String {
    let r = app
        .post("/v1/media/uploads")
        .bearer(token)
        .json(
            &json!({"purpose": "attachment", "content_type": content_type,
                      "size": bytes.len(), "filename": "file"}),
        )
        .await;
    r.assert_status(StatusCode::CREATED);
    let v = r.json();
    let upload = &v["upload"];
    let mut put = reqwest::Client::new().put(upload["url"].as_str().unwrap());
    for (name, value) in upload["headers"].as_object().unwrap() {
        if name != "content-length" {
            put = put.header(name.as_str(), value.as_str().unwrap());
        }
    }
    let status = put.body(bytes).send().await.unwrap().status();
    assert!(status.is_success(), "upload: {status}");
    app.service.pump().await.unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let m = app
        .get(&format!("/v1/media/{id}"))
        .bearer(token)
        .await
        .json();
    assert_eq!(m["status"], "ready", "{m}");
    id
}

/// What a client downloads of a media: its bytes and its thumbnail's.
async fn downloads(app: &App, token: &str, id: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    let r = app.get(&format!("/v1/media/{id}")).bearer(token).await;
    r.assert_status(StatusCode::OK);
    let m = r.json();
    let fetch = |url: &str| {
        let url = url.to_owned();
        async move {
            let r = reqwest::get(&url).await.unwrap();
            assert_eq!(r.status().as_u16(), 200, "{url}");
            r.bytes().await.unwrap().to_vec()
        }
    };
    let bytes = fetch(m["download_url"].as_str().unwrap()).await;
    let thumbnail = match m["thumbnail_url"].as_str() {
        Some(url) => Some(fetch(url).await),
        None => None,
    };
    (bytes, thumbnail)
}

async fn media_bytes_move_with_their_records(source: App) {
    let member = source.service.tokens.token(ORG, Role::Member);
    let photo = fx_ready_media(
        &source,
        &member,
        "image/jpeg",
        constellation_media::sample::jpeg(320, 240),
    )
    .await;
    let pdf = fx_ready_media(
        &source,
        &member,
        "application/pdf",
        constellation_media::sample::pdf(),
    )
    .await;
    let photo_before = downloads(&source, &member, &photo).await;
    let pdf_before = downloads(&source, &member, &pdf).await;
    assert!(photo_before.1.is_some() && pdf_before.1.is_none());

    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    let manifest = migrate::export(
        &tables_of(&source, WITH_MEDIA).await,
        &a,
        &ExportOptions {
            media: Some(media_bucket(&source).await),
            ..options(&source)
        },
    )
    .await
    .unwrap();
    // The photo, its thumbnail and the PDF, each a file with its digest.
    let keys: Vec<_> = manifest.media.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(keys.is_sorted(), "{keys:?}");
    for m in &manifest.media {
        let bytes = fs::read(a.join("media").join(&m.key)).unwrap();
        assert_eq!(bytes.len() as u64, m.bytes, "{}", m.key);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), m.sha256, "{}", m.key);
    }

    let env = match source.kind {
        constellation_platform::config::BackendKind::Local => TestPlatform::local().await,
        constellation_platform::config::BackendKind::Aws => TestPlatform::aws().await,
    };
    let target = fx_media_app(env).await;
    let target_bucket = media_bucket(&target).await;
    let target_tables = tables_of(&target, WITH_MEDIA).await;
    let into = |resume: bool| ImportOptions {
        resume,
        media: Some(target_bucket.clone()),
        ..ImportOptions::default()
    };
    // An export with media names the bucket it needs, before any write.
    let err = migrate::import(&target_tables, &a, &ImportOptions::default())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("no media bucket"), "{err:#}");
    let report = migrate::import(&target_tables, &a, &into(false))
        .await
        .unwrap();
    assert_eq!(report.rejected(), 0, "{}", report.table());
    assert_eq!(
        report.media,
        Some(KindCounts {
            read: 3,
            written: 3,
            skipped: 0,
            rejected: 0
        })
    );
    assert!(
        report.table().contains("media objects"),
        "{}",
        report.table()
    );
    let member = target.service.tokens.token(ORG, Role::Member);
    assert_eq!(downloads(&target, &member, &photo).await, photo_before);
    assert_eq!(downloads(&target, &member, &pdf).await, pdf_before);

    if source.kind == constellation_platform::config::BackendKind::Local {
        // The same through the command line: import into an empty data
        // dir, export it again with --with-media, and get the same objects.
        let data = tempfile::tempdir().unwrap();
        let b = work.path().join("b");
        let cli = |args: &[&std::ffi::OsStr]| {
            let out = Command::new(env!("CARGO_BIN_EXE_constellation"))
                .args(args)
                .arg("--data-dir")
                .arg(data.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let table = cli(&["import".as_ref(), a.as_os_str()]);
        assert!(table.contains("media objects"), "{table}");
        cli(&[
            "export".as_ref(),
            "--with-media".as_ref(),
            "--out".as_ref(),
            b.as_os_str(),
        ]);
        let again: Manifest =
            serde_json::from_slice(&fs::read(b.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(again.media, manifest.media);
    }

    // Resumed, the objects already in the bucket are not uploaded again.
    let again = migrate::import(&target_tables, &a, &into(true))
        .await
        .unwrap();
    assert_eq!(again.media.map(|m| (m.written, m.skipped)), Some((0, 3)));

    // A damaged media file stops the import before it writes anything.
    let damaged = a.join("media").join(&manifest.media[0].key);
    let mut bytes = fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&damaged, bytes).unwrap();
    let err = migrate::import(&target_tables, &a, &into(false))
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("SHA-256") && message.contains(&manifest.media[0].key),
        "{message}"
    );
}

#[tokio::test]
async fn a_failed_batch_keeps_the_checkpoint_before_it_though_later_ones_were_written() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    export_to(&source, &a).await;

    let target = fx_app(TestPlatform::local().await).await;
    // kv's three batches are written at once; the second fails.
    let failing = failing_kv(&target, 2).await;
    let err = migrate::import(&failing, &a, &ImportOptions::default())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("injected failure"), "{err:#}");
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&fs::read(a.join("import.checkpoint.json")).unwrap()).unwrap();
    assert_eq!(checkpoint, json!({"file": "kv.ns.jsonl", "line": 25}));

    let resume = ImportOptions {
        resume: true,
        ..ImportOptions::default()
    };
    let report = import_into(&target, &a, &resume).await.unwrap();
    assert_eq!(
        (report.kinds["kv.ns"].written, report.kinds["kv.ns"].skipped),
        (36, 25)
    );
    export_to(&target, &b).await;
    assert_same_export(&a, &b);
}

#[tokio::test]
async fn an_email_the_target_holds_for_another_account_is_refused() {
    let source = fx_app(TestPlatform::local().await).await;
    fx_data(&source).await;
    let work = tempfile::tempdir().unwrap();
    let a = work.path().join("a");
    export_to(&source, &a).await;

    // The target already has its own ada@example.com.
    let target = fx_app(TestPlatform::local().await).await;
    target
        .post("/v1/auth/register")
        .anonymous()
        .json(&json!({"organization": "Elsewhere", "email": "ada@example.com", "password": "another good passphrase"}))
        .await
        .assert_status(StatusCode::CREATED);
    let report = import_into(&target, &a, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(report.kinds["auth.email"].rejected, 1, "{report:?}");
    let rejects = fs::read_to_string(a.join("rejects.jsonl")).unwrap();
    assert!(rejects.contains("already claimed"), "{rejects}");
    // The target's own account still logs in with its own password.
    target
        .post("/v1/auth/login")
        .anonymous()
        .json(&json!({"email": "ada@example.com", "password": "another good passphrase"}))
        .await
        .assert_status(StatusCode::OK);
}
