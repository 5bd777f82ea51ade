//! Accounts imported with a legacy bcrypt hash: the first login verifies it
//! and stores argon2id in its place; wrong passwords count toward the lockout
//! as ever; a stored hash over the cost bound or malformed is never
//! verified; bcrypt never checks only the first 72 bytes of a password; and
//! two logins racing to upgrade the same hash both succeed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{AuthApp, AuthFixtures as _, access, account_id};
use constellation_auth::password::validate_legacy_hash;
use constellation_auth::store::{AccountForImport, AuthError};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Role};
use constellation_core::import::Imported;
use constellation_platform::table::{Condition, Item, ItemKey};
use http::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    a_bcrypt_account_logs_in_and_is_argon2id_from_then_on,
    wrong_passwords_against_a_bcrypt_hash_count_toward_the_lockout,
    bcrypt_hashes_over_the_cost_bound_or_malformed_refuse_login,
    passwords_past_bcrypts_72_bytes_are_refused,
    concurrent_logins_of_a_bcrypt_account_both_succeed_and_leave_argon2id,
    an_import_needs_a_free_email_and_an_existing_organization,
    concurrent_imports_of_one_account_write_it_once,
}

/// The password the legacy database knew.
const LEGACY: &str = "an old but good passphrase";

/// A genuine bcrypt hash of [`LEGACY`] at cost 15, one over the bound
/// (made once with the `bcrypt` crate: making it takes seconds).
const LEGACY_AT_COST_15: &str = "$2b$15$dSSiDzx9xMd8fzfwpi9e8u2NNdMzilR0GYiN9fXwcyHkKG/hdVf2u";

/// A bcrypt hash of `password` at cost 4, as PostgreSQL's pgcrypto writes them.
fn fx_bcrypt(password: &str) -> String {
    bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA)
}

/// Registers an owner; the org id and the owner's token response.
async fn fx_org(app: &AuthApp) -> (OrgId, Value) {
    let owner = app.fx_register("owner@example.com").await;
    let org = OrgId::parse(owner["account"]["org"].as_str().unwrap()).unwrap();
    (org, owner)
}

/// Imports `email` as a member of `org` with the legacy hash `hash`.
async fn fx_import(app: &AuthApp, org: &OrgId, email: &str, hash: &str) -> AccountId {
    let id = fx_account_id();
    let imported = app
        .service
        .store
        .import_account(
            org,
            AccountForImport {
                id: id.clone(),
                email: Email::parse(email).unwrap(),
                role: Role::Member,
                password_hash: validate_legacy_hash(hash).unwrap(),
                created_at: OffsetDateTime::now_utc(),
            },
        )
        .await
        .unwrap();
    assert_eq!(imported, Imported::Created);
    id
}

/// A fresh account id, as an importer derives one.
fn fx_account_id() -> AccountId {
    AccountId::from_bytes(rand::random())
}

fn account_key(org: &OrgId, id: &AccountId) -> ItemKey {
    ItemKey::new(format!("ORG#{org}"), format!("ACCOUNT#{id}"))
}

/// The account's item as stored.
async fn stored_account(app: &AuthApp, org: &OrgId, id: &AccountId) -> Item {
    app.service
        .table
        .get(&account_key(org, id))
        .await
        .unwrap()
        .expect("the account is stored")
}

/// The account's stored password hash.
async fn stored_hash(app: &AuthApp, org: &OrgId, id: &AccountId) -> String {
    let item = stored_account(app, org, id).await;
    item.attrs["password_hash"].as_str().unwrap().to_owned()
}

/// Overwrites the account's stored hash with `raw`, as a corrupt or
/// malicious write would (an import refuses these).
async fn plant_hash(app: &AuthApp, org: &OrgId, id: &AccountId, raw: &str) {
    let mut item = stored_account(app, org, id).await;
    let read = item.version;
    item.attrs.insert("password_hash".into(), json!(raw));
    item.version = read + 1;
    app.service
        .table
        .put(&item, Condition::VersionEquals(read))
        .await
        .unwrap();
}

/// The argon2id hashes the test app makes (its cheap test parameters).
const ARGON2ID_NOW: &str = "$argon2id$v=19$m=64,t=1,p=1$";

