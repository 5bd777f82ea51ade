//! Accounts: who belongs to an organization, with which role, and whether
//! they may still log in; and the email claim that makes one email one
//! account per installation.
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `ORG#<org>` | `ACCOUNT#<id>` | an account: email, role, disabled, argon2id hash (an imported account's bcrypt hash until its first login, see `legacy`), session epoch |
//! | `EMAIL#<email>` | `EMAIL` | the uniqueness claim on a normalised email: its org and account |
//!
//! Role and disabled-flag changes follow the rules of [`Role::may_assign`]
//! and keep an enabled owner: a change that moves the organization's owner
//! count rewrites it in the same transaction, conditioned on its version
//! and on the caller's own account, so two owners demoting each other at
//! once leave one owner and the loser is told it lost its role (403).
//!
//! A change commits its directory event with it: `account.disabled` when
//! the account becomes disabled, else `account.updated`, carrying the
//! account as it is after the change and the version it got.

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Principal, Role};
use constellation_core::directory::events as directory;
use constellation_platform::StoreError;
use constellation_platform::table::{Condition, Item, ItemKey, Query, SortKey, Write};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::orgs::OrgRecord;
use super::{
    AuditAction, AuditEvent, AuthError, AuthStore, MAX_ATTEMPTS, backoff, is_conflict, org_pk,
    read_record, record_item,
};
use crate::client::ClientAddr;

/// An account as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// Its organization.
    pub org: OrgId,
    /// Its normalised email.
    pub email: Email,
    /// Its role in the organization.
    pub role: Role,
    /// Whether it may still log in.
    pub disabled: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

impl Account {
    pub(super) fn principal(&self) -> Principal {
        Principal {
            account: self.id.clone(),
            org: self.org.clone(),
            role: self.role,
        }
    }
}

/// An account as stored, with what clients never see.
#[derive(Clone)]
pub(super) struct StoredAccount {
    pub(super) account: Account,
    /// An argon2id PHC string, or an imported bcrypt hash (see `legacy`).
    pub(super) password_hash: String,
    /// Bumped when the account is disabled: refresh tokens of an older epoch are dead.
    pub(super) epoch: i64,
    pub(super) version: u64,
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAccount")
            .field("account", &self.account)
            .field("epoch", &self.epoch)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// An account's attributes (its org and id are its key).
#[derive(Serialize, Deserialize)]
struct AccountRecord {
    email: Email,
    role: Role,
    disabled: bool,
    password_hash: String,
    epoch: i64,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// The email claim's attributes.
#[derive(Serialize, Deserialize)]
pub(super) struct EmailClaim {
    org: OrgId,
    account: AccountId,
}

impl StoredAccount {
    pub(super) fn to_item(&self) -> Result<Item, AuthError> {
        let a = &self.account;
        let record = AccountRecord {
            email: a.email.clone(),
            role: a.role,
            disabled: a.disabled,
            password_hash: self.password_hash.clone(),
            epoch: self.epoch,
            created_at: a.created_at,
        };
        let mut item = record_item(account_key(&a.org, &a.id), &record)?;
        item.version = self.version;
        Ok(item)
    }

