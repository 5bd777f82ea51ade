//! Deliveries and inboxes.
//!
//! Everything a person is told goes through a **delivery**: a record of
//! the message and its audience, created in the same commit as its cause
//! (an announcement published, an event consumed, a reminder due) together
//! with a `comms.deliver` event on comms' own queue. The worker fans a
//! delivery out one page of recipients at a time: one transaction writes
//! the page's notifications, their accounts' unread counts, the delivery's
//! new position, and the event for the next page (and one `comms.email`
//! event per recipient who wants mail). A worker that dies midway leaves
//! the delivery at its last committed page, and the redelivered event
//! resumes there; a page is never applied twice because the delivery's
//! version is part of its transaction. An announcement's pages also check
//! the announcement's version, so a retraction stops a fan-out in flight.

use constellation_core::OrgId;
use constellation_core::auth::Role;
use constellation_platform::table::{
    Condition, Index, IndexKey, Item, ItemKey, Query, SortKey, Write,
};
use constellation_platform::{DomainEvent, StoreError};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{CommsError, CommsStore, Entry, dir_key, entry_of, parse_time, rfc3339};
use crate::domain::{Audience, Category, Message};

/// Recipients per fan-out page: a page writes at most three records per
/// recipient (notification, unread count, mail event) plus three, within
/// DynamoDB's 100 writes per transaction.
pub const PAGE: usize = 25;
/// Unread notifications marked read (or retracted) per transaction.
const READ_BATCH: usize = 40;
/// The most rounds one read-all request runs (`READ_BATCH` each).
const READ_ALL_ROUNDS: usize = 100;

/// Event types comms sends itself.
pub mod events {
    /// Fan out the next page of a delivery (`{"delivery_id"}`).
    pub const DELIVER: &str = "comms.deliver";
    /// Send one delivery's mail to one account (`{"delivery_id","account_id"}`).
    pub const EMAIL: &str = "comms.email";
    /// Remove a retracted announcement's unread notifications (`{"announcement_id","cursor"}`).
    pub const RETRACT: &str = "comms.retract";
    /// Write one organization's daily report (`{"date"}`).
    pub const REPORT: &str = "comms.report";
}

/// One delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its id (also every notification's id).
    pub id: String,
    /// What it says.
    pub message: Message,
    /// Who it goes to.
    pub audience: Audience,
    /// Whether it lands in inboxes (a report is mail only).
    pub inbox: bool,
    /// The announcement it publishes, if any.
    pub announcement: Option<String>,
    /// When it was created (every notification's `created_at`).
    pub created_at: OffsetDateTime,
    after: Option<String>,
    done: bool,
    version: u64,
}

/// One notification as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Its id.
    pub id: String,
    /// The event type that caused it.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// The API path of what it is about.
    pub link: Option<String>,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When its owner read it.
    pub read_at: Option<OffsetDateTime>,
}

/// What a fan-out step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A page was written; more follow (an event for the next is committed).
    More,
    /// Nothing is left.
    Done,
}

pub(crate) fn delivery_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("DELIV#{org}"), id)
}

fn note_key(org: &OrgId, account: &str, id: &str) -> ItemKey {
    ItemKey::new(format!("NOTE#{org}#{account}"), id)
}

fn unread_index(org: &OrgId, account: &str) -> String {
    format!("UNREAD#{org}#{account}")
}

fn source_index(org: &OrgId, delivery: &str) -> String {
    format!("SRC#{org}#{delivery}")
}

fn count_key(org: &OrgId, account: &str) -> ItemKey {
    ItemKey::new(format!("UNREADN#{org}"), account)
}

