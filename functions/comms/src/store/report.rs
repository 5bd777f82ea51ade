//! Consumed events: each is applied once (the inbox claim is in its
//! commit) and both counts toward its organization's day and starts the
//! delivery of its notification. The daily report reads those counters:
//! an organization with activity on a day is in `gsi1` under
//! `ACTIVE#<date>`, so the report job finds the organizations to report
//! without a scan.

use std::collections::BTreeMap;

use constellation_core::OrgId;
use constellation_core::auth::{Principal, Role};
use constellation_core::money::{Currency, Money, format_minor};
use constellation_platform::inbox::Inbox;
use constellation_platform::table::{
    Condition, Index, IndexKey, Item, ItemKey, Query, SortKey, Write,
};
use constellation_platform::{DomainEvent, StoreError};
use serde_json::{Map, Value, json};
use time::{Date, OffsetDateTime};

use super::announce::DOWNLOAD_LIFETIME;
use super::deliver::events;
use super::{CommsError, CommsStore, parse_time, rfc3339};
use crate::domain::{Audience, Category, Message, date_string, event_message};

/// The counters a day keeps, in report order.
pub const COUNTERS: [&str; 7] = [
    "expenses_submitted",
    "expenses_approved",
    "expenses_reimbursed",
    "orders_confirmed",
    "orders_rejected",
    "orders_shipped",
    "products_low",
];
/// Reports queued per commit (one event each, with one progress write:
/// within DynamoDB's 100 writes per transaction).
const REPORTS_PER_COMMIT: u32 = 90;
/// The most low products a day lists by SKU.
pub(super) const MAX_LOW_LISTED: usize = 100;

/// One day's counters of one organization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayStats {
    /// Count per counter.
    pub counts: BTreeMap<String, i64>,
    /// Total in minor units per counter and currency.
    pub totals: BTreeMap<String, BTreeMap<String, i128>>,
    /// SKUs that went low.
    pub low: Vec<String>,
}

/// A written report.
#[derive(Debug, Clone)]
pub struct Report {
    /// The day it covers.
    pub date: String,
    /// Its counters.
    pub stats: DayStats,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// A presigned URL of its CSV.
    pub download_url: Option<String>,
    /// When the URL stops working.
    pub expires_at: Option<OffsetDateTime>,
}

fn stats_key(org: &OrgId, date: &str) -> ItemKey {
    ItemKey::new(format!("STATS#{org}"), date)
}

fn report_key(org: &OrgId, date: &str) -> ItemKey {
    ItemKey::new(format!("REPORT#{org}"), date)
}

/// The object key of a report's CSV.
pub fn report_object(org: &OrgId, date: &str) -> String {
    format!("reports/{org}/{date}.csv")
}

pub(super) fn stats_of(item: &Item) -> DayStats {
    let mut s = DayStats::default();
    if let Some(Value::Object(c)) = item.attrs.get("counts") {
        for (k, v) in c {
            s.counts.insert(k.clone(), v.as_i64().unwrap_or(0));
        }
    }
    if let Some(Value::Object(t)) = item.attrs.get("totals") {
        for (k, per) in t {
            let entry = s.totals.entry(k.clone()).or_default();
            if let Value::Object(per) = per {
                for (cur, minor) in per {
                    let n = minor.as_str().and_then(|m| m.parse().ok()).unwrap_or(0);
                    entry.insert(cur.clone(), n);
                }
            }
        }
    }
    if let Some(Value::Array(low)) = item.attrs.get("low") {
        s.low = low
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
    }
    s
}

fn stats_attrs(s: &DayStats) -> (Value, Value, Value) {
    let counts: Map<String, Value> = s
        .counts
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let totals: Map<String, Value> = s
        .totals
        .iter()
        .map(|(k, per)| {
            let per: Map<String, Value> = per
                .iter()
                .map(|(c, m)| (c.clone(), Value::String(m.to_string())))
                .collect();
            (k.clone(), Value::Object(per))
        })
        .collect();
    (Value::Object(counts), Value::Object(totals), json!(s.low))
}

