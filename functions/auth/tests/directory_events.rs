//! auth's account events (the directory contract of
//! `constellation_core::directory`) as a consumer receives them, on both
//! backends: a listening service subscribed to every account event type
//! reads its queue after each step. Every committed change to an account
//! arrives once, with the account's whole state and the version its write
//! gave it; a refused change publishes nothing; nothing secret is ever in an
//! event; and a resync republishes one snapshot per account.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{AuthApp, AuthFixtures as _, access, account_id, refresh_token};
use constellation_core::OrgId;
use constellation_core::directory::{AccountSnapshot, events};
use constellation_platform::DomainEvent;
use constellation_testkit::http::TestPlatform;
use constellation_testkit::services::TestServices;
use constellation_web::host::{
    BoxFuture, Context, EVENT_BUS, ResourceDef, ResourceKind, ServiceDef, SubscriptionDef,
};
use http::StatusCode;
use serde_json::{Value, json};

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    registering_publishes_the_owners_snapshot,
    accepting_an_invite_publishes_account_created,
    role_changes_and_disables_publish_snapshots_with_rising_versions,
    refused_changes_publish_nothing,
    concurrent_role_changes_converge_on_the_highest_version,
    republishing_sends_one_snapshot_per_account,
}

/// A service that only listens: its queue receives every account event.
const PROBE: ServiceDef = ServiceDef {
    name: "probe",
    resources: &[
        ResourceDef {
            var: "PROBE_QUEUE_URL",
            default: "constellation-probe",
            kind: ResourceKind::Queue {
                visibility_timeout_secs: 30,
                max_receives: 5,
            },
        },
        EVENT_BUS,
    ],
    app: probe_app,
    consumers: &[],
    schedules: &[],
    subscriptions: &[SubscriptionDef {
        queue: "PROBE_QUEUE_URL",
        events: &events::ALL,
    }],
    openapi: utoipa::openapi::OpenApi::default,
};

fn probe_app(_: &Context) -> BoxFuture<'_, anyhow::Result<axum::Router>> {
    Box::pin(async { Ok(axum::Router::new()) })
}

/// The auth app, and the probe listening on the same bus.
struct Fx {
    app: AuthApp,
    probe: TestServices,
}

async fn spawn(env: TestPlatform) -> Fx {
    // The probe first: locally its token keys take the default public key
    // secret, to which auth then adds its own key.
    let probe = TestServices::start(&env, &[&PROBE]).await.unwrap();
    let app = common::spawn(env).await;
    Fx { app, probe }
}

/// One account event as the probe received it.
#[derive(Debug)]
struct Received {
    event_type: String,
    org: String,
    snapshot: AccountSnapshot,
}

/// Every event on the probe queue, consumed. Each raw message body is
/// checked for secrets, and each event's data must be exactly a snapshot.
async fn published(fx: &Fx) -> Vec<Received> {
    let ctx = fx.probe.context("probe");
    let spec = PROBE.resources[0]
        .queue_spec(ctx.resources.queue_name("PROBE_QUEUE_URL").unwrap())
        .unwrap();
    let receiver = fx
        .app
        .platform
        .receiver(&spec, ctx.resource("PROBE_QUEUE_URL").unwrap())
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let batch = receiver
            .receive(10, std::time::Duration::from_millis(300))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for m in batch {
            let body = m.body.to_lowercase();
            for secret in ["argon2", "password", "hash", "epoch", "token"] {
                assert!(!body.contains(secret), "`{secret}` in an event: {}", m.body);
            }
            let e = DomainEvent::from_queue_body(&m.body).unwrap();
            let fields: BTreeSet<&str> = e
                .data
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                fields,
                BTreeSet::from(["account_id", "email", "role", "disabled", "version"]),
                "the data is a snapshot and nothing else: {}",
                m.body
            );
            out.push(Received {
                event_type: e.event_type,
                org: e.org,
                snapshot: serde_json::from_value(e.data).unwrap(),
            });
            receiver.delete(&m.receipt_handle).await.unwrap();
        }
    }
}