async fn a_bcrypt_account_logs_in_and_is_argon2id_from_then_on(app: AuthApp) {
    let (org, _) = fx_org(&app).await;
    let legacy = fx_bcrypt(LEGACY);
    let id = fx_import(&app, &org, "old@example.com", &legacy).await;
    assert_eq!(
        stored_hash(&app, &org, &id).await,
        legacy,
        "stored as it came"
    );
    let version = stored_account(&app, &org, &id).await.version;

    let first = app.login("old@example.com", LEGACY).await;
    first.assert_status(StatusCode::OK);
    let tokens = first.json();
    assert_eq!(account_id(&tokens), id.to_string());
    assert_eq!(tokens["account"]["role"], "member");
    let upgraded = stored_hash(&app, &org, &id).await;
    assert!(upgraded.starts_with(ARGON2ID_NOW), "{upgraded}");
    let after = stored_account(&app, &org, &id).await;
    assert_eq!(after.version, version + 1, "one conditional write");
    assert_eq!(after.attrs["email"], "old@example.com");
    assert_eq!(after.attrs["role"], "member");

    // argon2id from now on: logging in again re-hashes nothing.
    let again = app.login("old@example.com", LEGACY).await;
    again.assert_status(StatusCode::OK);
    assert_eq!(stored_hash(&app, &org, &id).await, upgraded);
    app.login("old@example.com", "not the old passphrase")
        .await
        .assert_unauthorized();
    let me = app.get("/v1/auth/me").bearer(access(&again.json())).await;
    me.assert_status(StatusCode::OK);
    assert_eq!(me.json()["email"], "old@example.com");
}

async fn wrong_passwords_against_a_bcrypt_hash_count_toward_the_lockout(app: AuthApp) {
    let (org, owner) = fx_org(&app).await;
    let legacy = fx_bcrypt(LEGACY);
    let id = fx_import(&app, &org, "old@example.com", &legacy).await;
    for _ in 0..5 {
        app.login("old@example.com", "wrong password here")
            .await
            .assert_unauthorized();
    }
    let locked = app.login("old@example.com", LEGACY).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.service.failed_login_metrics(), 6);
    assert_eq!(
        stored_hash(&app, &org, &id).await,
        legacy,
        "nothing re-hashed while locked"
    );
    let audit = app.audit(access(&owner)).await;
    let failed = audit
        .iter()
        .filter(|e| e["action"] == "login_failed" && e["target"] == id.to_string())
        .count();
    assert_eq!(failed, 6);
    assert!(audit.iter().any(|e| e["action"] == "lockout"));

    app.advance(Duration::minutes(16));
    app.login("old@example.com", LEGACY)
        .await
        .assert_status(StatusCode::OK);
    assert!(stored_hash(&app, &org, &id).await.starts_with(ARGON2ID_NOW));
}

async fn bcrypt_hashes_over_the_cost_bound_or_malformed_refuse_login(app: AuthApp) {
    let (org, _) = fx_org(&app).await;
    let legacy = fx_bcrypt(LEGACY);
    let id = fx_import(&app, &org, "old@example.com", &legacy).await;
    // Each is refused by an import; here they are planted in the table.
    assert!(validate_legacy_hash(LEGACY_AT_COST_15).is_err());
    let planted = [
        // The right password's genuine hash: only the bound refuses it.
        LEGACY_AT_COST_15.to_owned(),
        legacy.replacen("$2a$", "$2x$", 1),
        legacy[..40].to_owned(),
    ];
    for raw in &planted {
        assert!(validate_legacy_hash(raw).is_err(), "{raw}");
        plant_hash(&app, &org, &id, raw).await;
        let started = std::time::Instant::now();
        let r = app.login("old@example.com", LEGACY).await;
        r.assert_unauthorized();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "a cost-15 hash was computed"
        );
        assert_eq!(&stored_hash(&app, &org, &id).await, raw, "left as it was");
    }
    assert_eq!(
        app.service.failed_login_metrics(),
        3,
        "each counted as a failure"
    );
    // A sound hash works again.
    plant_hash(&app, &org, &id, &legacy).await;
    app.login("old@example.com", LEGACY)
        .await
        .assert_status(StatusCode::OK);
}

async fn passwords_past_bcrypts_72_bytes_are_refused(app: AuthApp) {
    let (org, _) = fx_org(&app).await;
    let seventy_two = "a passphrase long enough to fill all of bcrypt's seventy two bytes, ok!!";
    assert_eq!(seventy_two.len(), 72);
    let legacy = fx_bcrypt(seventy_two);
    let id = fx_import(&app, &org, "old@example.com", &legacy).await;
    let longer = format!("{seventy_two} and then anything at all");
    assert!(bcrypt::verify(&longer, &legacy).unwrap(), "bcrypt alone");

    app.login("old@example.com", &longer)
        .await
        .assert_unauthorized();
    assert_eq!(stored_hash(&app, &org, &id).await, legacy);
    app.login("old@example.com", seventy_two)
        .await
        .assert_status(StatusCode::OK);
    assert!(stored_hash(&app, &org, &id).await.starts_with(ARGON2ID_NOW));
    // argon2id reads every byte.
    app.login("old@example.com", &longer)
        .await
        .assert_unauthorized();
}

