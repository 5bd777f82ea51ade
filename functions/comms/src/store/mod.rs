//! comms over its ports: its copy of the directory, attachments it may
//! show, preferences, and (in the submodules) deliveries and inboxes,
//! announcements and reminders, and the daily counters and reports.
//!
//! Table layout (one table, every key begins with the organization):
//!
//! | item | pk | sk | indexes |
//! | --- | --- | --- | --- |
//! | directory entry | `DIR#<org>` | account | |
//! | preferences | `PREF#<org>` | account | |
//! | attachment | `MEDIA#<org>` | media id | |
//! | announcement | `ANN#<org>` | id (time-ordered) | gsi1 `DUE` / `<at>#<org>#ANN#<id>` while scheduled |
//! | reminder | `REM#<org>` | id | gsi1 `DUE` / `<at>#<org>#REM#<id>` while pending |
//! | delivery (a fan-out) | `DELIV#<org>` | id (time-ordered) | |
//! | notification | `NOTE#<org>#<account>` | delivery id | gsi1 `UNREAD#<org>#<account>` while unread, gsi2 `SRC#<org>#<delivery>` / account |
//! | unread count | `UNREADN#<org>` | account | |
//! | day counters | `STATS#<org>` | date | gsi1 `ACTIVE#<date>` / org |
//! | report | `REPORT#<org>` | date | |
//! | mail sent | `SENT#<org>` | `<delivery>#<account>` (expires) | |
//! | retraction progress | `RETRACT#<org>` | announcement id (expires) | |
//!
//! [`check_item`] checks one item of each kind, as an import does.

pub mod announce;
mod check;
pub mod deliver;
pub mod report;

pub use check::check_item;

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_core::auth::Role;
use constellation_core::directory::AccountSnapshot;
use constellation_core::ids::time_ordered_id_at;
use constellation_core::media::MediaChanged;
use constellation_platform::blob::{BlobError, BlobStore};
use constellation_platform::inbox::Inbox;
use constellation_platform::outbox::Outbox;
use constellation_platform::table::{Condition, Item, ItemKey};
use constellation_platform::{Clock, StoreError, Table};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::Preferences;

/// The consumer name of comms' inbox (event de-duplication).
pub const CONSUMER: &str = "comms";

/// Why a comms operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CommsError {
    /// Nothing the caller may see has this id.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Too much concurrent change.
    #[error("the {0} is being changed concurrently; retry")]
    Contention(&'static str),
    /// An input is invalid.
    #[error(transparent)]
    Invalid(#[from] constellation_core::ValidationError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bucket failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// One account in comms' copy of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The account id.
    pub account: String,
    /// Its email address.
    pub email: String,
    /// Its role.
    pub role: Role,
    /// Whether it is disabled.
    pub disabled: bool,
}

/// comms' store.
#[derive(Debug, Clone)]
pub struct CommsStore {
    pub(crate) table: Arc<dyn Table>,
    pub(crate) outbox: Outbox,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) inbox: Inbox,
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(crate) fn parse_time(item: &Item, name: &str) -> Result<OffsetDateTime, StoreError> {
    item.str(name)
        .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("stored `{name}` is not a time")))
}

/// A fixed-width sortable stamp of `t` (seconds).
pub(crate) fn stamp(t: OffsetDateTime) -> String {
    format!("{:012}", t.unix_timestamp().max(0))
}

pub(crate) fn dir_key(org: &OrgId, account: &str) -> ItemKey {
    ItemKey::new(format!("DIR#{org}"), account)
}

fn pref_key(org: &OrgId, account: &str) -> ItemKey {
    ItemKey::new(format!("PREF#{org}"), account)
}

pub(crate) fn media_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("MEDIA#{org}"), id)
}

pub(crate) fn entry_of(item: &Item) -> Option<Entry> {
    Some(Entry {
        account: item.key.sk.clone(),
        email: item.str("email")?.to_owned(),
        role: Role::parse("role", item.str("role")?).ok()?,
        disabled: item.attrs.get("disabled")?.as_bool()?,
    })
}

