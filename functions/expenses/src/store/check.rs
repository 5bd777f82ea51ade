//! Whether a stored item is an expense this build can serve.

use super::*;

/// Whether `item` is an expenses record this build can serve (the check an
/// import of an export runs on each record before writing it): an
/// `EXP#<org>` / `<id>` expense as the store writes it, every field by
/// the rules the API applies (texts as `create` trims and bounds them, an
/// amount valid for its currency, a known status, receipts and history as
/// recorded), except those relative to now (old exports hold old dates).
/// The error names the field at fault.
pub fn check_item(item: &Item) -> Result<(), String> {
    use crate::domain::{MAX_CATEGORY_CHARS, MAX_DESCRIPTION_CHARS, MAX_MERCHANT_CHARS, text};
    let Some(org) = item.key.pk.strip_prefix("EXP#") else {
        return Err(format!("`{}` is not an expenses record", item.key.pk));
    };
    let org = OrgId::parse(org).map_err(|e| format!("org: {}", e.reason))?;
    let e = decode(&org, item).map_err(|field| format!("{field}: not as an expense stores it"))?;
    let err = |e: constellation_core::ValidationError| e.to_string();
    account_id("submitter", &e.submitter).map_err(err)?;
    let exact = |field: &'static str, value: &str, min: usize, max: usize| {
        if text(field, value, min, max).map_err(err)? == value {
            Ok(())
        } else {
            Err(format!("{field}: must not begin or end with whitespace"))
        }
    };
    exact("category", &e.details.category, 1, MAX_CATEGORY_CHARS)?;
    exact("merchant", &e.details.merchant, 1, MAX_MERCHANT_CHARS)?;
    exact(
        "description",
        &e.details.description,
        0,
        MAX_DESCRIPTION_CHARS,
    )?;
    if e.updated_at < e.created_at {
        return Err("updated_at: must not be before created_at".to_owned());
    }
    if e.receipts.len() > MAX_RECEIPTS {
        return Err(format!(
            "receipts: an expense holds at most {MAX_RECEIPTS} receipts"
        ));
    }
    for r in &e.receipts {
        MediaId::parse(&r.media_id).map_err(|_| "receipts: a media id as issued".to_owned())?;
        if !["pending", "ready", "rejected", "deleted"].contains(&r.status.as_str()) {
            return Err(format!(
                "receipts: `{}` is not a receipt status (pending, ready, rejected, deleted)",
                r.status
            ));
        }
    }
    if e.history.is_empty() {
        return Err("history: an expense has at least its draft step".to_owned());
    }
    for h in &e.history {
        Status::parse("history", &h.status).map_err(err)?;
        OffsetDateTime::parse(&h.at, &Rfc3339)
            .map_err(|_| "history: `at` must be an RFC 3339 time".to_owned())?;
        account_id("history", &h.by).map_err(err)?;
        if let Some(reason) = &h.reason {
            exact("history", reason, 1, crate::domain::MAX_REASON_CHARS)?;
        }
    }
    if item.gsi1.as_ref().map(|k| (k.pk.as_str(), k.sk.as_str()))
        != Some((by_submitter(&org, &e.submitter).as_str(), e.id.as_str()))
    {
        return Err("submitter: the by-submitter index entry is missing or wrong".to_owned());
    }
    Ok(())
}