pub(crate) fn audience_value(a: &Audience) -> Value {
    match a {
        Audience::All => json!({ "all": true }),
        Audience::Roles { roles } => {
            json!({ "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>() })
        }
        Audience::Accounts { accounts } => json!({ "accounts": accounts }),
    }
}

pub(crate) fn audience_from_value(v: &Value) -> Option<Audience> {
    if v.get("all").is_some() {
        return Some(Audience::All);
    }
    if let Some(roles) = v.get("roles").and_then(Value::as_array) {
        let roles = roles
            .iter()
            .map(|r| r.as_str().and_then(|r| Role::parse("roles", r).ok()))
            .collect::<Option<Vec<_>>>()?;
        return Some(Audience::Roles { roles });
    }
    let accounts = v.get("accounts")?.as_array()?;
    Some(Audience::Accounts {
        accounts: accounts
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?,
    })
}

pub(super) fn delivery_of(item: &Item) -> Result<Delivery, StoreError> {
    let bad = |what: &str| StoreError::Backend(anyhow::anyhow!("delivery {}: {what}", item.key.sk));
    let category = item
        .str("category")
        .and_then(Category::parse)
        .ok_or_else(|| bad("category"))?;
    Ok(Delivery {
        id: item.key.sk.clone(),
        message: Message {
            kind: item.str("kind").ok_or_else(|| bad("kind"))?.to_owned(),
            title: item.str("title").ok_or_else(|| bad("title"))?.to_owned(),
            body: item.str("body").ok_or_else(|| bad("body"))?.to_owned(),
            link: item.str("link").map(str::to_owned),
            category,
        },
        audience: item
            .attrs
            .get("audience")
            .and_then(audience_from_value)
            .ok_or_else(|| bad("audience"))?,
        inbox: item
            .attrs
            .get("inbox")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        announcement: item.str("announcement").map(str::to_owned),
        created_at: parse_time(item, "created_at")?,
        after: item.str("after").map(str::to_owned),
        done: item
            .attrs
            .get("done")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        version: item.version,
    })
}

pub(super) fn delivery_item(org: &OrgId, d: &Delivery) -> Item {
    let mut item = Item::new(delivery_key(org, &d.id))
        .with("kind", d.message.kind.as_str())
        .with("title", d.message.title.as_str())
        .with("body", d.message.body.as_str())
        .with("category", d.message.category.as_str())
        .with("audience", audience_value(&d.audience))
        .with("inbox", d.inbox)
        .with("created_at", rfc3339(d.created_at))
        .with("done", d.done);
    if let Some(link) = &d.message.link {
        item = item.with("link", link.as_str());
    }
    if let Some(a) = &d.announcement {
        item = item.with("announcement", a.as_str());
    }
    if let Some(after) = &d.after {
        item = item.with("after", after.as_str());
    }
    item.version = d.version;
    // A finished delivery is kept a while (to answer duplicates), then goes.
    if d.done {
        item.expires_at = Some(d.created_at + time::Duration::days(30));
    }
    item
}

pub(super) fn notification_of(item: &Item) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: item.key.sk.clone(),
        kind: item.str("kind").unwrap_or_default().to_owned(),
        title: item.str("title").unwrap_or_default().to_owned(),
        body: item.str("body").unwrap_or_default().to_owned(),
        link: item.str("link").map(str::to_owned),
        created_at: parse_time(item, "created_at")?,
        read_at: item.str("read_at").and_then(|s| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        }),
    })
}

fn lost(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ConditionFailed { .. } | StoreError::Conflict(_)
    )
}

impl CommsStore {
    pub(crate) fn event(
        &self,
        event_type: &str,
        org: &OrgId,
        data: Value,
    ) -> Result<DomainEvent, StoreError> {
        DomainEvent::new(event_type, org, self.now(), data)
            .map_err(|e| StoreError::Invalid(e.to_string()))
    }

    /// The writes and event that start a delivery of `message` to
    /// `audience`: put them in the commit of whatever causes it.
    pub(crate) fn start_delivery(
        &self,
        org: &OrgId,
        id: &str,
        message: Message,
        audience: Audience,
        inbox: bool,
        announcement: Option<String>,
    ) -> Result<(Write, DomainEvent), StoreError> {
        let d = Delivery {
            id: id.to_owned(),
            message,
            audience,
            inbox,
            announcement,
            created_at: self.now(),
            after: None,
            done: false,
            version: 1,
        };
        Ok((
            Write::Put {
                item: delivery_item(org, &d),
                condition: Condition::NotExists,
            },
            self.event(events::DELIVER, org, json!({ "delivery_id": id }))?,
        ))
    }

