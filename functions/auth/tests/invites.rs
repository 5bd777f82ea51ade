//! Invites: an invite creates one account once and expires after 7 days;
//! pending invites are listed and revoked by admins; and an invite does not
//! outlive its inviter's authority.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{AuthApp, AuthFixtures as _, PASSWORD, access, account_id};
use constellation_testkit::http::Reply;
use http::StatusCode;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    invites_create_accounts_once_and_expire,
    accepting_rechecks_that_the_inviter_may_still_grant_the_role,
    pending_invites_are_listed_for_admins_without_their_tokens,
    revoked_invites_can_no_longer_be_accepted,
}

fn time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

async fn accept(app: &AuthApp, token: &str) -> Reply {
    app.post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": token, "password": PASSWORD}))
        .await
}

async fn patch_account(app: &AuthApp, by: &Value, target: &Value, change: Value) {
    let r = app
        .patch(&format!("/v1/auth/accounts/{}", account_id(target)))
        .json(&change)
        .bearer(access(by))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

async fn assert_forbidden_and_nothing_written(app: &AuthApp, token: &str, email: &str) {
    let r = accept(app, token).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.problem()["type"], "urn:constellation:problem:forbidden");
    app.login(email, PASSWORD).await.assert_unauthorized();
}

async fn invites_create_accounts_once_and_expire(app: AuthApp) {
    let owner = app.fx_register("owner@example.com").await;
    let r = app
        .post("/v1/auth/invites")
        .json(&json!({"email": "Bob@Example.com", "role": "staff"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let invite = r.json();
    let token = invite["invite_token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    let expires = time::OffsetDateTime::parse(
        invite["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(expires, app.now() + Duration::days(7));

    // A password breaking the policy leaves the invite usable.
    let bad = app
        .post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": token, "password": "short"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.field().as_deref(), Some("password"));
    let bad = app
        .post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": token, "password": "bob@example.com"}))
        .await;
    assert_eq!(bad.field().as_deref(), Some("password"));

    let accepted = app
        .post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": token, "password": PASSWORD}))
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED);
    let bob = accepted.json();
    assert_eq!(bob["account"]["email"], "bob@example.com");
    assert_eq!(bob["account"]["role"], "staff");
    assert_eq!(bob["account"]["org"], owner["account"]["org"]);
    assert_eq!(
        app.get("/v1/auth/me").bearer(access(&bob)).await.json()["role"],
        "staff"
    );

    // One use only.
    app.post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": token, "password": PASSWORD}))
        .await
        .assert_unauthorized();

    // Expired after 7 days.
    let late = app
        .fx_invite(access(&owner), "late@example.com", "member")
        .await;
    let fresh_owner = app.login("owner@example.com", PASSWORD).await.json();
    app.advance(Duration::days(7) + Duration::seconds(1));
    app.post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": late, "password": PASSWORD}))
        .await
        .assert_unauthorized();
    let _ = fresh_owner;

    // An email that already has an account cannot accept.
    let owner = app.login("owner@example.com", PASSWORD).await.json();
    let dup = app
        .fx_invite(access(&owner), "bob@example.com", "member")
        .await;
    let r = app
        .post("/v1/auth/accept-invite")
        .json(&json!({"invite_token": dup, "password": PASSWORD}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let audit = app.audit(access(&owner)).await;
    assert!(audit.iter().any(|e| e["action"] == "invite_accepted"));
    assert!(audit.iter().any(|e| e["action"] == "invite_created"));
}

async fn accepting_rechecks_that_the_inviter_may_still_grant_the_role(app: AuthApp) {
    let owner = app.fx_register("owner@example.com").await;
    let admin = app
        .fx_member(access(&owner), "admin@example.com", "admin")
        .await;
    let for_member = app
        .fx_invite(access(&admin), "m@example.com", "member")
        .await;
    let for_admin = app
        .fx_invite(access(&admin), "a2@example.com", "admin")
        .await;

    // The inviter is disabled: nothing they sent can be accepted.
    patch_account(&app, &owner, &admin, json!({"disabled": true})).await;
    assert_forbidden_and_nothing_written(&app, &for_member, "m@example.com").await;

    // Enabled again but demoted to staff: staff invite nobody.
    patch_account(
        &app,
        &owner,
        &admin,
        json!({"disabled": false, "role": "staff"}),
    )
    .await;
    assert_forbidden_and_nothing_written(&app, &for_member, "m@example.com").await;

    // Back to admin: the member invite works (it was never consumed).
    patch_account(&app, &owner, &admin, json!({"role": "admin"})).await;
    let m = accept(&app, &for_member).await;
    assert_eq!(m.status, StatusCode::CREATED);
    assert_eq!(m.json()["account"]["role"], "member");

    // An owner who invited an owner, then stepped down to admin, can no
    // longer grant owner.
    let second = app
        .fx_member(access(&owner), "o2@example.com", "owner")
        .await;
    let for_owner = app
        .fx_invite(access(&second), "o3@example.com", "owner")
        .await;
    patch_account(&app, &owner, &second, json!({"role": "admin"})).await;
    assert_forbidden_and_nothing_written(&app, &for_owner, "o3@example.com").await;
    // ...but may still grant admin.
    let a2 = accept(&app, &for_admin).await;
    assert_eq!(a2.status, StatusCode::CREATED);

    // The organization still has exactly one owner and the expected accounts.
    let list = app
        .get("/v1/auth/accounts")
        .bearer(access(&owner))
        .await
        .json();
    let mut emails: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["email"].as_str().unwrap().to_owned(),
                a["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    emails.sort();
    let want: Vec<(String, String)> = [
        ("a2@example.com", "admin"),
        ("admin@example.com", "admin"),
        ("m@example.com", "member"),
        ("o2@example.com", "admin"),
        ("owner@example.com", "owner"),
    ]
    .iter()
    .map(|(e, r)| ((*e).to_owned(), (*r).to_owned()))
    .collect();
    assert_eq!(emails, want);
}

async fn pending_invites_are_listed_for_admins_without_their_tokens(app: AuthApp) {
    let owner = app.fx_register("owner@example.com").await;
    let member = app
        .fx_member(access(&owner), "member@example.com", "member")
        .await;
    let now = app.now();
    let created = app
        .post("/v1/auth/invites")
        .json(&json!({"email": "Bob@Example.com", "role": "staff"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created = created.json();
    assert_eq!(time(&created["expires_at"]), now + Duration::days(7));
    let bob_token = created["invite_token"].as_str().unwrap().to_owned();
    let carol_token = app
        .fx_invite(access(&owner), "carol@example.com", "admin")
        .await;
    // Another organization's invites are not ours.
    let other = app.fx_register("other@example.com").await;
    app.fx_invite(access(&other), "dave@example.com", "member")
        .await;

    let r = app.get("/v1/auth/invites").bearer(access(&owner)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        !String::from_utf8_lossy(&r.body).contains(&bob_token),
        "a token leaked"
    );
    assert!(
        !String::from_utf8_lossy(&r.body).contains(&carol_token),
        "a token leaked"
    );
    let list = r.json();
    assert!(list["next_cursor"].is_null());
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list:#}");
    for i in items {
        let keys: HashSet<&str> = i.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            HashSet::from([
                "id",
                "email",
                "role",
                "invited_by",
                "created_at",
                "expires_at"
            ])
        );
        assert_eq!(i["invited_by"], account_id(&owner));
        assert_eq!(time(&i["created_at"]), now);
        assert_eq!(time(&i["expires_at"]), now + Duration::days(7));
    }
    let bob = items
        .iter()
        .find(|i| i["email"] == "bob@example.com")
        .unwrap();
    assert_eq!(bob["role"], "staff");
    assert_eq!(bob["id"], created["id"]);
    assert!(
        items
            .iter()
            .any(|i| i["email"] == "carol@example.com" && i["role"] == "admin")
    );

    // Pages.
    let first = app
        .get("/v1/auth/invites?limit=1")
        .bearer(access(&owner))
        .await
        .json();
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/v1/auth/invites?limit=1&cursor={cursor}"))
        .bearer(access(&owner))
        .await
        .json();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);

    // Members may not list; an accepted invite is no longer pending.
    let r = app.get("/v1/auth/invites").bearer(access(&member)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    app.get("/v1/auth/invites").await.assert_unauthorized();
    assert_eq!(accept(&app, &bob_token).await.status, StatusCode::CREATED);
    let after = app
        .get("/v1/auth/invites")
        .bearer(access(&owner))
        .await
        .json();
    let emails: Vec<&str> = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["carol@example.com"]);
    // Expired invites are not pending either.
    app.advance(Duration::days(7) + Duration::seconds(1));
    let owner = app.login("owner@example.com", PASSWORD).await.json();
    let expired = app
        .get("/v1/auth/invites")
        .bearer(access(&owner))
        .await
        .json();
    assert_eq!(expired["items"], json!([]));

    let audit = app.audit(access(&owner)).await;
    let listed: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "invites_listed")
        .collect();
    assert_eq!(listed.len(), 5, "{audit:#?}");
    assert!(listed.iter().all(|e| e["actor"] == account_id(&owner)));
}

async fn revoked_invites_can_no_longer_be_accepted(app: AuthApp) {
    let owner = app.fx_register("owner@example.com").await;
    let admin = app
        .fx_member(access(&owner), "admin@example.com", "admin")
        .await;
    let member = app
        .fx_member(access(&owner), "member@example.com", "member")
        .await;
    let created = app
        .post("/v1/auth/invites")
        .json(&json!({"email": "bob@example.com", "role": "staff"}))
        .bearer(access(&admin))
        .await
        .json();
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["invite_token"].as_str().unwrap(),
    );
    let path = format!("/v1/auth/invites/{id}");
    let delete = |bearer: &Value, path: &str| app.delete(path).bearer(access(bearer)).send();

    // Not by members, nor by another organization (404, as if unknown).
    assert_eq!(delete(&member, &path).await.status, StatusCode::FORBIDDEN);
    let other = app.fx_register("other@example.com").await;
    let r = delete(&other, &path).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.problem()["type"], "urn:constellation:problem:not-found");
    let unknown = delete(&owner, &format!("/v1/auth/invites/{}", "0".repeat(32))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = delete(&owner, "/v1/auth/invites/not-an-id").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.field().as_deref(), Some("id"));
    // An admin cannot revoke an owner's invite for an owner.
    let for_owner = app
        .post("/v1/auth/invites")
        .json(&json!({"email": "o2@example.com", "role": "owner"}))
        .bearer(access(&owner))
        .await
        .json();
    let r = delete(
        &admin,
        &format!("/v1/auth/invites/{}", for_owner["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = delete(&admin, &path).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    accept(&app, token).await.assert_unauthorized();
    app.login("bob@example.com", PASSWORD)
        .await
        .assert_unauthorized();
    assert_eq!(delete(&admin, &path).await.status, StatusCode::NOT_FOUND);
    let pending = app
        .get("/v1/auth/invites")
        .bearer(access(&owner))
        .await
        .json();
    let ids: Vec<&Value> = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["id"])
        .collect();
    assert_eq!(ids, [&for_owner["id"]]);

    let audit = app.audit(access(&owner)).await;
    let revoked: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "invite_revoked")
        .collect();
    assert_eq!(revoked.len(), 1, "{audit:#?}");
    assert_eq!(revoked[0]["actor"], account_id(&admin));
    assert_eq!(revoked[0]["detail"], format!("invite {id}, role staff"));
}

// Local only: moto runs concurrent DynamoDB transactions without isolation
// (see api.rs), so a race DynamoDB serialises can interleave there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepting_and_revoking_at_once_exactly_one_wins() {
    let app = common::spawn_local().await;
    let owner = app.fx_register("owner@example.com").await;
    for round in 0..6 {
        let email = format!("r{round}@example.com");
        let created = app
            .post("/v1/auth/invites")
            .json(&json!({"email": email, "role": "member"}))
            .bearer(access(&owner))
            .await
            .json();
        let path = format!("/v1/auth/invites/{}", created["id"].as_str().unwrap());
        let (accepted, revoked) = tokio::join!(
            accept(&app, created["invite_token"].as_str().unwrap()),
            app.delete(&path).bearer(access(&owner)).send()
        );
        let outcome = (accepted.status, revoked.status);
        assert!(
            outcome == (StatusCode::CREATED, StatusCode::NOT_FOUND)
                || outcome == (StatusCode::UNAUTHORIZED, StatusCode::NO_CONTENT),
            "round {round}: {outcome:?}"
        );
        let login = app.login(&email, PASSWORD).await.status;
        assert_eq!(
            login == StatusCode::OK,
            accepted.status == StatusCode::CREATED
        );
    }
}