async fn concurrent_logins_of_a_bcrypt_account_both_succeed_and_leave_argon2id(app: AuthApp) {
    let (org, _) = fx_org(&app).await;
    let id = fx_import(&app, &org, "old@example.com", &fx_bcrypt(LEGACY)).await;
    let version = stored_account(&app, &org, &id).await.version;
    let (a, b) = tokio::join!(
        app.login("old@example.com", LEGACY),
        app.login("old@example.com", LEGACY),
    );
    a.assert_status(StatusCode::OK);
    b.assert_status(StatusCode::OK);
    let after = stored_account(&app, &org, &id).await;
    let hash = after.attrs["password_hash"].as_str().unwrap();
    assert!(hash.starts_with(ARGON2ID_NOW), "{hash}");
    // Two upgrades conditioned on one version: DynamoDB applies one. (moto
    // may apply both, one after the other; either way argon2id is stored.)
    if app.label() == "local" {
        assert_eq!(after.version, version + 1);
    }
    app.login("old@example.com", LEGACY)
        .await
        .assert_status(StatusCode::OK);
}

async fn an_import_needs_a_free_email_and_an_existing_organization(app: AuthApp) {
    let (org, owner) = fx_org(&app).await;
    let store = &app.service.store;
    let import = |email: &str, role| AccountForImport {
        id: fx_account_id(),
        email: Email::parse(email).unwrap(),
        role,
        password_hash: validate_legacy_hash(&fx_bcrypt(LEGACY)).unwrap(),
        created_at: OffsetDateTime::now_utc(),
    };
    let taken = store
        .import_account(&org, import("owner@example.com", Role::Member))
        .await;
    assert!(matches!(taken, Err(AuthError::EmailTaken)), "{taken:?}");
    let nowhere = OrgId::parse("0123456789abcdef0123456789abcdef").unwrap();
    assert!(
        store
            .import_account(&nowhere, import("lost@example.com", Role::Member))
            .await
            .is_err()
    );
    // Nothing of the refused import was written: the email is still free.
    fx_import(&app, &org, "lost@example.com", &fx_bcrypt(LEGACY)).await;

    // An imported owner counts as one: the first owner may now step down.
    let owner2 = import("owner2@example.com", Role::Owner);
    let other = store.import_account(&org, owner2.clone()).await.unwrap();
    assert_eq!(other, Imported::Created);
    // The same import again finds it and writes nothing: the owner count is
    // raised once (the first owner may step down below, not a second time).
    let again = store.import_account(&org, owner2).await.unwrap();
    assert_eq!(again, Imported::AlreadyPresent);
    let r = app
        .patch(&format!("/v1/auth/accounts/{}", account_id(&owner)))
        .json(&json!({"role": "admin"}))
        .bearer(access(&owner))
        .await;
    r.assert_status(StatusCode::OK);
    let listed = app.get("/v1/auth/accounts").bearer(access(&owner)).await;
    // The token still says owner; the stored role, admin, may list accounts.
    listed.assert_status(StatusCode::OK);
    let listed = listed.json();
    let emails: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&"owner2@example.com"), "{emails:?}");
}

/// Two runs importing one account at once: one writes it, the other finds
/// it (never `EmailTaken` for the account's own email), round after round.
async fn concurrent_imports_of_one_account_write_it_once(app: AuthApp) {
    let (org, _) = fx_org(&app).await;
    let store = &app.service.store;
    for round in 0..8 {
        let import = AccountForImport {
            id: fx_account_id(),
            email: Email::parse(&format!("twice{round}@example.com")).unwrap(),
            role: Role::Member,
            password_hash: validate_legacy_hash(&fx_bcrypt(LEGACY)).unwrap(),
            created_at: OffsetDateTime::now_utc(),
        };
        let (a, b) = tokio::join!(
            store.import_account(&org, import.clone()),
            store.import_account(&org, import.clone())
        );
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|o| o.created());
        assert_eq!(outcomes, [Imported::AlreadyPresent, Imported::Created]);
    }
}