/// The only event published since the last read.
async fn the_one_event(fx: &Fx) -> Received {
    let mut got = published(fx).await;
    assert_eq!(got.len(), 1, "exactly one event: {got:?}");
    got.remove(0)
}

fn account_path(tokens: &Value) -> String {
    format!("/v1/auth/accounts/{}", account_id(tokens))
}

async fn registering_publishes_the_owners_snapshot(fx: Fx) {
    let owner = fx.app.fx_register("Owner@Example.com").await;
    let e = the_one_event(&fx).await;
    assert_eq!(e.event_type, events::ACCOUNT_CREATED);
    assert_eq!(e.org, owner["account"]["org"].as_str().unwrap());
    assert_eq!(
        e.snapshot,
        AccountSnapshot {
            account_id: account_id(&owner).to_owned(),
            email: "owner@example.com".to_owned(),
            role: "owner".to_owned(),
            disabled: false,
            version: 1,
        }
    );

    // Logging in and refreshing change no account: nothing to publish.
    let login = fx
        .app
        .login("owner@example.com", common::PASSWORD)
        .await
        .json();
    fx.app
        .refresh(refresh_token(&login))
        .await
        .assert_status(StatusCode::OK);
    assert!(published(&fx).await.is_empty());
    // A second registration of the email fails and publishes nothing.
    let r = fx
        .app
        .post("/v1/auth/register")
        .json(&json!({"organization": "Again", "email": "owner@example.com", "password": common::PASSWORD}))
        .await;
    r.assert_status(StatusCode::CONFLICT);
    assert!(published(&fx).await.is_empty());
    // Published at once, so nothing is left for the relay (on AWS the
    // outbox records are gone; locally there never were any).
    let report = fx
        .app
        .service
        .store
        .outbox()
        .relay(time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.sent, 0, "{report:?}");
}

async fn accepting_an_invite_publishes_account_created(fx: Fx) {
    let owner = fx.app.fx_register("owner@example.com").await;
    published(&fx).await;
    let invite = fx
        .app
        .fx_invite(access(&owner), "staff@example.com", "staff")
        .await;
    assert!(
        published(&fx).await.is_empty(),
        "an invite is not an account"
    );
    let r = fx
        .app
        .post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": invite, "password": common::PASSWORD}))
        .await;
    r.assert_status(StatusCode::CREATED);
    let staff = r.json();
    let e = the_one_event(&fx).await;
    assert_eq!(e.event_type, events::ACCOUNT_CREATED);
    assert_eq!(e.org, owner["account"]["org"].as_str().unwrap());
    assert_eq!(
        e.snapshot,
        AccountSnapshot {
            account_id: account_id(&staff).to_owned(),
            email: "staff@example.com".to_owned(),
            role: "staff".to_owned(),
            disabled: false,
            version: 1,
        }
    );
    // The token is used up: a second accept fails and publishes nothing.
    let again = fx
        .app
        .post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": invite, "password": common::PASSWORD}))
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(published(&fx).await.is_empty());
}

