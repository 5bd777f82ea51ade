//! Announcements and reminders, and the due index the scheduler reads.
//!
//! A scheduled announcement and a pending reminder sit in `gsi1` under the
//! partition `DUE`, sorted by their time, so the scheduler finds what is
//! due with one range query and never scans. Taking an item out of the
//! index (publishing, or moving a repeating reminder to its next time) is
//! a write conditioned on the item's version in the same transaction that
//! starts its delivery: two overlapping scheduler runs both see it due,
//! one commits, the other's condition fails and it moves on, so each is
//! delivered exactly once.
//!
//! An announcement imported from elsewhere ([`CommsStore::import_announcement`])
//! is stored as published and long since delivered: no delivery starts, so
//! nobody is notified or mailed, and it is never in the due index.

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::ids::{is_time_ordered_id, time_ordered_id_at};
use constellation_core::import::Imported;
use constellation_platform::StoreError;
use constellation_platform::blob::attachment;
use constellation_platform::table::{
    Condition, Index, IndexKey, Item, ItemKey, Query, SortKey, Write,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::deliver::{audience_from_value, audience_value, events};
use super::{CommsError, CommsStore, media_key, parse_time, rfc3339, stamp};
use crate::domain::{Audience, Category, Message, Repeat};

/// The due index's partition.
const DUE: &str = "DUE";
/// How long an attachment's download URL works.
pub const DOWNLOAD_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);
/// Due items one scheduler run handles at most (the rest wait a minute).
const DUE_PER_RUN: usize = 1000;
/// Due items handled at once.
const DUE_CONCURRENCY: usize = 10;
/// How long one run starts new pages of due items (the function's timeout
/// is 60 s).
const DUE_BUDGET: std::time::Duration = std::time::Duration::from_secs(40);

/// An announcement's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncementStatus {
    /// Waiting for its `publish_at`.
    Scheduled,
    /// Published (delivered or being delivered).
    Published,
}

impl AnnouncementStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Published => "published",
        }
    }
}

/// A new announcement, validated.
#[derive(Debug, Clone)]
pub struct NewAnnouncement {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Who it addresses (`All` or `Roles`).
    pub audience: Audience,
    /// Ready attachments of the organization (ids).
    pub attachments: Vec<String>,
    /// When to publish; now when absent.
    pub publish_at: Option<OffsetDateTime>,
}

/// An announcement.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// Its id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Who it addresses.
    pub audience: Audience,
    /// Attachment ids.
    pub attachments: Vec<String>,
    /// Scheduled or published.
    pub status: AnnouncementStatus,
    /// When it is (or was) to be published, if it was scheduled.
    pub publish_at: Option<OffsetDateTime>,
    /// When it was published.
    pub published_at: Option<OffsetDateTime>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
}

/// An announcement from elsewhere (a legacy database), as
/// [`CommsStore::import_announcement`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncementImport {
    /// Its id, chosen by the importer ([`import_id`]).
    pub id: String,
    /// The account that wrote it: an account id (32 lowercase hex digits)
    /// of the organization (the importer makes sure it exists).
    pub author: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Who it addressed: `All` (the usual) or `Roles`, as the API takes.
    pub audience: Audience,
    /// When it was published.
    pub published_at: OffsetDateTime,
    /// When it was written (at or before `published_at`).
    pub created_at: OffsetDateTime,
}

/// The id of an announcement imported from elsewhere: its real creation
/// time's milliseconds, then `seed` (derived by the importer from the
/// legacy id), so a re-run makes the same id and imported announcements
/// list among the others by when they were really written.
pub fn import_id(created_at: OffsetDateTime, seed: u128) -> String {
    time_ordered_id_at(created_at, seed)
}

/// An attachment as a reader gets it.
#[derive(Debug, Clone)]
pub struct AttachmentLink {
    /// The media id.
    pub id: String,
    /// Its checked type.
    pub content_type: Option<String>,
    /// The name it downloads under.
    pub filename: Option<String>,
    /// A presigned download URL, while the media exists.
    pub download_url: Option<String>,
    /// When the URL stops working.
    pub expires_at: Option<OffsetDateTime>,
}