    /// A delivery.
    pub async fn delivery(&self, org: &OrgId, id: &str) -> Result<Option<Delivery>, CommsError> {
        match self.table.get(&delivery_key(org, id)).await? {
            Some(item) => Ok(Some(delivery_of(&item)?)),
            None => Ok(None),
        }
    }

    /// The next page of recipients after `after`: enabled accounts the
    /// audience addresses, the new position, and whether more may follow.
    async fn recipients(
        &self,
        org: &OrgId,
        audience: &Audience,
        after: Option<&str>,
    ) -> Result<(Vec<Entry>, Option<String>, bool), CommsError> {
        if let Audience::Accounts { accounts } = audience {
            let from: usize = after.and_then(|a| a.parse().ok()).unwrap_or(0);
            let slice: Vec<&String> = accounts.iter().skip(from).take(PAGE).collect();
            let entries = futures::future::try_join_all(
                slice
                    .iter()
                    .map(|a| async move { self.table.get(&dir_key(org, a)).await }),
            )
            .await?;
            let to = from + slice.len();
            let found = entries
                .iter()
                .flatten()
                .filter_map(entry_of)
                .filter(|e| !e.disabled)
                .collect();
            return Ok((found, Some(to.to_string()), to < accounts.len()));
        }
        let mut query = Query::partition(format!("DIR#{org}"));
        query.limit = PAGE as u32;
        if let Some(after) = after {
            // Account ids are fixed-width hex: `!` sorts below every digit,
            // so this starts right after `after`.
            query.sort = SortKey::AtLeast(format!("{after}!"));
        }
        let page = self.table.query(&query).await?;
        let last = page.items.last().map(|i| i.key.sk.clone());
        let more = page.items.len() == PAGE;
        let found = page
            .items
            .iter()
            .filter_map(entry_of)
            .filter(|e| !e.disabled && audience.addresses(&e.account, e.role))
            .collect();
        Ok((found, last.or_else(|| after.map(str::to_owned)), more))
    }

