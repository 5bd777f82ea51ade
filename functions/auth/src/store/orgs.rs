//! Organizations: registering one creates it with its owner, and the owner
//! logs in at once.
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `ORG#<org>` | `ORG` | the organization: name, count of enabled owners |
//!
//! The owner count is what keeps an organization from losing its last
//! enabled owner; every change to it is conditioned on the item's version.

use constellation_core::auth::{Email, Password, Role};
use constellation_core::{OrgId, ValidationError};
use constellation_platform::StoreError;
use constellation_platform::table::{Condition, Item, ItemKey, Write};
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
/// The organization item's attributes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OrgRecord {
    /// Its display name.
    pub(super) name: String,
    /// How many enabled owners it has (at least 1).
    pub(super) owners: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub(super) created_at: OffsetDateTime,
}

impl OrgRecord {
    /// A write replacing `current` (as read) with this record, if unchanged since.
    pub(super) fn put_over(&self, current: &Item) -> Result<Write, AuthError> {
        let mut item = record_item(current.key.clone(), self)?;
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
            let org_item = record_item(org_key(&org), &record)?;
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
            match self.table.transact(&writes).await {
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
        Ok(self.issue(stored.account.clone(), refresh, now))
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
        assert_eq!(
            OrgName::parse("a\u{7}b").map_err(|e| e.field),
            Err("organization")
        );
    }
}
