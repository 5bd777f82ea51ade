//! Unit tests of the store's pure parts.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use time::macros::{date, datetime};

use super::*;

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";

fn expense() -> Expense {
    let at = datetime!(2019-05-02 09:30 UTC);
    Expense {
        id: ExpenseId::at(at, 42),
        org: OrgId::parse("acme").unwrap(),
        submitter: ACCOUNT.to_owned(),
        details: Details {
            amount: Money::from_minor(12_345, Currency::parse("c", "EUR").unwrap()).unwrap(),
            category: "travel".to_owned(),
            merchant: "Deutsche Bahn".to_owned(),
            description: String::new(),
            incurred_on: date!(2019 - 04 - 30),
        },
        status: Status::Rejected,
        receipts: vec![Receipt {
            media_id: "ab".repeat(16),
            status: "ready".to_owned(),
        }],
        history: vec![HistoryEntry {
            status: "rejected".to_owned(),
            at: rfc3339(at),
            by: ACCOUNT.to_owned(),
            reason: Some("no receipt".to_owned()),
        }],
        created_at: at,
        updated_at: at,
        etag: new_etag(),
        version: 3,
    }
}

fn fails_on(item: &Item, field: &str) {
    let err = check_item(item).expect_err("a corrupted expense passed");
    assert!(err.starts_with(&format!("{field}:")), "{err}");
}

#[test]
fn an_expense_as_stored_passes() {
    check_item(&to_item(&expense())).unwrap();
}

#[test]
fn a_corrupted_expense_fails_naming_the_field() {
    let item = to_item(&expense());
    fails_on(&item.clone().with("amount", 0), "amount");
    fails_on(&item.clone().with("currency", "EURO"), "currency");
    fails_on(&item.clone().with("merchant", ""), "merchant");
    fails_on(&item.clone().with("category", "x".repeat(65)), "category");
    fails_on(&item.clone().with("description", " padded "), "description");
    fails_on(&item.clone().with("status", "paid"), "status");
    fails_on(&item.clone().with("submitter", "bob"), "submitter");
    fails_on(
        &item.clone().with("incurred_on", "2019-02-30"),
        "incurred_on",
    );
    fails_on(
        &item.clone().with("created_at", "2030-01-01T00:00:00Z"),
        "updated_at",
    );
    let mut bad_id = item.clone();
    bad_id.key.sk = "not-an-id".to_owned();
    fails_on(&bad_id, "id");
    let mut e = expense();
    e.receipts[0].status = "lost".to_owned();
    fails_on(&to_item(&e), "receipts");
    let mut e = expense();
    e.history[0].reason = Some("r".repeat(501));
    fails_on(&to_item(&e), "history");
    let mut no_index = item.clone();
    no_index.gsi1 = None;
    fails_on(&no_index, "submitter");
    let mut bad_org = item.clone();
    bad_org.key.pk = "EXP#Not An Org".to_owned();
    fails_on(&bad_org, "org");
    let mut other = item;
    other.key.pk = "SUB#acme".to_owned();
    assert_eq!(
        check_item(&other).unwrap_err(),
        "`SUB#acme` is not an expenses record"
    );
}
