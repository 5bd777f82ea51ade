//! Walking a whole table in tests: every stored item through a service's
//! `check_item` (what `constellation import` runs on each item of an export).

use constellation_platform::Table;
use constellation_platform::table::Item;

/// The bookkeeping kinds no export carries (outbox and inbox records,
/// `Idempotency-Key` records): skipped by [`check_every_item`] callers that
/// pass it.
pub const NEVER_EXPORTED: &[&str] = &["OUTBOX#", "INBOX#", "IDEM#"];

/// Scans all of `table` and requires `check` to accept every item whose
/// partition key starts with none of `skip` (a refusal panics naming the
/// item and the reason). Returns, sorted, one `<kind>:<status>` per item
/// checked: the partition key up to its first `#`, and the item's `status`
/// (or `state`) attribute, `-` without one.
pub async fn check_every_item(
    table: &dyn Table,
    skip: &[&str],
    check: fn(&Item) -> Result<(), String>,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = match table.scan(100, cursor).await {
            Ok(page) => page,
            Err(e) => panic!("scanning the table: {e}"),
        };
        for item in &page.items {
            let pk = item.key.pk.as_str();
            if skip.iter().any(|p| pk.starts_with(p)) {
                continue;
            }
            if let Err(e) = check(item) {
                panic!("{pk} / {}: {e}", item.key.sk);
            }
            let kind = pk.split('#').next().unwrap_or(pk);
            let status = item.str("status").or_else(|| item.str("state"));
            seen.push(format!("{kind}:{}", status.unwrap_or("-")));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    seen.sort();
    seen
}
