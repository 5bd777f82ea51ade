//! The auth HTTP contract, exercised through the real router over real SQLite
//! storage with a manual clock: what a client sees (status, headers, body).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use base64::Engine as _;
use common::{PASSWORD, TestApp, access, account_id, refresh_token};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;

on_both_backends!(
    register_login_me_refresh_logout,
    refresh_rotates_and_reuse_revokes_the_whole_family,
    refresh_tokens_expire_after_30_days,
    lockout_after_five_failures_whatever_the_password_then_it_expires,
    roles_never_escalate_and_the_last_owner_stays,
    invites_create_accounts_once_and_expire,
    disabled_accounts_cannot_log_in_or_refresh,
    another_organizations_accounts_answer_404,
    accounts_list_pages_with_a_cursor,
    audit_log_is_for_admins_newest_first,
    bad_input_gets_a_4xx_naming_the_field,
    jwks_publishes_the_key_that_signs_access_tokens,
);

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn register_login_me_refresh_logout(app: TestApp) {
    let reg = app
        .post(
            "/v1/auth/register",
            &json!({"organization": "Acme", "email": "  Ada@Example.COM ", "password": PASSWORD}),
        )
        .send()
        .await;
    assert_eq!(reg.status, StatusCode::CREATED);
    assert_eq!(reg.header("cache-control"), Some("no-store"));
    let tokens = reg.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["account"]["email"], "ada@example.com");
    assert_eq!(tokens["account"]["role"], "owner");
    assert!(is_hex32(tokens["account"]["org"].as_str().unwrap()));
    assert!(is_hex32(account_id(&tokens)));
    assert_eq!(access(&tokens).split('.').count(), 3);
    let claims = access(&tokens).split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    let now = app.clock_now().unix_timestamp();
    assert_eq!(claims["iat"].as_i64(), Some(now), "{claims}");
    assert_eq!(claims["exp"].as_i64(), Some(now + 900), "{claims}");
    assert_eq!(refresh_token(&tokens).len(), 43);
    let keys: HashSet<&str> = tokens
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
            "account"
        ])
    );

    let me = app.get("/v1/auth/me").bearer(access(&tokens)).send().await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json(), tokens["account"]);

    app.get("/v1/auth/me").send().await.assert_unauthorized();
    app.get("/v1/auth/me")
        .bearer("not.a.token")
        .send()
        .await
        .assert_unauthorized();

    let wrong = app
        .login("ada@example.com", "not the password at all")
        .await;
    wrong.assert_unauthorized();
    assert_eq!(
        wrong.problem()["type"],
        "urn:constellation:problem:unauthorized"
    );

    let login = app.login("ADA@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    let session = login.json();
    assert_eq!(session["account"], tokens["account"]);

    let refreshed = app.refresh(refresh_token(&session)).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let refreshed = refreshed.json();
    assert_ne!(refresh_token(&refreshed), refresh_token(&session));
    assert_eq!(refreshed["account"], tokens["account"]);
    let me = app
        .get("/v1/auth/me")
        .bearer(access(&refreshed))
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK);

    let out = app
        .post(
            "/v1/auth/logout",
            &json!({"refresh_token": refresh_token(&refreshed)}),
        )
        .bearer(access(&refreshed))
        .send()
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    app.refresh(refresh_token(&refreshed))
        .await
        .assert_unauthorized();
    // Logout needs an access token.
    app.post(
        "/v1/auth/logout",
        &json!({"refresh_token": refresh_token(&tokens)}),
    )
    .send()
    .await
    .assert_unauthorized();
    // The registration's own session is a different family: still alive.
    assert_eq!(
        app.refresh(refresh_token(&tokens)).await.status,
        StatusCode::OK
    );
}