/// The counter an event adds to, and the money it adds.
fn counted(event: &DomainEvent) -> Option<(&'static str, Option<Money>)> {
    let money = |amount: Option<&Value>, currency: Option<&Value>| -> Option<Money> {
        let currency = Currency::parse("currency", currency?.as_str()?).ok()?;
        Money::parse("amount", amount?.as_str()?, currency).ok()
    };
    let d = &event.data;
    let expense = || money(d.get("amount"), d.get("currency"));
    let order = || {
        d.get("total")
            .and_then(|t| money(t.get("amount"), t.get("currency")))
    };
    Some(match event.event_type.as_str() {
        "expense.submitted" => ("expenses_submitted", expense()),
        "expense.approved" => ("expenses_approved", expense()),
        "expense.reimbursed" => ("expenses_reimbursed", expense()),
        "order.confirmed" => ("orders_confirmed", order()),
        "order.rejected" => ("orders_rejected", None),
        "order.shipped" => ("orders_shipped", order()),
        "inventory.low" => ("products_low", None),
        _ => return None,
    })
}

/// The CSV of a day: `metric,currency,count,total`.
pub fn report_csv(date: &str, s: &DayStats) -> String {
    let mut out = String::new();
    constellation_core::csv::write_row(&mut out, &["date", "metric", "currency", "count", "total"]);
    for name in COUNTERS {
        let count = s.counts.get(name).copied().unwrap_or(0).to_string();
        match s.totals.get(name).filter(|t| !t.is_empty()) {
            Some(per) => {
                for (cur, minor) in per {
                    let total = Currency::parse("currency", cur)
                        .map(|c| format_minor(*minor, c))
                        .unwrap_or_default();
                    constellation_core::csv::write_row(
                        &mut out,
                        &[date, name, cur, &count, &total],
                    );
                }
            }
            None => constellation_core::csv::write_row(&mut out, &[date, name, "", &count, ""]),
        }
    }
    for sku in &s.low {
        constellation_core::csv::write_row(&mut out, &[date, "low_product", "", sku, ""]);
    }
    out
}