    pub(super) fn from_item(item: &Item) -> Result<Self, AuthError> {
        let org = item
            .key
            .pk
            .strip_prefix("ORG#")
            .and_then(|o| OrgId::parse(o).ok())
            .ok_or_else(|| super::corrupt(item, "org"))?;
        let id = item
            .key
            .sk
            .strip_prefix("ACCOUNT#")
            .and_then(|i| AccountId::parse(i).ok())
            .ok_or_else(|| super::corrupt(item, "id"))?;
        let r: AccountRecord = read_record(item)?;
        Ok(Self {
            account: Account {
                id,
                org,
                email: r.email,
                role: r.role,
                disabled: r.disabled,
                created_at: r.created_at,
            },
            password_hash: r.password_hash,
            epoch: r.epoch,
            version: item.version,
        })
    }
}

pub(super) fn account_key(org: &OrgId, id: &AccountId) -> ItemKey {
    ItemKey::new(org_pk(org), format!("ACCOUNT#{id}"))
}

pub(super) fn email_key(email: &Email) -> ItemKey {
    ItemKey::new(format!("EMAIL#{email}"), "EMAIL")
}

/// The claim of `account`'s email.
pub(super) fn email_item(account: &Account) -> Result<Item, AuthError> {
    let claim = EmailClaim {
        org: account.org.clone(),
        account: account.id.clone(),
    };
    record_item(email_key(&account.email), &claim)
}

/// A change to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountForUpdate {
    /// The new role.
    pub role: Option<Role>,
    /// Disable (true) or re-enable (false).
    pub disabled: Option<bool>,
}

impl AuthStore {
    /// The caller's own account.
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account))]
    pub async fn me(&self, principal: &Principal) -> Result<Account, AuthError> {
        Ok(self.active(principal).await?.account)
    }

    /// One page of the caller's organization's accounts (admins and owners).
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account))]
    pub async fn list_accounts(
        &self,
        principal: &Principal,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Account>, Option<String>), AuthError> {
        self.authorize(principal, Role::Admin).await?;
        let page = self
            .table
            .query(&Query {
                index: None,
                pk: org_pk(&principal.org),
                sort: SortKey::Prefix("ACCOUNT#".into()),
                descending: false,
                limit,
                cursor,
            })
            .await?;
        let accounts = page
            .items
            .iter()
            .map(|i| StoredAccount::from_item(i).map(|s| s.account))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((accounts, page.next_cursor))
    }

    /// Changes another account's role or disabled flag (or the caller's own).
    /// Nobody raises anyone above their own role or manages someone above it,
    /// and the organization always keeps an enabled owner.
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account, target = %id))]
    pub async fn update_account(
        &self,
        principal: &Principal,
        id: &AccountId,
        change: AccountForUpdate,
        ip: &ClientAddr,
    ) -> Result<Account, AuthError> {
        for attempt in 0..MAX_ATTEMPTS {
            let actor = self.authorize(principal, Role::Admin).await?;
            let target = if *id == actor.account.id {
                actor.clone()
            } else {
                self.load_account(&principal.org, id)
                    .await?
                    .ok_or(AuthError::NotFound)?
            };
            let role = change.role.unwrap_or(target.account.role);
            let disabled = change.disabled.unwrap_or(target.account.disabled);
            let was = target.account.clone();
            if role != was.role && !actor.account.role.may_assign(was.role, role) {
                return Err(AuthError::Forbidden(
                    "you cannot give a role above your own, nor change the role of someone above you",
                ));
            }
            if disabled != was.disabled && !actor.account.role.may_assign(was.role, was.role) {
                return Err(AuthError::Forbidden(
                    "you cannot disable or enable someone above your own role",
                ));
            }
            if role == was.role && disabled == was.disabled {
                return Ok(was);
            }

            let mut updated = target.clone();
            updated.account.role = role;
            updated.account.disabled = disabled;
            if disabled && !was.disabled {
                updated.epoch += 1;
            }
            updated.version = target.version + 1;
            let mut writes = vec![Write::Put {
                item: updated.to_item()?,
                condition: Condition::VersionEquals(target.version),
            }];
            if actor.account.id != target.account.id {
                // The caller's own role must still be what was checked.
                writes.push(Write::Check {
                    key: account_key(&principal.org, &actor.account.id),
                    condition: Condition::VersionEquals(actor.version),
                });
            }
            let counted = |role: Role, disabled: bool| i64::from(role == Role::Owner && !disabled);
            let delta = counted(role, disabled) - counted(was.role, was.disabled);
            if delta != 0 {
                let (org, record) = self.load_org(&principal.org).await?;
                let owners = record.owners + delta;
                if owners < 1 {
                    // Only if the caller and the target are still as read:
                    // a concurrent change (another owner demoting this
                    // caller) can have lowered the count first, and then the
                    // caller's own standing decides, on the next round.
                    if self.unchanged(&principal.org, &[&actor, &target]).await? {
                        return Err(AuthError::LastOwner);
                    }
                    continue;
                }
                writes.push(OrgRecord { owners, ..record }.put_over(&org)?);
            }
            // Re-enabling is an update (`disabled: false`); only the change
            // to disabled is `account.disabled`.
            let event_type = if disabled && !was.disabled {
                directory::ACCOUNT_DISABLED
            } else {
                directory::ACCOUNT_UPDATED
            };
            let event = self.account_event(event_type, &updated, self.clock.now())?;
            match self.outbox.commit(writes, &[event]).await {
                Ok(()) => {}
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) if is_conflict(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    backoff(attempt + 1).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            let org = Some(&principal.org);
            if role != was.role {
                tracing::info!(from = %was.role, to = %role, "role changed");
                self.audit(
                    org,
                    AuditEvent::new(AuditAction::RoleChanged)
                        .actor(&actor.account.id)
                        .target(&was.id)
                        .ip(ip)
                        .detail(format!("{} -> {}", was.role, role)),
                )
                .await;
            }
            if disabled != was.disabled {
                tracing::info!(disabled, "account disabled flag changed");
                let action = if disabled {
                    AuditAction::AccountDisabled
                } else {
                    AuditAction::AccountEnabled
                };
                self.audit(
                    org,
                    AuditEvent::new(action)
                        .actor(&actor.account.id)
                        .target(&was.id)
                        .ip(ip),
                )
                .await;
            }
            return Ok(updated.account);
        }
        Err(AuthError::Contention)
    }

    pub(super) async fn load_account(
        &self,
        org: &OrgId,
        id: &AccountId,
    ) -> Result<Option<StoredAccount>, AuthError> {
        self.table
            .get(&account_key(org, id))
            .await?
            .map(|i| StoredAccount::from_item(&i))
            .transpose()
    }

    pub(super) async fn account_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<StoredAccount>, AuthError> {
        let Some(claim) = self.table.get(&email_key(email)).await? else {
            return Ok(None);
        };
        let claim: EmailClaim = read_record(&claim)?;
        self.load_account(&claim.org, &claim.account).await
    }

    /// Whether each account still has the version it was read with.
    async fn unchanged(&self, org: &OrgId, accounts: &[&StoredAccount]) -> Result<bool, AuthError> {
        for read in accounts {
            let now = self.load_account(org, &read.account.id).await?;
            if now.map(|a| a.version) != Some(read.version) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The caller's stored account, which must exist and be enabled: a token
    /// outlives a disable by up to 15 minutes, the stored account does not.
    pub(super) async fn active(&self, principal: &Principal) -> Result<StoredAccount, AuthError> {
        self.load_account(&principal.org, &principal.account)
            .await?
            .filter(|s| !s.account.disabled)
            .ok_or(AuthError::AccountInactive)
    }

    /// [`Self::active`], and its *current* role must allow `required`.
    pub(super) async fn authorize(
        &self,
        principal: &Principal,
        required: Role,
    ) -> Result<StoredAccount, AuthError> {
        let actor = self.active(principal).await?;
        if !actor.account.role.allows(required) {
            return Err(AuthError::Forbidden("your role does not allow this"));
        }
        Ok(actor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_account_item_with_a_legacy_bcrypt_hash_loads_as_stored() {
        let hash = bcrypt::hash_with_result("a legacy passphrase", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let legacy = crate::password::validate_legacy_hash(&hash).unwrap();
        let stored = StoredAccount {
            account: Account {
                id: AccountId::from_bytes([7; 16]),
                org: OrgId::parse("0123456789abcdef0123456789abcdef").unwrap(),
                email: Email::parse("old@example.com").unwrap(),
                role: Role::Member,
                disabled: false,
                created_at: time::macros::datetime!(2026-01-01 0:00 UTC),
            },
            password_hash: legacy.as_str().to_owned(),
            epoch: 0,
            version: 1,
        };
        let loaded = StoredAccount::from_item(&stored.to_item().unwrap()).unwrap();
        assert_eq!(loaded.password_hash, hash);
        assert_eq!(loaded.account, stored.account);
        assert_eq!(loaded.version, 1);
        assert!(!format!("{loaded:?}").contains(&hash));
    }
}