/// A new reminder, validated.
#[derive(Debug, Clone)]
pub struct NewReminder {
    /// What it says.
    pub message: String,
    /// When it is due first.
    pub remind_at: OffsetDateTime,
    /// Who gets it (`Accounts` or `Roles`).
    pub to: Audience,
    /// How it repeats.
    pub repeat: Repeat,
}

/// A reminder.
#[derive(Debug, Clone)]
pub struct Reminder {
    /// Its id.
    pub id: String,
    /// What it says.
    pub message: String,
    /// When it is due next (or was due last, once done).
    pub remind_at: OffsetDateTime,
    /// Who gets it.
    pub to: Audience,
    /// How it repeats.
    pub repeat: Repeat,
    /// `pending` or `done`.
    pub status: &'static str,
    /// How many times it fired.
    pub sent: i64,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
}

/// What one scheduler pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DueReport {
    /// Scheduled announcements published.
    pub announcements: usize,
    /// Reminders delivered.
    pub reminders: usize,
    /// Due items another run took first.
    pub taken_by_another_run: usize,
}

fn ann_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("ANN#{org}"), id)
}

fn rem_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("REM#{org}"), id)
}

fn due_key(at: OffsetDateTime, org: &OrgId, kind: &str, id: &str) -> IndexKey {
    IndexKey::new(DUE, format!("{}#{org}#{kind}#{id}", stamp(at)))
}

fn is_staff(p: &Principal) -> bool {
    p.role.allows(Role::Staff)
}

fn opt_time(item: &Item, name: &str) -> Option<OffsetDateTime> {
    item.str(name)
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

fn bad(item: &Item, what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!(
        "{}: stored {what} is malformed",
        item.key.sk
    ))
}

pub(super) fn announcement_of(item: &Item) -> Result<Announcement, StoreError> {
    Ok(Announcement {
        id: item.key.sk.clone(),
        title: item
            .str("title")
            .ok_or_else(|| bad(item, "title"))?
            .to_owned(),
        body: item
            .str("body")
            .ok_or_else(|| bad(item, "body"))?
            .to_owned(),
        audience: item
            .attrs
            .get("audience")
            .and_then(audience_from_value)
            .ok_or_else(|| bad(item, "audience"))?,
        attachments: item
            .attrs
            .get("attachments")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        status: match item.str("status") {
            Some("scheduled") => AnnouncementStatus::Scheduled,
            Some("published") => AnnouncementStatus::Published,
            _ => return Err(bad(item, "status")),
        },
        publish_at: opt_time(item, "publish_at"),
        published_at: opt_time(item, "published_at"),
        created_by: item.str("created_by").unwrap_or_default().to_owned(),
        created_at: parse_time(item, "created_at")?,
    })
}

pub(super) fn announcement_item(org: &OrgId, a: &Announcement) -> Item {
    let mut item = Item::new(ann_key(org, &a.id))
        .with("title", a.title.as_str())
        .with("body", a.body.as_str())
        .with("audience", audience_value(&a.audience))
        .with("attachments", a.attachments.clone())
        .with("status", a.status.as_str())
        .with("publish_at", a.publish_at.map(rfc3339))
        .with("published_at", a.published_at.map(rfc3339))
        .with("created_by", a.created_by.as_str())
        .with("created_at", rfc3339(a.created_at));
    if let (AnnouncementStatus::Scheduled, Some(at)) = (a.status, a.publish_at) {
        item.gsi1 = Some(due_key(at, org, "ANN", &a.id));
    }
    item
}

pub(super) fn reminder_of(item: &Item) -> Result<Reminder, StoreError> {
    Ok(Reminder {
        id: item.key.sk.clone(),
        message: item
            .str("message")
            .ok_or_else(|| bad(item, "message"))?
            .to_owned(),
        remind_at: parse_time(item, "remind_at")?,
        to: item
            .attrs
            .get("to")
            .and_then(audience_from_value)
            .ok_or_else(|| bad(item, "to"))?,
        repeat: Repeat::parse("repeat", item.str("repeat").unwrap_or("none"))
            .map_err(|_| bad(item, "repeat"))?,
        status: if item.str("status") == Some("done") {
            "done"
        } else {
            "pending"
        },
        sent: item.int("sent").unwrap_or(0),
        created_by: item.str("created_by").unwrap_or_default().to_owned(),
        created_at: parse_time(item, "created_at")?,
    })
}