/// The report's text (mail body).
pub fn report_text(date: &str, s: &DayStats) -> String {
    let mut out = format!("Activity on {date}:\n");
    for name in COUNTERS {
        let count = s.counts.get(name).copied().unwrap_or(0);
        let totals: Vec<String> = s
            .totals
            .get(name)
            .map(|per| {
                per.iter()
                    .filter_map(|(cur, minor)| {
                        Currency::parse("currency", cur)
                            .ok()
                            .map(|c| format!("{} {cur}", format_minor(*minor, c)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let label = name.replace('_', " ");
        if totals.is_empty() {
            out.push_str(&format!("- {label}: {count}\n"));
        } else {
            out.push_str(&format!("- {label}: {count} ({})\n", totals.join(", ")));
        }
    }
    if !s.low.is_empty() {
        out.push_str(&format!("Low on stock: {}\n", s.low.join(", ")));
    }
    out
}

fn lost(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ConditionFailed { .. } | StoreError::Conflict(_)
    )
}

impl CommsStore {
    /// The write adding `event` to its organization's day, if it counts.
    async fn stats_write(
        &self,
        org: &OrgId,
        event: &DomainEvent,
    ) -> Result<Option<Write>, StoreError> {
        let Some((counter, money)) = counted(event) else {
            return Ok(None);
        };
        let date = date_string(event.time.date());
        let key = stats_key(org, &date);
        let current = self.table.get(&key).await?;
        let mut s = current.as_ref().map(stats_of).unwrap_or_default();
        *s.counts.entry(counter.to_owned()).or_default() += 1;
        if let Some(m) = money {
            *s.totals
                .entry(counter.to_owned())
                .or_default()
                .entry(m.currency().code().to_owned())
                .or_default() += i128::from(m.minor());
        }
        if counter == "products_low"
            && s.low.len() < MAX_LOW_LISTED
            && let Some(sku) = event.data.get("sku").and_then(Value::as_str)
            && !s.low.iter().any(|l| l == sku)
        {
            s.low.push(sku.to_owned());
        }
        let (counts, totals, low) = stats_attrs(&s);
        let mut item = Item::new(key)
            .with("counts", counts)
            .with("totals", totals)
            .with("low", low);
        item.gsi1 = Some(IndexKey::new(format!("ACTIVE#{date}"), org.as_str()));
        item.expires_at = Some(event.time + time::Duration::days(400));
        let condition = match &current {
            Some(c) => {
                item.version = c.version + 1;
                Condition::VersionEquals(c.version)
            }
            None => Condition::NotExists,
        };
        Ok(Some(Write::Put { item, condition }))
    }

    /// Applies another service's event once: counts it toward the day and
    /// starts its notification's delivery. `false` for a duplicate.
    #[tracing::instrument(skip(self, event), fields(%org, id = %event.id, kind = %event.event_type))]
    pub async fn apply_event(&self, org: &OrgId, event: &DomainEvent) -> Result<bool, CommsError> {
        let notice = event_message(&event.event_type, &event.data).filter(|(_, a)| match a {
            Audience::Accounts { accounts } => {
                accounts.iter().all(|a| !a.is_empty() && a.len() <= 64)
            }
            _ => true,
        });
        for attempt in 0..constellation_platform::retry::MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(constellation_platform::retry::backoff(attempt)).await;
            }
            let mut writes = vec![self.inbox.claim(&event.id)];
            let mut events = Vec::new();
            if let Some(w) = self.stats_write(org, event).await? {
                writes.push(w);
            }
            if let Some((message, audience)) = notice.clone() {
                let (w, e) =
                    self.start_delivery(org, &self.new_id(), message, audience, true, None)?;
                writes.push(w);
                events.push(e);
            }
            match self.outbox.commit(writes, &events).await {
                Ok(()) => return Ok(true),
                Err(e) if Inbox::is_duplicate(&e, 0) => return Ok(false),
                Err(e) if lost(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommsError::Contention("day counters"))
    }

    /// One day's counters of `org`.
    pub async fn day_stats(&self, org: &OrgId, date: Date) -> Result<DayStats, CommsError> {
        Ok(self
            .table
            .get(&stats_key(org, &date_string(date)))
            .await?
            .as_ref()
            .map(stats_of)
            .unwrap_or_default())
    }

    /// Queues the report of `date` for every organization with activity
    /// that day (one `comms.report` step each, committed with the run's
    /// progress): the worker writes them, so one run's work is bounded
    /// however many organizations there are. Returns how many were queued.
    pub async fn queue_reports(&self, date: Date) -> Result<usize, CommsError> {
        self.reports_of(date, false).await
    }

    /// Writes the report of `date` for every organization with activity
    /// that day, here and now (a run by hand: `constellation run
    /// comms-daily-report --date`, which has no time limit and no worker to
    /// wait for). Returns how many were written.
    pub async fn write_reports_now(&self, date: Date) -> Result<usize, CommsError> {
        self.reports_of(date, true).await
    }

    async fn reports_of(&self, date: Date, now: bool) -> Result<usize, CommsError> {
        let day = date_string(date);
        let mut cursor = None;
        let mut queued = 0;
        loop {
            let page = self
                .table
                .query(&Query {
                    index: Some(Index::Gsi1),
                    pk: format!("ACTIVE#{day}"),
                    sort: SortKey::All,
                    descending: false,
                    limit: REPORTS_PER_COMMIT,
                    cursor,
                })
                .await?;
            let mut events = Vec::with_capacity(page.items.len());
            for item in &page.items {
                let Some(org) = item
                    .key
                    .pk
                    .strip_prefix("STATS#")
                    .and_then(|o| OrgId::parse(o).ok())
                else {
                    continue;
                };
                if now {
                    self.write_report(&org, &day, &stats_of(item)).await?;
                    queued += 1;
                } else {
                    events.push(self.event(events::REPORT, &org, json!({ "date": day }))?);
                }
            }
            if !events.is_empty() {
                let mut progress = Item::new(ItemKey::new("REPORTRUN", day.as_str()))
                    .with("queued", queued + events.len())
                    .with("at", rfc3339(self.now()));
                progress.expires_at = Some(self.now() + time::Duration::days(30));
                let writes = vec![Write::Put {
                    item: progress,
                    condition: Condition::None,
                }];
                self.outbox.commit(writes, &events).await?;
                queued += events.len();
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                return Ok(queued);
            }
        }
    }

    /// Writes `org`'s report of `day` (`YYYY-MM-DD`) from its counters (a
    /// `comms.report` step). The first time, it is mailed to the
    /// organization's admins; again, it is rewritten and mails nobody twice.
    pub async fn write_day_report(&self, org: &OrgId, day: &str) -> Result<(), CommsError> {
        let date = crate::domain::date("date", day)?;
        let stats = self.day_stats(org, date).await?;
        self.write_report(org, &date_string(date), &stats).await
    }

    async fn write_report(&self, org: &OrgId, day: &str, s: &DayStats) -> Result<(), CommsError> {
        let object = report_object(org, day);
        self.blobs
            .put(
                &object,
                bytes::Bytes::from(report_csv(day, s)),
                "text/csv; charset=utf-8",
            )
            .await?;
        let (counts, totals, low) = stats_attrs(s);
        let mut item = Item::new(report_key(org, day))
            .with("object", object)
            .with("counts", counts)
            .with("totals", totals)
            .with("low", low)
            .with("created_at", rfc3339(self.now()));
        item.expires_at = Some(self.now() + time::Duration::days(400));
        let (delivery, event) = self.start_delivery(
            org,
            &self.new_id(),
            Message {
                kind: "report".to_owned(),
                title: format!("Daily report for {day}"),
                body: report_text(day, s),
                link: Some("/v1/comms/reports".to_owned()),
                category: Category::Reports,
            },
            Audience::Roles {
                roles: vec![Role::Admin],
            },
            false,
            None,
        )?;
        let first = vec![
            Write::Put {
                item: item.clone(),
                condition: Condition::NotExists,
            },
            delivery,
        ];
        match self.outbox.commit(first, &[event]).await {
            Ok(()) => Ok(()),
            // Written before: refresh it, mail nobody again.
            Err(StoreError::ConditionFailed {
                index: Some(0) | None,
            }) => {
                self.table.upsert(&item).await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The reports of `p`'s organization from `from` to `to` (admin+).
    pub async fn reports(
        &self,
        p: &Principal,
        from: Option<Date>,
        to: Option<Date>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Report>, Option<String>), CommsError> {
        if !p.role.allows(Role::Admin) {
            return Err(CommsError::Forbidden("only admins may read reports"));
        }
        let from = from.map_or_else(|| "0000-00-00".to_owned(), date_string);
        let to = to.map_or_else(|| "9999-99-99".to_owned(), date_string);
        let page = self
            .table
            .query(&Query {
                index: None,
                pk: format!("REPORT#{}", p.org),
                sort: SortKey::Between { from, to },
                descending: true,
                limit,
                cursor,
            })
            .await?;
        let mut out = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let (download_url, expires_at) = match item.str("object") {
                Some(key) => {
                    let url = self.blobs.presign_get(key, DOWNLOAD_LIFETIME, None).await?;
                    (Some(url.url), Some(url.expires_at))
                }
                None => (None, None),
            };
            out.push(Report {
                date: item.key.sk.clone(),
                stats: stats_of(item),
                created_at: parse_time(item, "created_at")?,
                download_url,
                expires_at,
            });
        }
        Ok((out, page.next_cursor))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_lists_every_counter_with_exact_totals() {
        let mut s = DayStats::default();
        s.counts.insert("expenses_submitted".into(), 2);
        s.totals
            .entry("expenses_submitted".into())
            .or_default()
            .insert("EUR".into(), 1005);
        s.low.push("=SKU".into());
        let csv = report_csv("2026-12-01", &s);
        assert!(
            csv.contains("2026-12-01,expenses_submitted,EUR,2,10.05"),
            "{csv}"
        );
        assert!(csv.contains("2026-12-01,orders_shipped,,0,"), "{csv}");
        // Formula-safe: a SKU starting with = is neutralised by core's CSV.
        assert!(!csv.contains(",=SKU"), "{csv}");
        let text = report_text("2026-12-01", &s);
        assert!(text.contains("expenses submitted: 2 (10.05 EUR)"), "{text}");
    }
}