impl CommsStore {
    /// The store over its ports.
    pub fn new(
        table: Arc<dyn Table>,
        outbox: Outbox,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inbox: Inbox::new(CONSUMER, clock.clone()),
            table,
            outbox,
            blobs,
            clock,
        }
    }

    /// The outbox (relayed by `comms-scheduler`).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The time now.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// A fresh time-ordered id.
    pub(crate) fn new_id(&self) -> String {
        time_ordered_id_at(self.clock.now(), rand::random::<u128>())
    }

    /// Applies an account snapshot from auth: kept only when its version
    /// is newer than the copy's, so late, repeated or reordered events
    /// converge on auth's latest state.
    pub async fn apply_account(
        &self,
        org: &OrgId,
        snapshot: &AccountSnapshot,
    ) -> Result<bool, CommsError> {
        let role = Role::parse("role", &snapshot.role)?;
        if snapshot.account_id.is_empty() || snapshot.account_id.len() > 64 {
            return Err(constellation_core::ValidationError::new(
                "account_id",
                "must be 1 to 64 characters",
            )
            .into());
        }
        let key = dir_key(org, &snapshot.account_id);
        for _ in 0..constellation_platform::retry::MAX_ATTEMPTS {
            let current = self.table.get(&key).await?;
            if let Some(c) = &current
                && c.int("auth_version").unwrap_or(0)
                    >= i64::try_from(snapshot.version).unwrap_or(i64::MAX)
            {
                return Ok(false);
            }
            let mut item = Item::new(key.clone())
                .with("email", snapshot.email.as_str())
                .with("role", role.as_str())
                .with("disabled", snapshot.disabled)
                .with("auth_version", snapshot.version);
            let condition = match &current {
                Some(c) => {
                    item.version = c.version + 1;
                    Condition::VersionEquals(c.version)
                }
                None => Condition::NotExists,
            };
            match self.table.put(&item, condition).await {
                Ok(()) => return Ok(true),
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommsError::Contention("directory entry"))
    }

    /// One directory entry.
    pub async fn entry(&self, org: &OrgId, account: &str) -> Result<Option<Entry>, CommsError> {
        Ok(self
            .table
            .get(&dir_key(org, account))
            .await?
            .as_ref()
            .and_then(entry_of))
    }

    /// The email preferences of `account` (all off until set).
    pub async fn preferences(&self, org: &OrgId, account: &str) -> Result<Preferences, CommsError> {
        Ok(match self.table.get(&pref_key(org, account)).await? {
            Some(item) => {
                serde_json::from_value(item.attrs.get("email").cloned().unwrap_or_default())
                    .unwrap_or_default()
            }
            None => Preferences::default(),
        })
    }

    /// Replaces the email preferences of `account`.
    pub async fn set_preferences(
        &self,
        org: &OrgId,
        account: &str,
        prefs: Preferences,
    ) -> Result<Preferences, CommsError> {
        let email = serde_json::to_value(prefs)
            .map_err(|e| StoreError::Invalid(format!("preferences: {e}")))?;
        self.table
            .upsert(
                &Item::new(pref_key(org, account))
                    .with("email", email)
                    .with("updated_at", rfc3339(self.now())),
            )
            .await?;
        Ok(prefs)
    }

    /// Applies media's events about attachments: a ready attachment may be
    /// attached (with its stored key, to presign downloads); a deleted or
    /// rejected one never again (a tombstone outlives a late `ready`).
    pub async fn apply_media(
        &self,
        org: &OrgId,
        event_type: &str,
        change: &MediaChanged,
    ) -> Result<(), CommsError> {
        if change.purpose != "attachment" || change.id.is_empty() || change.id.len() > 64 {
            return Ok(());
        }
        let key = media_key(org, &change.id);
        let ready = event_type == constellation_core::media::events::READY;
        for _ in 0..constellation_platform::retry::MAX_ATTEMPTS {
            let current = self.table.get(&key).await?;
            let status = current.as_ref().and_then(|c| c.str("status"));
            if status == Some("gone") || (ready && status == Some("ready")) {
                return Ok(());
            }
            let mut item = Item::new(key.clone());
            if ready {
                let (Some(stored), Some(name), Some(ct)) = (
                    &change.stored_key,
                    &change.download_name,
                    &change.content_type,
                ) else {
                    return Err(StoreError::Invalid(
                        "media.ready without stored_key, download_name or content_type".into(),
                    )
                    .into());
                };
                item = item
                    .with("status", "ready")
                    .with("stored_key", stored.as_str())
                    .with("download_name", name.as_str())
                    .with("content_type", ct.as_str());
            } else {
                item = item.with("status", "gone");
                item.expires_at = Some(self.now() + time::Duration::days(30));
            }
            let condition = match &current {
                Some(c) => {
                    item.version = c.version + 1;
                    Condition::VersionEquals(c.version)
                }
                None => Condition::NotExists,
            };
            match self.table.put(&item, condition).await {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommsError::Contention("attachment"))
    }
}