pub(super) fn reminder_item(org: &OrgId, r: &Reminder) -> Item {
    let mut item = Item::new(rem_key(org, &r.id))
        .with("message", r.message.as_str())
        .with("remind_at", rfc3339(r.remind_at))
        .with("to", audience_value(&r.to))
        .with("repeat", r.repeat.as_str())
        .with("status", r.status)
        .with("sent", r.sent)
        .with("created_by", r.created_by.as_str())
        .with("created_at", rfc3339(r.created_at));
    if r.status == "pending" {
        item.gsi1 = Some(due_key(r.remind_at, org, "REM", &r.id));
    } else {
        // A finished reminder stays listed for a month.
        item.expires_at = Some(r.remind_at + time::Duration::days(30));
    }
    item
}

fn announcement_message(a: &Announcement) -> Message {
    Message {
        kind: "announcement".to_owned(),
        title: a.title.clone(),
        body: a.body.clone(),
        link: Some(format!("/v1/comms/announcements/{}", a.id)),
        category: Category::Announcements,
    }
}

fn reminder_message(r: &Reminder) -> Message {
    Message {
        kind: "reminder".to_owned(),
        title: "Reminder".to_owned(),
        body: r.message.clone(),
        link: None,
        category: Category::Reminders,
    }
}

fn taken(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ConditionFailed {
            index: Some(0) | None
        } | StoreError::Conflict(_)
    )
}

impl CommsStore {
    pub(crate) async fn announcement_item(
        &self,
        org: &OrgId,
        id: &str,
    ) -> Result<Option<Item>, StoreError> {
        self.table.get(&ann_key(org, id)).await
    }