async fn refresh_rotates_and_reuse_revokes_the_whole_family(app: TestApp) {
    let owner = app.fx_register("ada@example.com").await;
    let r0 = refresh_token(&owner).to_owned();
    let s1 = app.refresh(&r0).await.json();
    let r1 = refresh_token(&s1).to_owned();
    let s2 = app.refresh(&r1).await.json();
    let r2 = refresh_token(&s2).to_owned();

    // r0 was rotated: presenting it again after the grace for concurrent
    // refreshes is reuse.
    app.advance(Duration::seconds(10));
    app.refresh(&r0).await.assert_unauthorized();
    // The whole family is dead, the newest token too.
    app.refresh(&r2).await.assert_unauthorized();
    app.refresh(&r1).await.assert_unauthorized();
    // Unknown and malformed tokens are 401 as well.
    app.refresh(&"A".repeat(43)).await.assert_unauthorized();
    app.refresh("short").await.assert_unauthorized();

    // Another login is another family and unaffected.
    let other = app.login("ada@example.com", PASSWORD).await.json();
    let again = app.refresh(refresh_token(&other)).await;
    assert_eq!(again.status, StatusCode::OK);

    let audit = app.audit(access(&again.json())).await;
    let reuse: Vec<&Value> = audit
        .iter()
        .filter(|e| e["action"] == "refresh_reuse")
        .collect();
    assert_eq!(reuse.len(), 1, "{audit:#?}");
    assert_eq!(reuse[0]["target"], account_id(&owner));
}

async fn refresh_tokens_expire_after_30_days(app: TestApp) {
    let owner = app.fx_register("ada@example.com").await;
    app.advance(Duration::days(30) + Duration::seconds(1));
    app.refresh(refresh_token(&owner))
        .await
        .assert_unauthorized();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_parallel_guesses_gets_five_tries_at_most() {
    let app = common::spawn_app().await;
    app.fx_register("ada@example.com").await;
    let guesses = (0..20).map(|i| {
        app.post(
            "/v1/auth/login",
            &json!({"email": "ada@example.com", "password": format!("guess number {i:04}")}),
        )
        .ip(&format!("198.51.100.{i}"))
        .send()
    });
    let replies = futures::future::join_all(guesses).await;
    let checked = replies
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (5, 15));
}

// Local only: moto runs concurrent DynamoDB transactions without isolation
// (it checks and writes item by item and rolls back by restoring a table
// snapshot), so races that DynamoDB serialises can interleave there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_exactly_one_wins() {
    let app = common::spawn_app().await;
    let attempts = ["dup@example.com", "DUP@example.com", " dup@Example.com"]
        .iter()
        .cycle()
        .take(12)
        .map(|email| {
            app.post(
                "/v1/auth/register",
                &json!({"organization": "Race", "email": email, "password": PASSWORD}),
            )
            .send()
        });
    let replies = futures::future::join_all(attempts).await;
    let created = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let conflicts: Vec<&common::Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::CONFLICT)
        .collect();
    assert_eq!(created, 1, "{replies:#?}");
    assert_eq!(conflicts.len(), 11);
    for c in conflicts {
        assert_eq!(c.field().as_deref(), Some("email"));
    }
    assert_eq!(
        app.login("dup@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
}

async fn lockout_after_five_failures_whatever_the_password_then_it_expires(app: TestApp) {
    let owner = app.fx_register("ada@example.com").await;

    // Spread over addresses: this is the per-account counter.
    for i in 0..5 {
        let r = app
            .login_from(
                &format!("198.51.100.{i}"),
                "ada@example.com",
                "wrong password here",
            )
            .await;
        r.assert_unauthorized();
    }
    let locked = app
        .login_from("198.51.100.77", "ada@example.com", PASSWORD)
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        locked.problem()["type"],
        "urn:constellation:problem:too-many-requests"
    );
    let retry_after: i64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");

    // An unknown email behaves the same.
    for i in 0..5 {
        app.login_from(
            &format!("192.0.2.{i}"),
            "ghost@example.com",
            "wrong password here",
        )
        .await
        .assert_unauthorized();
    }
    let ghost = app
        .login_from("192.0.2.77", "ghost@example.com", "wrong password here")
        .await;
    assert_eq!(ghost.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(ghost.header("retry-after").is_some());

    // Time moves on; the lock lifts.
    app.advance(Duration::minutes(5));
    let still = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    let later: i64 = still.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(later, retry_after - 300);
    app.advance(Duration::minutes(11));
    let ok = app.login("ada@example.com", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK);

    // One FailedLogin metric per failed attempt, locked ones included.
    assert_eq!(app.failed_login_metrics(), 5 + 1 + 5 + 1 + 1);

    // (The registration's access token has expired by now.)
    let _ = owner;
    let audit = app.audit(access(&ok.json())).await;
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "lockout").count(), 1);
    assert_eq!(actions.iter().filter(|a| **a == "login_failed").count(), 7);
    assert_eq!(actions[0], "login_succeeded", "newest first: {actions:?}");
}