async fn role_changes_and_disables_publish_snapshots_with_rising_versions(fx: Fx) {
    let owner = fx.app.fx_register("owner@example.com").await;
    let member = fx
        .app
        .fx_member(access(&owner), "member@example.com", "member")
        .await;
    published(&fx).await;
    let path = account_path(&member);
    let mut last = 1;
    let steps = [
        (
            json!({"role": "admin"}),
            events::ACCOUNT_UPDATED,
            "admin",
            false,
        ),
        (
            json!({"disabled": true}),
            events::ACCOUNT_DISABLED,
            "admin",
            true,
        ),
        // Re-enabling is an update with `disabled: false`.
        (
            json!({"disabled": false}),
            events::ACCOUNT_UPDATED,
            "admin",
            false,
        ),
        // Both at once, into disabled: `account.disabled` with the new role.
        (
            json!({"role": "staff", "disabled": true}),
            events::ACCOUNT_DISABLED,
            "staff",
            true,
        ),
    ];
    for (change, event_type, role, disabled) in steps {
        fx.app
            .patch(&path)
            .json(&change)
            .bearer(access(&owner))
            .await
            .assert_status(StatusCode::OK);
        let e = the_one_event(&fx).await;
        assert_eq!(e.event_type, event_type, "{change}");
        assert_eq!(e.snapshot.account_id, account_id(&member));
        assert_eq!(e.snapshot.email, "member@example.com");
        assert_eq!(
            (e.snapshot.role.as_str(), e.snapshot.disabled),
            (role, disabled)
        );
        assert!(e.snapshot.version > last, "{change}: versions rise");
        last = e.snapshot.version;
    }
    // A change to what already is writes nothing and publishes nothing.
    fx.app
        .patch(&path)
        .json(&json!({"role": "staff", "disabled": true}))
        .bearer(access(&owner))
        .await
        .assert_status(StatusCode::OK);
    assert!(published(&fx).await.is_empty());
}

