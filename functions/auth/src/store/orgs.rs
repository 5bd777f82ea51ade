//! Organizations: registering one creates it with its owner, and the owner
//! logs in at once.
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `ORG#<org>` | `ORG` | the organization: name, count of enabled owners |
//!
//! The owner count is what keeps an organization from losing its last
//! enabled owner; every change to it is conditioned on the item's version.
//!
//! **Enumerating organizations.** The Table port has no scan, yet a resync
//! (`constellation comms resync`) must visit every organization. So the
//! organization item carries its own entry in `gsi1`: partition
//! `ORGS#<shard>` (a stable hash of the org id, [`ORG_INDEX_SHARDS`]
//! partitions so registrations do not all write one index partition), sort
//! key the org id. Being attributes of the org item, the entry exists
//! exactly as long as the organization does and needs no write of its own;
//! registration writes it with the item, and every rewrite of the item
//! ([`OrgRecord::put_over`]) writes it again, so a rewrite cannot drop it
//! and an organization registered before the index existed joins it on its
//! next rewrite (until then, resync it by name). DynamoDB's indexes are
//! eventually consistent: an organization registered a moment before an
//! enumeration may be missed by it, and its own `account.created` covers it.

use constellation_core::auth::{Email, Password, Role};
use constellation_core::directory::events as directory;
use constellation_core::{OrgId, ValidationError};
use constellation_platform::StoreError;
use constellation_platform::table::{Condition, IndexKey, Item, ItemKey, Write};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::accounts::{Account, StoredAccount, email_item, email_key};
use super::{
    AuditAction, AuditEvent, AuthError, AuthStore, MAX_ATTEMPTS, Session, backoff, is_conflict,
    new_account_id, org_pk, random_hex_16, read_record, record_item,
};
use crate::client::ClientAddr;

/// The longest organization name, in characters.
pub const MAX_ORG_NAME_CHARS: usize = 100;
/// The longest organization name a client may send, surrounding whitespace
/// included ([`OrgName::parse_input`]): trimming is a courtesy, not a way to
/// send an unbounded string. Imported names are not held to it (a legacy
/// `char(n)` column pads with spaces).
pub const MAX_ORG_NAME_INPUT_CHARS: usize = 4 * MAX_ORG_NAME_CHARS;
/// How many `gsi1` partitions (`ORGS#0` … `ORGS#7`) index the organizations.
pub const ORG_INDEX_SHARDS: u32 = 8;
/// The organization item's attributes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OrgRecord {
    /// Its display name.
    pub(super) name: String,
    /// How many enabled owners it has: at least 1, except for an imported
    /// organization whose owners are not imported (yet).
    pub(super) owners: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub(super) created_at: OffsetDateTime,
}

impl OrgRecord {
    /// The organization item holding this record, with its index entry.
    pub(super) fn to_item(&self, org: &OrgId) -> Result<Item, AuthError> {
        let mut item = record_item(org_key(org), self)?;
        item.gsi1 = Some(org_index_key(org));
        Ok(item)
    }

    /// A write replacing `current` (as read) with this record, if unchanged since.
    pub(super) fn put_over(&self, current: &Item) -> Result<Write, AuthError> {
        let org = current
            .key
            .pk
            .strip_prefix("ORG#")
            .and_then(|o| OrgId::parse(o).ok())
            .ok_or_else(|| super::corrupt(current, "org"))?;
        let mut item = self.to_item(&org)?;
        item.version = current.version + 1;
        Ok(Write::Put {
            item,
            condition: Condition::VersionEquals(current.version),
        })
    }
}

pub(super) fn org_key(org: &OrgId) -> ItemKey {
    ItemKey::new(org_pk(org), "ORG")
}

/// The `gsi1` partition of the organization index that holds shard `shard`.
pub(super) fn org_index_partition(shard: u32) -> String {
    format!("ORGS#{shard}")
}

/// The organization's entry in the organization index (`gsi1`).
fn org_index_key(org: &OrgId) -> IndexKey {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = org.as_str().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    IndexKey::new(org_index_partition(hash % ORG_INDEX_SHARDS), org.as_str())
}