async fn roles_never_escalate_and_the_last_owner_stays(app: TestApp) {
    let owner = app.fx_register("owner@example.com").await;
    let admin = app
        .fx_member(access(&owner), "admin@example.com", "admin")
        .await;
    let staff = app
        .fx_member(access(&owner), "staff@example.com", "staff")
        .await;
    let member = app
        .fx_member(access(&admin), "member@example.com", "member")
        .await;
    assert_eq!(admin["account"]["role"], "admin");
    assert_eq!(member["account"]["org"], owner["account"]["org"]);
    let path = |t: &Value| format!("/v1/auth/accounts/{}", account_id(t));

    // An admin cannot raise anyone to owner, nor touch an owner.
    let r = app
        .patch(&path(&member), &json!({"role": "owner"}))
        .bearer(access(&admin))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.problem()["type"], "urn:constellation:problem:forbidden");
    let r = app
        .patch(&path(&admin), &json!({"role": "owner"}))
        .bearer(access(&admin))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "not even themselves");
    for change in [json!({"role": "member"}), json!({"disabled": true})] {
        let r = app
            .patch(&path(&owner), &change)
            .bearer(access(&admin))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{change}");
    }
    // But can manage those at or below their role.
    let r = app
        .patch(&path(&member), &json!({"role": "staff"}))
        .bearer(access(&admin))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["role"], "staff");
    assert_eq!(r.json()["disabled"], false);

    // Staff and members manage nothing and invite nobody.
    let r = app
        .post(
            "/v1/auth/invites",
            &json!({"email": "x@example.com", "role": "member"}),
        )
        .bearer(access(&staff))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .patch(&path(&member), &json!({"role": "member"}))
        .bearer(access(&staff))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Admins cannot invite above their role.
    let r = app
        .post(
            "/v1/auth/invites",
            &json!({"email": "x@example.com", "role": "owner"}),
        )
        .bearer(access(&admin))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The only owner can be neither demoted nor disabled.
    for change in [json!({"role": "admin"}), json!({"disabled": true})] {
        let r = app
            .patch(&path(&owner), &change)
            .bearer(access(&owner))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{change}");
        assert_eq!(r.problem()["type"], "urn:constellation:problem:conflict");
    }
    // With a second owner, the first may step down; then the second is the last.
    let r = app
        .patch(&path(&admin), &json!({"role": "owner"}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .patch(&path(&owner), &json!({"role": "admin"}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_owner = app.login("admin@example.com", PASSWORD).await.json();
    assert_eq!(new_owner["account"]["role"], "owner");
    let r = app
        .patch(&path(&admin), &json!({"disabled": true}))
        .bearer(access(&new_owner))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // A stale token does not carry a lost role: the stored role rules.
    let r = app
        .patch(&path(&member), &json!({"role": "member"}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "now an admin, still manages staff"
    );
    let r = app
        .patch(&path(&admin), &json!({"role": "member"}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the old owner token no longer outranks the new owner"
    );

    // Role changes are audited.
    let audit = app.audit(access(&new_owner)).await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "role_changed" && e["detail"] == "admin -> owner")
    );
}

// Local only: moto runs concurrent DynamoDB transactions without isolation
// (it checks and writes item by item and rolls back by restoring a table
// snapshot), so races that DynamoDB serialises can interleave there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_owners_demoting_each_other_at_once_leave_one_owner() {
    let app = common::spawn_app().await;
    // Several rounds, so that both interleavings (and the stale read of the
    // owner count between them) are met.
    for round in 0..16 {
        let a = app.fx_register(&format!("a{round}@example.com")).await;
        let b = app
            .fx_member(access(&a), &format!("b{round}@example.com"), "owner")
            .await;
        let demote = |actor: &Value, target: &Value| {
            app.patch(
                &format!("/v1/auth/accounts/{}", account_id(target)),
                &json!({"role": "admin"}),
            )
            .bearer(access(actor))
            .send()
        };
        let (ab, ba) = tokio::join!(demote(&a, &b), demote(&b, &a));
        // The loser was demoted by the winner before its own change could
        // apply: as an admin it may not demote an owner.
        let (winner, loser, winner_tokens) = if ab.status == StatusCode::OK {
            (&ab, &ba, &a)
        } else {
            (&ba, &ab, &b)
        };
        assert_eq!(
            winner.status,
            StatusCode::OK,
            "round {round}: {ab:?} {ba:?}"
        );
        assert_eq!(
            loser.status,
            StatusCode::FORBIDDEN,
            "round {round}: {ab:?} {ba:?}"
        );
        assert_eq!(
            loser.problem()["type"],
            "urn:constellation:problem:forbidden"
        );
        let list = app
            .get("/v1/auth/accounts")
            .bearer(access(winner_tokens))
            .send()
            .await
            .json();
        let roles: Vec<(&str, &str)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["email"].as_str().unwrap(), a["role"].as_str().unwrap()))
            .collect();
        assert_eq!(roles.len(), 2, "{list:#}");
        assert_eq!(
            roles.iter().filter(|(_, r)| *r == "owner").count(),
            1,
            "{list:#}"
        );
        assert_eq!(
            roles.iter().filter(|(_, r)| *r == "admin").count(),
            1,
            "{list:#}"
        );
    }
}

