//! Accounts and roles: roles never escalate and the last owner stays,
//! disabled accounts are shut out, another organization's accounts do not
//! exist for us, and the account list pages with a cursor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{AuthApp, AuthFixtures as _, PASSWORD, access, account_id, refresh_token};
use http::StatusCode;
use serde_json::{Value, json};

constellation_testkit::on_both_backends! {
    app = crate::common::spawn;
    roles_never_escalate_and_the_last_owner_stays,
    disabled_accounts_cannot_log_in_or_refresh,
    another_organizations_accounts_answer_404,
    accounts_list_pages_with_a_cursor,
}

async fn roles_never_escalate_and_the_last_owner_stays(app: AuthApp) {
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
        .patch(&path(&member))
        .json(&json!({"role": "owner"}))
        .bearer(access(&admin))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.problem()["type"], "urn:constellation:problem:forbidden");
    let r = app
        .patch(&path(&admin))
        .json(&json!({"role": "owner"}))
        .bearer(access(&admin))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "not even themselves");
    for change in [json!({"role": "member"}), json!({"disabled": true})] {
        let r = app
            .patch(&path(&owner))
            .json(&change)
            .bearer(access(&admin))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{change}");
    }
    // But can manage those at or below their role.
    let r = app
        .patch(&path(&member))
        .json(&json!({"role": "staff"}))
        .bearer(access(&admin))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["role"], "staff");
    assert_eq!(r.json()["disabled"], false);

    // Staff and members manage nothing and invite nobody.
    let r = app
        .post("/v1/auth/invites")
        .json(&json!({"email": "x@example.com", "role": "member"}))
        .bearer(access(&staff))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .patch(&path(&member))
        .json(&json!({"role": "member"}))
        .bearer(access(&staff))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Admins cannot invite above their role.
    let r = app
        .post("/v1/auth/invites")
        .json(&json!({"email": "x@example.com", "role": "owner"}))
        .bearer(access(&admin))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The only owner can be neither demoted nor disabled.
    for change in [json!({"role": "admin"}), json!({"disabled": true})] {
        let r = app
            .patch(&path(&owner))
            .json(&change)
            .bearer(access(&owner))
            .await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{change}");
        assert_eq!(r.problem()["type"], "urn:constellation:problem:conflict");
    }
    // With a second owner, the first may step down; then the second is the last.
    let r = app
        .patch(&path(&admin))
        .json(&json!({"role": "owner"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .patch(&path(&owner))
        .json(&json!({"role": "admin"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let new_owner = app.login("admin@example.com", PASSWORD).await.json();
    assert_eq!(new_owner["account"]["role"], "owner");
    let r = app
        .patch(&path(&admin))
        .json(&json!({"disabled": true}))
        .bearer(access(&new_owner))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // A stale token does not carry a lost role: the stored role rules.
    let r = app
        .patch(&path(&member))
        .json(&json!({"role": "member"}))
        .bearer(access(&owner))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "now an admin, still manages staff"
    );
    let r = app
        .patch(&path(&admin))
        .json(&json!({"role": "member"}))
        .bearer(access(&owner))
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
    let app = common::spawn_local().await;
    // Several rounds, so that both interleavings (and the stale read of the
    // owner count between them) are met.
    for round in 0..16 {
        let a = app.fx_register(&format!("a{round}@example.com")).await;
        let b = app
            .fx_member(access(&a), &format!("b{round}@example.com"), "owner")
            .await;
        let demote = |actor: &Value, target: &Value| {
            app.patch(&format!("/v1/auth/accounts/{}", account_id(target)))
                .json(&json!({"role": "admin"}))
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

async fn disabled_accounts_cannot_log_in_or_refresh(app: AuthApp) {
    let owner = app.fx_register("owner@example.com").await;
    let member = app
        .fx_member(access(&owner), "m@example.com", "member")
        .await;
    let session = app.login("m@example.com", PASSWORD).await.json();
    let path = format!("/v1/auth/accounts/{}", account_id(&member));

    let r = app
        .patch(&path)
        .json(&json!({"disabled": true}))
        .bearer(access(&owner))
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
        .await
        .assert_unauthorized();

    // Re-enabled: a new login works, the old sessions stay dead.
    let r = app
        .patch(&path)
        .json(&json!({"disabled": false}))
        .bearer(access(&owner))
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

async fn another_organizations_accounts_answer_404(app: AuthApp) {
    let a = app.fx_register("a@example.com").await;
    let b = app.fx_register("b@example.com").await;
    let b_member = app.fx_member(access(&b), "bm@example.com", "member").await;
    assert_ne!(a["account"]["org"], b["account"]["org"]);

    for target in [&b, &b_member] {
        let r = app
            .patch(&format!("/v1/auth/accounts/{}", account_id(target)))
            .json(&json!({"role": "member"}))
            .bearer(access(&a))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.problem()["type"], "urn:constellation:problem:not-found");
    }
    let unknown = app
        .patch(&format!("/v1/auth/accounts/{}", "0".repeat(32)))
        .json(&json!({"disabled": true}))
        .bearer(access(&a))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let list = app.get("/v1/auth/accounts").bearer(access(&a)).await;
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

async fn accounts_list_pages_with_a_cursor(app: AuthApp) {
    let owner = app.fx_register("owner@example.com").await;
    for i in 0..4 {
        app.fx_member(access(&owner), &format!("m{i}@example.com"), "member")
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/v1/auth/accounts?limit=2".to_owned();
    loop {
        let page = app.get(&path).bearer(access(&owner)).await;
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
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert_eq!(forged.field().as_deref(), Some("cursor"));
}