    /// Creates an announcement (staff+): published now (its delivery
    /// starts in the same commit) or scheduled. Every attachment must be
    /// a ready attachment of the organization, checked in the same commit.
    pub async fn announce(
        &self,
        p: &Principal,
        new: NewAnnouncement,
    ) -> Result<Announcement, CommsError> {
        if !is_staff(p) {
            return Err(CommsError::Forbidden("only staff may announce"));
        }
        let org = &p.org;
        let mut checks = Vec::with_capacity(new.attachments.len());
        for id in &new.attachments {
            let key = media_key(org, id);
            match self.table.get(&key).await? {
                Some(m) if m.str("status") == Some("ready") => checks.push(Write::Check {
                    key,
                    condition: Condition::VersionEquals(m.version),
                }),
                _ => {
                    return Err(constellation_core::ValidationError::new(
                        "attachments",
                        format!("{id} is not a ready attachment of this organization"),
                    )
                    .into());
                }
            }
        }
        let now = self.now();
        let a = Announcement {
            id: self.new_id(),
            title: new.title,
            body: new.body,
            audience: new.audience,
            attachments: new.attachments,
            status: if new.publish_at.is_some() {
                AnnouncementStatus::Scheduled
            } else {
                AnnouncementStatus::Published
            },
            publish_at: new.publish_at,
            published_at: new.publish_at.is_none().then_some(now),
            created_by: p.account.as_str().to_owned(),
            created_at: now,
        };
        let mut writes = vec![Write::Put {
            item: announcement_item(org, &a),
            condition: Condition::NotExists,
        }];
        writes.extend(checks);
        let mut events = Vec::new();
        if a.status == AnnouncementStatus::Published {
            let (write, event) = self.start_delivery(
                org,
                &a.id,
                announcement_message(&a),
                a.audience.clone(),
                true,
                Some(a.id.clone()),
            )?;
            writes.push(write);
            events.push(event);
        }
        match self.outbox.commit(writes, &events).await {
            Ok(()) => Ok(a),
            // An attachment changed (deleted) between the read and the commit.
            Err(StoreError::ConditionFailed { index: Some(i) }) if i > 0 => {
                Err(constellation_core::ValidationError::new(
                    "attachments",
                    "an attachment was deleted meanwhile",
                )
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores an announcement imported from elsewhere, as the operator:
    /// published at `published_at` and delivered long ago, so no delivery
    /// starts (no notification, no mail), nothing is published on the bus
    /// and it is not in the due index; listings show it like any other.
    /// The title, body and audience follow the API's rules (an audience of
    /// named accounts is refused, as the API refuses it); legacy
    /// attachments are not migrated. One already stored under `id` answers
    /// [`Imported::AlreadyPresent`] and is left as it is.
    pub async fn import_announcement(
        &self,
        org: &OrgId,
        import: AnnouncementImport,
    ) -> Result<Imported, CommsError> {
        use constellation_core::ValidationError;
        if !is_time_ordered_id(&import.id) {
            return Err(ValidationError::new("id", "must be an id as issued").into());
        }
        let audience = match import.audience {
            Audience::All => Audience::All,
            Audience::Roles { roles } => {
                let names: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
                Audience::Roles {
                    roles: crate::domain::roles("audience.roles", &names)?,
                }
            }
            Audience::Accounts { .. } => {
                return Err(ValidationError::new(
                    "audience",
                    "must be \"all\" or {\"roles\":[...]}",
                )
                .into());
            }
        };
        let author = AccountId::parse(&import.author).map_err(|_| {
            ValidationError::new("author", "must be an account id: 32 lowercase hex digits")
        })?;
        if import.published_at < import.created_at {
            return Err(
                ValidationError::new("published_at", "must not be before created_at").into(),
            );
        }
        let a = Announcement {
            id: import.id,
            title: crate::domain::title("title", &import.title)?,
            body: crate::domain::body("body", &import.body, crate::domain::MAX_BODY_CHARS)?,
            audience,
            attachments: Vec::new(),
            status: AnnouncementStatus::Published,
            publish_at: None,
            published_at: Some(import.published_at),
            created_by: author.as_str().to_owned(),
            created_at: import.created_at,
        };
        if self.announcement_item(org, &a.id).await?.is_some() {
            return Ok(Imported::AlreadyPresent);
        }
        let write = Write::Put {
            item: announcement_item(org, &a),
            condition: Condition::NotExists,
        };
        match self.outbox.commit(vec![write], &[]).await {
            Ok(()) => Ok(Imported::Created),
            // A concurrent import of the same announcement won.
            Err(e) if taken(&e) => match self.announcement_item(org, &a.id).await? {
                Some(_) => Ok(Imported::AlreadyPresent),
                None => Err(CommsError::Contention("announcement")),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The announcements `p` may see, newest first: staff+ all of them,
    /// members the published ones addressed to their role.
    pub async fn announcements(
        &self,
        p: &Principal,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Announcement>, Option<String>), CommsError> {
        let mut query = Query::partition(format!("ANN#{}", p.org));
        query.descending = true;
        query.limit = limit;
        query.cursor = cursor;
        let page = self.table.query(&query).await?;
        let mut out = Vec::new();
        for item in &page.items {
            if item.str("status") == Some("retracted") {
                continue;
            }
            let a = announcement_of(item)?;
            if visible(p, &a) {
                out.push(a);
            }
        }
        Ok((out, page.next_cursor))
    }

    /// One announcement `p` may see, with download links of its attachments.
    pub async fn announcement(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<(Announcement, Vec<AttachmentLink>), CommsError> {
        let a = match self.announcement_item(&p.org, id).await? {
            Some(item) if item.str("status") != Some("retracted") => announcement_of(&item)?,
            _ => return Err(CommsError::NotFound("announcement")),
        };
        if !visible(p, &a) {
            return Err(CommsError::NotFound("announcement"));
        }
        let mut links = Vec::with_capacity(a.attachments.len());
        for media in &a.attachments {
            let stored = self.table.get(&media_key(&p.org, media)).await?;
            let ready = stored.as_ref().filter(|m| m.str("status") == Some("ready"));
            let mut link = AttachmentLink {
                id: media.clone(),
                content_type: ready.and_then(|m| m.str("content_type")).map(str::to_owned),
                filename: ready
                    .and_then(|m| m.str("download_name"))
                    .map(str::to_owned),
                download_url: None,
                expires_at: None,
            };
            if let (Some(m), Some(key)) = (ready, ready.and_then(|m| m.str("stored_key"))) {
                let disposition = attachment(m.str("download_name").unwrap_or("attachment"));
                let url = self
                    .blobs
                    .presign_get(key, DOWNLOAD_LIFETIME, Some(&disposition))
                    .await?;
                link.download_url = Some(url.url);
                link.expires_at = Some(url.expires_at);
            }
            links.push(link);
        }
        Ok((a, links))
    }

    /// Retracts an announcement (staff+): gone for everyone, its fan-out
    /// stops, and its unread notifications are removed (by the worker).
    pub async fn retract(&self, p: &Principal, id: &str) -> Result<(), CommsError> {
        if !is_staff(p) {
            return Err(CommsError::Forbidden(
                "only staff may retract an announcement",
            ));
        }
        for attempt in 0..constellation_platform::retry::MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(constellation_platform::retry::backoff(attempt)).await;
            }
            let item = match self.announcement_item(&p.org, id).await? {
                Some(item) if item.str("status") != Some("retracted") => item,
                _ => return Err(CommsError::NotFound("announcement")),
            };
            let was_published = item.str("status") == Some("published");
            let mut retracted = item
                .clone()
                .with("status", "retracted")
                .with("retracted_by", p.account.as_str())
                .with("retracted_at", rfc3339(self.now()));
            retracted.gsi1 = None;
            retracted.version = item.version + 1;
            retracted.expires_at = Some(self.now() + time::Duration::days(30));
            let mut events = Vec::new();
            if was_published {
                events.push(self.event(
                    events::RETRACT,
                    &p.org,
                    json!({ "announcement_id": id }),
                )?);
            }
            let writes = vec![Write::Put {
                item: retracted,
                condition: Condition::VersionEquals(item.version),
            }];
            match self.outbox.commit(writes, &events).await {
                Ok(()) => {
                    tracing::info!(announcement = id, by = %p.account, "announcement retracted");
                    return Ok(());
                }
                Err(e) if taken(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommsError::Contention("announcement"))
    }

    /// Creates a reminder (staff+); named accounts must be in the directory.
    pub async fn remind(&self, p: &Principal, new: NewReminder) -> Result<Reminder, CommsError> {
        if !is_staff(p) {
            return Err(CommsError::Forbidden("only staff may set reminders"));
        }
        if let Audience::Accounts { accounts } = &new.to {
            for a in accounts {
                if self.entry(&p.org, a).await?.is_none() {
                    return Err(constellation_core::ValidationError::new(
                        "to.accounts",
                        format!("{a} is not an account of this organization"),
                    )
                    .into());
                }
            }
        }
        let r = Reminder {
            id: self.new_id(),
            message: new.message,
            remind_at: new.remind_at,
            to: new.to,
            repeat: new.repeat,
            status: "pending",
            sent: 0,
            created_by: p.account.as_str().to_owned(),
            created_at: self.now(),
        };
        self.table
            .put(&reminder_item(&p.org, &r), Condition::NotExists)
            .await?;
        Ok(r)
    }

    /// The organization's reminders (staff+), newest first.
    pub async fn reminders(
        &self,
        p: &Principal,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Reminder>, Option<String>), CommsError> {
        if !is_staff(p) {
            return Err(CommsError::Forbidden("only staff may list reminders"));
        }
        let mut query = Query::partition(format!("REM#{}", p.org));
        query.descending = true;
        query.limit = limit;
        query.cursor = cursor;
        let page = self.table.query(&query).await?;
        let items = page
            .items
            .iter()
            .map(reminder_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, page.next_cursor))
    }

    /// Deletes a reminder (staff+).
    pub async fn delete_reminder(&self, p: &Principal, id: &str) -> Result<(), CommsError> {
        if !is_staff(p) {
            return Err(CommsError::Forbidden("only staff may delete reminders"));
        }
        match self
            .table
            .delete(&rem_key(&p.org, id), Condition::Exists)
            .await
        {
            Ok(Some(_)) => Ok(()),
            Ok(None) | Err(StoreError::ConditionFailed { .. }) => {
                Err(CommsError::NotFound("reminder"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes every scheduled announcement and delivers every reminder
    /// due at `now` (see the module docs for why each happens once).
    pub async fn run_due(&self) -> Result<DueReport, CommsError> {
        use futures::StreamExt as _;
        let now = self.now();
        let started = std::time::Instant::now();
        let mut report = DueReport::default();
        let mut cursor = None;
        let mut seen = 0;
        loop {
            let page = self
                .table
                .query(&Query {
                    index: Some(Index::Gsi1),
                    pk: DUE.to_owned(),
                    sort: SortKey::AtMost(format!("{}#~", stamp(now))),
                    descending: false,
                    limit: 100,
                    cursor,
                })
                .await?;
            seen += page.items.len();
            let next = page.next_cursor;
            // A page at a time, several items at once: one organization's
            // many due items cost the others little waiting.
            let outcomes: Vec<_> = futures::stream::iter(page.items)
                .map(|item| async move {
                    let org = item
                        .key
                        .pk
                        .split_once('#')
                        .and_then(|(_, o)| OrgId::parse(o).ok());
                    let Some(org) = org else {
                        return (item, Ok((false, false)));
                    };
                    let outcome = if item.key.pk.starts_with("ANN#") {
                        self.publish_due(&org, &item, now)
                            .await
                            .map(|ok| (ok, true))
                    } else {
                        self.remind_due(&org, &item, now)
                            .await
                            .map(|ok| (ok, false))
                    };
                    (item, outcome)
                })
                .buffer_unordered(DUE_CONCURRENCY)
                .collect()
                .await;
            for (item, outcome) in outcomes {
                match outcome {
                    Ok((true, true)) => report.announcements += 1,
                    Ok((true, false)) => report.reminders += 1,
                    Ok((false, _)) => report.taken_by_another_run += 1,
                    Err(e) => {
                        // One bad item must not stop the others.
                        tracing::error!(key = %item.key.sk, error = %e, "a due item failed; it is retried next run");
                    }
                }
            }
            cursor = next;
            // Bounded per run (the next run, a minute later, goes on).
            if cursor.is_none() || seen >= DUE_PER_RUN || started.elapsed() > DUE_BUDGET {
                return Ok(report);
            }
        }
    }

    /// Publishes one due announcement; `false` when another run did.
    async fn publish_due(
        &self,
        org: &OrgId,
        seen: &Item,
        now: OffsetDateTime,
    ) -> Result<bool, CommsError> {
        // The index may lag the table: decide on the item itself.
        let Some(item) = self.table.get(&seen.key).await? else {
            return Ok(false);
        };
        let mut a = announcement_of(&item)?;
        if a.status != AnnouncementStatus::Scheduled || a.publish_at.is_none_or(|t| t > now) {
            return Ok(false);
        }
        a.status = AnnouncementStatus::Published;
        a.published_at = Some(now);
        let mut published = announcement_item(org, &a);
        published.version = item.version + 1;
        let (write, event) = self.start_delivery(
            org,
            &a.id,
            announcement_message(&a),
            a.audience.clone(),
            true,
            Some(a.id.clone()),
        )?;
        let writes = vec![
            Write::Put {
                item: published,
                condition: Condition::VersionEquals(item.version),
            },
            write,
        ];
        match self.outbox.commit(writes, &[event]).await {
            Ok(()) => Ok(true),
            Err(e) if taken(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Delivers one due reminder and moves it on; `false` when another run did.
    async fn remind_due(
        &self,
        org: &OrgId,
        seen: &Item,
        now: OffsetDateTime,
    ) -> Result<bool, CommsError> {
        let Some(item) = self.table.get(&seen.key).await? else {
            return Ok(false);
        };
        let mut r = reminder_of(&item)?;
        if r.status != "pending" || r.remind_at > now {
            return Ok(false);
        }
        let message = reminder_message(&r);
        let to = r.to.clone();
        r.sent += 1;
        match r.repeat.next(r.remind_at, now) {
            Some(next) => r.remind_at = next,
            None => r.status = "done",
        }
        let mut moved = reminder_item(org, &r);
        moved.version = item.version + 1;
        let (write, event) = self.start_delivery(org, &self.new_id(), message, to, true, None)?;
        let writes = vec![
            Write::Put {
                item: moved,
                condition: Condition::VersionEquals(item.version),
            },
            write,
        ];
        match self.outbox.commit(writes, &[event]).await {
            Ok(()) => Ok(true),
            Err(e) if taken(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn visible(p: &Principal, a: &Announcement) -> bool {
    is_staff(p) || (a.status == AnnouncementStatus::Published && a.audience.addresses_role(p.role))
}