async fn invites_create_accounts_once_and_expire(app: TestApp) {
    let owner = app.fx_register("owner@example.com").await;
    let r = app
        .post(
            "/v1/auth/invites",
            &json!({"email": "Bob@Example.com", "role": "staff"}),
        )
        .bearer(access(&owner))
        .send()
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
    assert_eq!(expires, app.clock_now() + Duration::days(7));

    // A password breaking the policy leaves the invite usable.
    let bad = app
        .post(
            "/v1/auth/accept-invite",
            &json!({"invite_token": token, "password": "short"}),
        )
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.field().as_deref(), Some("password"));
    let bad = app
        .post(
            "/v1/auth/accept-invite",
            &json!({"invite_token": token, "password": "bob@example.com"}),
        )
        .send()
        .await;
    assert_eq!(bad.field().as_deref(), Some("password"));

    let accepted = app
        .post(
            "/v1/auth/accept-invite",
            &json!({"invite_token": token, "password": PASSWORD}),
        )
        .send()
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED);
    let bob = accepted.json();
    assert_eq!(bob["account"]["email"], "bob@example.com");
    assert_eq!(bob["account"]["role"], "staff");
    assert_eq!(bob["account"]["org"], owner["account"]["org"]);
    assert_eq!(
        app.get("/v1/auth/me")
            .bearer(access(&bob))
            .send()
            .await
            .json()["role"],
        "staff"
    );

    // One use only.
    app.post(
        "/v1/auth/accept-invite",
        &json!({"invite_token": token, "password": PASSWORD}),
    )
    .send()
    .await
    .assert_unauthorized();

    // Expired after 7 days.
    let late = app
        .fx_invite(access(&owner), "late@example.com", "member")
        .await;
    let fresh_owner = app.login("owner@example.com", PASSWORD).await.json();
    app.advance(Duration::days(7) + Duration::seconds(1));
    app.post(
        "/v1/auth/accept-invite",
        &json!({"invite_token": late, "password": PASSWORD}),
    )
    .send()
    .await
    .assert_unauthorized();
    let _ = fresh_owner;

    // An email that already has an account cannot accept.
    let owner = app.login("owner@example.com", PASSWORD).await.json();
    let dup = app
        .fx_invite(access(&owner), "bob@example.com", "member")
        .await;
    let r = app
        .post(
            "/v1/auth/accept-invite",
            &json!({"invite_token": dup, "password": PASSWORD}),
        )
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    let audit = app.audit(access(&owner)).await;
    assert!(audit.iter().any(|e| e["action"] == "invite_accepted"));
    assert!(audit.iter().any(|e| e["action"] == "invite_created"));
}