async fn refused_changes_publish_nothing(fx: Fx) {
    let owner = fx.app.fx_register("owner@example.com").await;
    let staff = fx
        .app
        .fx_member(access(&owner), "staff@example.com", "staff")
        .await;
    let admin = fx
        .app
        .fx_member(access(&owner), "admin@example.com", "admin")
        .await;
    published(&fx).await;
    let refused = [
        // Staff manage nobody.
        (
            &staff,
            account_path(&admin),
            json!({"role": "member"}),
            StatusCode::FORBIDDEN,
        ),
        // An admin cannot raise anyone to owner, nor disable an owner.
        (
            &admin,
            account_path(&staff),
            json!({"role": "owner"}),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            account_path(&owner),
            json!({"disabled": true}),
            StatusCode::FORBIDDEN,
        ),
        // The last owner stays.
        (
            &owner,
            account_path(&owner),
            json!({"role": "admin"}),
            StatusCode::CONFLICT,
        ),
        (
            &owner,
            account_path(&owner),
            json!({"disabled": true}),
            StatusCode::CONFLICT,
        ),
        // No such account.
        (
            &owner,
            format!("/v1/auth/accounts/{}", "0".repeat(32)),
            json!({"role": "member"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (caller, path, change, status) in refused {
        let r = fx
            .app
            .patch(&path)
            .json(&change)
            .bearer(access(caller))
            .await;
        assert_eq!(r.status, status, "{path} {change}: {}", r.text());
    }
    // A disabled caller's token still verifies for a while; the store
    // refuses it, and publishes nothing.
    fx.app
        .patch(&account_path(&admin))
        .json(&json!({"disabled": true}))
        .bearer(access(&owner))
        .await
        .assert_status(StatusCode::OK);
    assert_eq!(
        the_one_event(&fx).await.event_type,
        events::ACCOUNT_DISABLED
    );
    let r = fx
        .app
        .patch(&account_path(&staff))
        .json(&json!({"role": "member"}))
        .bearer(access(&admin))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(published(&fx).await.is_empty());
}

async fn concurrent_role_changes_converge_on_the_highest_version(fx: Fx) {
    let owner = fx.app.fx_register("owner@example.com").await;
    let member = fx
        .app
        .fx_member(access(&owner), "member@example.com", "member")
        .await;
    published(&fx).await;
    let path = account_path(&member);
    let roles = [
        "staff", "admin", "member", "staff", "admin", "member", "admin", "staff",
    ];
    let replies = futures::future::join_all(roles.iter().map(|role| {
        fx.app
            .patch(&path)
            .json(&json!({ "role": role }))
            .bearer(access(&owner))
            .send()
    }))
    .await;
    for r in &replies {
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::CONFLICT,
            "{} {}",
            r.status,
            r.text()
        );
    }
    assert!(replies.iter().any(|r| r.status == StatusCode::OK));

    let got = published(&fx).await;
    let mut by_version = BTreeMap::new();
    for e in &got {
        assert_eq!(e.event_type, events::ACCOUNT_UPDATED);
        assert_eq!(e.snapshot.account_id, account_id(&member));
        assert!(
            by_version
                .insert(e.snapshot.version, e.snapshot.clone())
                .is_none(),
            "one event per version: {got:?}"
        );
    }
    // Every committed write published once: the versions are 2, 3, … with no gap.
    let versions: Vec<u64> = by_version.keys().copied().collect();
    let expected: Vec<u64> = (2..2 + versions.len() as u64).collect();
    assert_eq!(versions, expected);
    let (_, newest) = by_version.last_key_value().unwrap();
    let accounts = fx
        .app
        .get("/v1/auth/accounts?limit=100")
        .bearer(access(&owner))
        .await
        .json();
    let now = accounts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == account_id(&member))
        .unwrap()
        .clone();
    assert_eq!(newest.role, now["role"].as_str().unwrap(), "{got:?}");
    assert!(!newest.disabled);
}

async fn republishing_sends_one_snapshot_per_account(fx: Fx) {
    let acme = fx.app.fx_register("owner@acme.example").await;
    let admin = fx
        .app
        .fx_member(access(&acme), "admin@acme.example", "admin")
        .await;
    let member = fx
        .app
        .fx_member(access(&acme), "member@acme.example", "member")
        .await;
    fx.app
        .patch(&account_path(&member))
        .json(&json!({"role": "staff", "disabled": true}))
        .bearer(access(&admin))
        .await
        .assert_status(StatusCode::OK);
    // A second owner rewrites the organization item (its owner count): the
    // organization must stay in the index that `None` enumerates.
    fx.app
        .patch(&account_path(&admin))
        .json(&json!({"role": "owner"}))
        .bearer(access(&acme))
        .await
        .assert_status(StatusCode::OK);
    let other = fx.app.fx_register("owner@other.example").await;
    let live = published(&fx).await;
    assert_eq!(live.len(), 6);
    // The newest version each account published, as a consumer keeps it.
    let mut kept: BTreeMap<String, AccountSnapshot> = BTreeMap::new();
    for e in live {
        let newer = kept
            .get(&e.snapshot.account_id)
            .is_none_or(|k| k.version < e.snapshot.version);
        if newer {
            kept.insert(e.snapshot.account_id.clone(), e.snapshot);
        }
    }

    let store = &fx.app.service.store;
    let acme_org = OrgId::parse(acme["account"]["org"].as_str().unwrap()).unwrap();
    let n = store.republish_accounts(Some(&acme_org)).await.unwrap();
    assert_eq!(n, 3);
    let got = published(&fx).await;
    assert_eq!(got.len(), 3);
    let mut ids = BTreeSet::new();
    for e in &got {
        assert_eq!(e.event_type, events::ACCOUNT_UPDATED);
        assert_eq!(e.org, acme_org.as_str());
        // The snapshot is the account as it is, at its current version.
        assert_eq!(Some(&e.snapshot), kept.get(&e.snapshot.account_id));
        ids.insert(e.snapshot.account_id.clone());
    }
    let acme_ids: BTreeSet<String> = [&acme, &admin, &member]
        .iter()
        .map(|t| account_id(t).to_owned())
        .collect();
    assert_eq!(ids, acme_ids);

    // Every organization: found through the organization index.
    let n = store.republish_accounts(None).await.unwrap();
    assert_eq!(n, 4);
    let got = published(&fx).await;
    assert_eq!(got.len(), 4);
    let all: BTreeSet<String> = got.iter().map(|e| e.snapshot.account_id.clone()).collect();
    assert!(all.contains(account_id(&other)));
    assert_eq!(all.len(), 4);
    for e in &got {
        assert_eq!(Some(&e.snapshot), kept.get(&e.snapshot.account_id));
    }

    // An organization that does not exist is an error, not silence.
    let unknown = OrgId::parse(&"f".repeat(32)).unwrap();
    assert!(store.republish_accounts(Some(&unknown)).await.is_err());
    assert!(published(&fx).await.is_empty());
}