    /// Writes the next page of delivery `id` (see the module docs).
    #[tracing::instrument(skip(self), fields(%org))]
    pub async fn deliver_page(&self, org: &OrgId, id: &str) -> Result<Progress, CommsError> {
        for attempt in 0..constellation_platform::retry::MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(constellation_platform::retry::backoff(attempt)).await;
            }
            let Some(mut d) = self.delivery(org, id).await? else {
                return Ok(Progress::Done);
            };
            if d.done {
                return Ok(Progress::Done);
            }
            let mut writes = Vec::new();
            let mut events = Vec::new();
            let current = d.version;
            if let Some(ann) = &d.announcement {
                match self.announcement_item(org, ann).await? {
                    Some(a) if a.str("status") == Some("published") => writes.push(Write::Check {
                        key: a.key.clone(),
                        condition: Condition::VersionEquals(a.version),
                    }),
                    // Retracted (or gone): stop here.
                    _ => {
                        d.done = true;
                        d.version += 1;
                        match self
                            .table
                            .put(&delivery_item(org, &d), Condition::VersionEquals(current))
                            .await
                        {
                            Ok(()) => return Ok(Progress::Done),
                            Err(e) if lost(&e) => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            let (recipients, after, more) = self
                .recipients(org, &d.audience, d.after.as_deref())
                .await?;
            // The unread counts and preferences of the page, read at once.
            let inbox = d.inbox;
            let lookups = futures::future::try_join_all(recipients.iter().map(|r| async move {
                let count = if inbox {
                    Some(self.count_write(org, &r.account, 1).await?)
                } else {
                    None
                };
                let prefs = self.preferences(org, &r.account).await?;
                Ok::<_, CommsError>((count, prefs))
            }))
            .await?;
            for (r, (count, prefs)) in recipients.iter().zip(lookups) {
                if let Some(count) = count {
                    let mut note = Item::new(note_key(org, &r.account, &d.id))
                        .with("kind", d.message.kind.as_str())
                        .with("title", d.message.title.as_str())
                        .with("body", d.message.body.as_str())
                        .with("created_at", rfc3339(d.created_at));
                    if let Some(link) = &d.message.link {
                        note = note.with("link", link.as_str());
                    }
                    note.gsi1 = Some(IndexKey::new(unread_index(org, &r.account), &d.id));
                    note.gsi2 = Some(IndexKey::new(source_index(org, &d.id), &r.account));
                    writes.push(Write::Put {
                        item: note,
                        condition: Condition::NotExists,
                    });
                    writes.push(count);
                }
                if prefs.wants(d.message.category) {
                    events.push(self.event(
                        events::EMAIL,
                        org,
                        json!({ "delivery_id": d.id, "account_id": r.account }),
                    )?);
                }
            }
            d.after = after;
            d.done = !more;
            d.version += 1;
            writes.push(Write::Put {
                item: delivery_item(org, &d),
                condition: Condition::VersionEquals(current),
            });
            if more {
                events.push(self.event(events::DELIVER, org, json!({ "delivery_id": d.id }))?);
            }
            match self.outbox.commit(writes, &events).await {
                Ok(()) => {
                    return Ok(if more { Progress::More } else { Progress::Done });
                }
                Err(e) if lost(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommsError::Contention("delivery"))
    }

    /// The write that moves `account`'s unread count by `delta` (never below 0).
    async fn count_write(
        &self,
        org: &OrgId,
        account: &str,
        delta: i64,
    ) -> Result<Write, StoreError> {
        let key = count_key(org, account);
        let current = self.table.get(&key).await?;
        let n = current.as_ref().and_then(|c| c.int("n")).unwrap_or(0);
        let mut item = Item::new(key).with("n", (n + delta).max(0));
        let condition = match &current {
            Some(c) => {
                item.version = c.version + 1;
                Condition::VersionEquals(c.version)
            }
            None => Condition::NotExists,
        };
        Ok(Write::Put { item, condition })
    }

    /// How many notifications of `account` are unread.
    pub async fn unread_count(&self, org: &OrgId, account: &str) -> Result<u64, CommsError> {
        Ok(self
            .table
            .get(&count_key(org, account))
            .await?
            .and_then(|c| c.int("n"))
            .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    /// One page of `account`'s notifications, newest first.
    pub async fn notifications(
        &self,
        org: &OrgId,
        account: &str,
        unread_only: bool,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Notification>, Option<String>), CommsError> {
        let query = Query {
            index: unread_only.then_some(Index::Gsi1),
            pk: if unread_only {
                unread_index(org, account)
            } else {
                format!("NOTE#{org}#{account}")
            },
            sort: SortKey::All,
            descending: true,
            limit,
            cursor,
        };
        let page = self.table.query(&query).await?;
        let items = page
            .items
            .iter()
            .map(notification_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, page.next_cursor))
    }

    /// Marks one notification read (reading a read one changes nothing).
    pub async fn mark_read(
        &self,
        org: &OrgId,
        account: &str,
        id: &str,
    ) -> Result<Notification, CommsError> {
        let key = note_key(org, account, id);
        for attempt in 0..constellation_platform::retry::MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(constellation_platform::retry::backoff(attempt)).await;
            }
            let Some(item) = self.table.get(&key).await? else {
                return Err(CommsError::NotFound("notification"));
            };
            let note = notification_of(&item)?;
            if note.read_at.is_some() {
                return Ok(note);
            }
            let now = self.now();
            let writes = vec![
                self.read_write(&item, now),
                self.count_write(org, account, -1).await?,
            ];
            match self.table.transact(&writes).await {
                Ok(()) => {
                    return Ok(Notification {
                        read_at: Some(now),
                        ..note
                    });
                }
                Err(e) if lost(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommsError::Contention("notification"))
    }

    fn read_write(&self, item: &Item, now: OffsetDateTime) -> Write {
        let mut read = item.clone().with("read_at", rfc3339(now));
        read.gsi1 = None;
        read.version = item.version + 1;
        Write::Put {
            item: read,
            condition: Condition::VersionEquals(item.version),
        }
    }

    /// Marks every unread notification of `account` read; returns how many.
    pub async fn mark_all_read(&self, org: &OrgId, account: &str) -> Result<u64, CommsError> {
        let mut marked = 0_u64;
        let mut conflicts = 0;
        for _ in 0..READ_ALL_ROUNDS {
            let page = self
                .table
                .query(&Query {
                    index: Some(Index::Gsi1),
                    pk: unread_index(org, account),
                    sort: SortKey::All,
                    descending: false,
                    limit: READ_BATCH as u32,
                    cursor: None,
                })
                .await?;
            if page.items.is_empty() {
                break;
            }
            let now = self.now();
            let mut writes: Vec<Write> =
                page.items.iter().map(|i| self.read_write(i, now)).collect();
            let n = writes.len() as i64;
            writes.push(self.count_write(org, account, -n).await?);
            match self.table.transact(&writes).await {
                Ok(()) => marked += n as u64,
                Err(e) if lost(&e) && conflicts < constellation_platform::retry::MAX_ATTEMPTS => {
                    conflicts += 1;
                    tokio::time::sleep(constellation_platform::retry::backoff(conflicts)).await;
                }
                Err(e) if lost(&e) => return Err(CommsError::Contention("inbox")),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(marked)
    }

    /// Removes one page of the unread notifications of retracted
    /// announcement `id` (read ones stay: their owners saw them); commits
    /// the event for the next page when there is one.
    pub async fn retract_page(
        &self,
        org: &OrgId,
        id: &str,
        cursor: Option<String>,
    ) -> Result<Progress, CommsError> {
        for attempt in 0..constellation_platform::retry::MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(constellation_platform::retry::backoff(attempt)).await;
            }
            let page = self
                .table
                .query(&Query {
                    index: Some(Index::Gsi2),
                    pk: source_index(org, id),
                    sort: SortKey::All,
                    descending: false,
                    limit: READ_BATCH as u32,
                    cursor: cursor.clone(),
                })
                .await?;
            let mut writes = Vec::new();
            for item in &page.items {
                if item.str("read_at").is_some() {
                    continue;
                }
                let account = item.gsi2.as_ref().map(|k| k.sk.clone()).unwrap_or_default();
                writes.push(Write::Delete {
                    key: item.key.clone(),
                    condition: Condition::VersionEquals(item.version),
                });
                writes.push(self.count_write(org, &account, -1).await?);
            }
            let mut events = Vec::new();
            if let Some(next) = &page.next_cursor {
                events.push(self.event(
                    events::RETRACT,
                    org,
                    json!({ "announcement_id": id, "cursor": next }),
                )?);
            }
            if writes.is_empty() && events.is_empty() {
                return Ok(Progress::Done);
            }
            // Where the cleanup got to (so a page of read notifications
            // alone still commits its next step).
            let mut progress = Item::new(ItemKey::new(format!("RETRACT#{org}"), id))
                .with("cursor", page.next_cursor.clone());
            progress.expires_at = Some(self.now() + time::Duration::days(1));
            writes.push(Write::Put {
                item: progress,
                condition: Condition::None,
            });
            match self.outbox.commit(writes, &events).await {
                Ok(()) => {
                    return Ok(if page.next_cursor.is_some() {
                        Progress::More
                    } else {
                        Progress::Done
                    });
                }
                Err(e) if lost(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommsError::Contention("announcement"))
    }
}