async fn disabled_accounts_cannot_log_in_or_refresh(app: TestApp) {
    let owner = app.fx_register("owner@example.com").await;
    let member = app
        .fx_member(access(&owner), "m@example.com", "member")
        .await;
    let session = app.login("m@example.com", PASSWORD).await.json();
    let path = format!("/v1/auth/accounts/{}", account_id(&member));

    let r = app
        .patch(&path, &json!({"disabled": true}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["disabled"], true);

    app.refresh(refresh_token(&session))
        .await
        .assert_unauthorized();
    app.refresh(refresh_token(&member))
        .await
        .assert_unauthorized();
    app.login("m@example.com", PASSWORD)
        .await
        .assert_unauthorized();
    // The access token is still signed, but auth checks the stored account.
    app.get("/v1/auth/me")
        .bearer(access(&member))
        .send()
        .await
        .assert_unauthorized();

    // Re-enabled: a new login works, the old sessions stay dead.
    let r = app
        .patch(&path, &json!({"disabled": false}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.login("m@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    app.refresh(refresh_token(&session))
        .await
        .assert_unauthorized();

    let audit = app.audit(access(&owner)).await;
    assert!(audit.iter().any(|e| e["action"] == "account_disabled"
        && e["target"] == account_id(&member)
        && e["actor"] == account_id(&owner)));
    assert!(audit.iter().any(|e| e["action"] == "account_enabled"));
}

async fn another_organizations_accounts_answer_404(app: TestApp) {
    let a = app.fx_register("a@example.com").await;
    let b = app.fx_register("b@example.com").await;
    let b_member = app.fx_member(access(&b), "bm@example.com", "member").await;
    assert_ne!(a["account"]["org"], b["account"]["org"]);

    for target in [&b, &b_member] {
        let r = app
            .patch(
                &format!("/v1/auth/accounts/{}", account_id(target)),
                &json!({"role": "member"}),
            )
            .bearer(access(&a))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.problem()["type"], "urn:constellation:problem:not-found");
    }
    let unknown = app
        .patch(
            &format!("/v1/auth/accounts/{}", "0".repeat(32)),
            &json!({"disabled": true}),
        )
        .bearer(access(&a))
        .send()
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let list = app.get("/v1/auth/accounts").bearer(access(&a)).send().await;
    assert_eq!(list.status, StatusCode::OK);
    let list = list.json();
    let emails: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["a@example.com"]);
    assert!(list["next_cursor"].is_null());

    // B's audit log is B's alone: A's holds A's registration and nothing of B's.
    let audit_a = app.audit(access(&a)).await;
    let actions: Vec<&str> = audit_a
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["register"], "{audit_a:#?}");
    assert_eq!(audit_a[0]["actor"], account_id(&a));
    assert_eq!(audit_a[0]["target"], account_id(&a));
    assert!(
        audit_a
            .iter()
            .all(|e| e["target"] == account_id(&a) || e["actor"] == account_id(&a))
    );
    let audit_b = app.audit(access(&b)).await;
    let actions: Vec<&str> = audit_b
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["invite_accepted", "invite_created", "register"],
        "{audit_b:#?}"
    );
}