/// An organization's display name: 1-100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    /// Parses a name, trimming surrounding whitespace.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_ORG_NAME_CHARS {
            return Err(ValidationError::new(
                "organization",
                format!("must be 1 to {MAX_ORG_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "organization",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// Parses a name a client sent: at most [`MAX_ORG_NAME_INPUT_CHARS`]
    /// characters as sent, then as [`OrgName::parse`].
    pub fn parse_input(raw: &str) -> Result<Self, ValidationError> {
        if raw.chars().nth(MAX_ORG_NAME_INPUT_CHARS).is_some() {
            return Err(ValidationError::new(
                "organization",
                format!(
                    "must be at most {MAX_ORG_NAME_INPUT_CHARS} characters with surrounding whitespace"
                ),
            ));
        }
        Self::parse(raw)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new organization and its first account, as the client asked for it.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The organization's name.
    pub organization: OrgName,
    /// The owner's email.
    pub email: Email,
    /// The owner's password (already checked against the policy).
    pub password: Password,
}

impl AuthStore {
    /// Creates an organization and its owner, and logs the owner in.
    #[tracing::instrument(skip_all, fields(org, account))]
    pub async fn register(&self, reg: Registration, ip: &ClientAddr) -> Result<Session, AuthError> {
        let issuer = self.token_issuer().await?;
        if self.table.get(&email_key(&reg.email)).await?.is_some() {
            return Err(AuthError::EmailTaken);
        }
        let password_hash = self.hasher.hash(&reg.password).await?;
        let mut attempt = 0;
        let (stored, refresh, now) = loop {
            let now = self.clock.now();
            let org = OrgId::parse(&random_hex_16())?;
            let stored = StoredAccount {
                account: Account {
                    id: new_account_id(),
                    org: org.clone(),
                    email: reg.email.clone(),
                    role: Role::Owner,
                    disabled: false,
                    created_at: now,
                },
                password_hash: password_hash.clone(),
                epoch: 0,
                version: 1,
            };
            let record = OrgRecord {
                name: reg.organization.as_str().to_owned(),
                owners: 1,
                created_at: now,
            };
            let org_item = record.to_item(&org)?;
            let mut writes = vec![
                Write::Put {
                    item: email_item(&stored.account)?,
                    condition: Condition::NotExists,
                },
                Write::Put {
                    item: org_item,
                    condition: Condition::NotExists,
                },
                Write::Put {
                    item: stored.to_item()?,
                    condition: Condition::NotExists,
                },
            ];
            let refresh = self.session_writes(&stored.account, stored.epoch, now, &mut writes)?;
            let created = self.account_event(directory::ACCOUNT_CREATED, &stored, now)?;
            match self.outbox.commit(writes, &[created]).await {
                Ok(()) => break (stored, refresh, now),
                // The org and account ids are fresh random values: only the email claim can fail.
                Err(StoreError::ConditionFailed { .. }) => return Err(AuthError::EmailTaken),
                Err(e) if is_conflict(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                    if self.table.get(&email_key(&reg.email)).await?.is_some() {
                        return Err(AuthError::EmailTaken);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (org, account) = (&stored.account.org, &stored.account);
        let span = tracing::Span::current();
        span.record("org", tracing::field::display(org));
        span.record("account", tracing::field::display(&account.id));
        tracing::info!("organization registered");
        self.audit(
            Some(org),
            AuditEvent::new(AuditAction::Register)
                .actor(&account.id)
                .target(&account.id)
                .ip(ip),
        )
        .await;
        Ok(self.issue(issuer, stored.account.clone(), refresh, now))
    }

    /// The organization item and its record.
    pub(super) async fn load_org(&self, org: &OrgId) -> Result<(Item, OrgRecord), AuthError> {
        let item = self.table.get(&org_key(org)).await?.ok_or_else(|| {
            AuthError::Store(StoreError::Backend(anyhow::anyhow!(
                "organization {org} has no org item"
            )))
        })?;
        let record = read_record(&item)?;
        Ok((item, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_names_are_checked() {
        assert_eq!(
            OrgName::parse("  Acme  ").map(|n| n.as_str().to_owned()),
            Ok("Acme".to_owned())
        );
        assert!(OrgName::parse("   ").is_err());
        assert!(OrgName::parse(&"x".repeat(101)).is_err());
        let padded = |n: usize| format!("{}Acme{}", " ".repeat(n), " ".repeat(n));
        assert!(OrgName::parse_input(&padded((MAX_ORG_NAME_INPUT_CHARS - 4) / 2)).is_ok());
        assert_eq!(
            OrgName::parse_input(&padded(MAX_ORG_NAME_INPUT_CHARS / 2)).map_err(|e| e.field),
            Err("organization")
        );
        // An imported name (a padded legacy column) is trimmed, not refused.
        assert!(OrgName::parse(&padded(MAX_ORG_NAME_INPUT_CHARS)).is_ok());
        assert_eq!(
            OrgName::parse("a\u{7}b").map_err(|e| e.field),
            Err("organization")
        );
    }
}