async fn accounts_list_pages_with_a_cursor(app: TestApp) {
    let owner = app.fx_register("owner@example.com").await;
    for i in 0..4 {
        app.fx_member(access(&owner), &format!("m{i}@example.com"), "member")
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/auth/accounts?limit=2".to_owned();
    loop {
        let page = app.get(&path).bearer(access(&owner)).send().await;
        assert_eq!(page.status, StatusCode::OK);
        let page = page.json();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for i in items {
            assert_eq!(
                i.as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<HashSet<_>>(),
                ["id", "email", "org", "role", "disabled", "created_at"]
                    .map(String::from)
                    .into()
            );
            seen.push(i["email"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/auth/accounts?limit=2&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "m0@example.com",
            "m1@example.com",
            "m2@example.com",
            "m3@example.com",
            "owner@example.com"
        ]
    );
    let forged = app
        .get("/v1/auth/accounts?cursor=forged")
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert_eq!(forged.field().as_deref(), Some("cursor"));
}

async fn audit_log_is_for_admins_newest_first(app: TestApp) {
    let owner = app.fx_register("owner@example.com").await;
    let admin = app
        .fx_member(access(&owner), "admin@example.com", "admin")
        .await;
    let member = app
        .fx_member(access(&owner), "member@example.com", "member")
        .await;
    app.clock.advance(Duration::seconds(1));
    app.login("member@example.com", "wrong password here")
        .await
        .assert_unauthorized();
    app.clock.advance(Duration::seconds(1));
    app.login("member@example.com", PASSWORD).await;

    let r = app
        .get("/v1/auth/audit")
        .bearer(access(&member))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    app.get("/v1/auth/audit").send().await.assert_unauthorized();

    let first = app
        .get("/v1/auth/audit?limit=2")
        .bearer(access(&admin))
        .send()
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let first = first.json();
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "login_succeeded");
    assert_eq!(items[0]["target"], account_id(&member));
    assert_eq!(items[1]["action"], "login_failed");
    assert_eq!(items[1]["detail"], "wrong password");
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/v1/auth/audit?cursor={cursor}"))
        .bearer(access(&admin))
        .send()
        .await
        .json();
    let actions: Vec<&str> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.last(), Some(&"register"), "{actions:?}");
    assert!(actions.contains(&"invite_accepted"));
}

async fn bad_input_gets_a_4xx_naming_the_field(app: TestApp) {
    let register = |body: Value| app.post("/v1/auth/register", &body).send();
    let cases = [
        (
            json!({"organization": "A", "email": "nope", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"organization": "A", "email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"organization": "A", "email": "a@example.com", "password": "password1234"}),
            "password",
        ),
        (
            json!({"organization": "A", "email": "abcdefghijkl@example.com", "password": "abcdefghijkl"}),
            "password",
        ),
        (
            json!({"organization": "", "email": "a@example.com", "password": PASSWORD}),
            "organization",
        ),
        (
            json!({"organization": "A", "email": "a@example.com", "password": PASSWORD, "admin": true}),
            "admin",
        ),
        (
            json!({"organization": "A", "email": 5, "password": PASSWORD}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let r = register(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.field().as_deref(), Some(field), "{body}");
    }
    let missing = register(json!({"email": "a@example.com", "password": PASSWORD})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let form = app
        .call(Method::POST, "/v1/auth/register")
        .raw("application/x-www-form-urlencoded", "email=a")
        .send()
        .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Nothing was half-written: the email is still free.
    let owner = app.fx_register("a@example.com").await;

    let login = app
        .post("/v1/auth/login", &json!({"email": "bad", "password": "x"}))
        .send()
        .await;
    assert_eq!(login.field().as_deref(), Some("email"));
    let login = app
        .post(
            "/v1/auth/login",
            &json!({"email": "a@example.com", "password": "x".repeat(129)}),
        )
        .send()
        .await;
    assert_eq!(login.field().as_deref(), Some("password"));

    let invite = app
        .post(
            "/v1/auth/invites",
            &json!({"email": "b@example.com", "role": "root"}),
        )
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(invite.field().as_deref(), Some("role"));
    let patch = app
        .patch("/v1/auth/accounts/not-an-id", &json!({"role": "member"}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(patch.field().as_deref(), Some("id"));
    let empty = app
        .patch(
            &format!("/v1/auth/accounts/{}", account_id(&owner)),
            &json!({}),
        )
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let limit = app
        .get("/v1/auth/accounts?limit=0")
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(limit.field().as_deref(), Some("limit"));
    let unknown = app
        .get("/v1/auth/audit?colour=red")
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(unknown.field().as_deref(), Some("colour"));
    let logout = app
        .post("/v1/auth/logout", &json!({"refresh_token": "nope"}))
        .bearer(access(&owner))
        .send()
        .await;
    assert_eq!(logout.field().as_deref(), Some("refresh_token"));
}

async fn jwks_publishes_the_key_that_signs_access_tokens(app: TestApp) {
    let owner = app.fx_register("a@example.com").await;
    let r = app.get("/v1/auth/.well-known/jwks.json").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let jwks = r.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert!(k.get("d").is_none(), "no private key material");
    }
    let header = access(&owner).split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(keys.iter().any(|k| k["kid"] == header["kid"]));

    // Access tokens expire after 15 minutes (plus the verifier's leeway).
    app.advance(Duration::minutes(16));
    app.get("/v1/auth/me")
        .bearer(access(&owner))
        .send()
        .await
        .assert_unauthorized();

    let health = app.get("/v1/auth/health").send().await;
    assert_eq!(health.status, StatusCode::OK);
    let doc = app.get("/v1/auth/openapi.json").send().await.json();
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/me",
        "/v1/auth/invites",
        "/v1/auth/invites/{id}",
        "/v1/auth/accept-invite",
        "/v1/auth/accounts",
        "/v1/auth/accounts/{id}",
        "/v1/auth/audit",
        "/v1/auth/.well-known/jwks.json",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }
}

#[tokio::test]
async fn production_password_parameters_are_owasps() {
    let params = constellation_auth::PasswordHasherParams::default();
    assert_eq!(params, constellation_auth::PasswordHasherParams::OWASP);
    assert_eq!(
        (params.m_cost_kib, params.t_cost, params.p_cost),
        (19_456, 2, 1)
    );
    // The whole flow on production parameters.
    let app = common::spawn_app_with(params).await;
    app.fx_register("a@example.com").await;
    assert_eq!(
        app.login("a@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    // That an unknown email costs the same hash is checked without timing, in
    // password.rs (`unknown_accounts_verify_against_a_hash_with_the_same_parameters`).
    app.login("nobody@example.com", PASSWORD)
        .await
        .assert_unauthorized();
}
