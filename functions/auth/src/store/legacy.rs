//! Accounts carried over from legacy databases, and the upgrade of their
//! password hashes.
//!
//! An import stores an account with its legacy bcrypt hash as it came
//! ([`crate::password::validate_legacy_hash`]); nothing else about the
//! account differs, so it is listed, managed and published like any other
//! (`account.created` commits with it). Its first successful login verifies
//! the bcrypt hash and stores an argon2id hash of the same password in its
//! place ([`crate::password::Verified::YesRehashed`]).
//!
//! The upgrade is a put of the account as the login read it, with the new
//! hash, conditioned on the version it was read with: it never overwrites a
//! change made meanwhile (a disable, a role change, a concurrent login's own
//! upgrade). When the condition fails the login still succeeds, and the next
//! login that still finds bcrypt upgrades it. The upgrade bumps the item's
//! version without a directory event (the hash is not in the directory's
//! snapshot); consumers keep the highest version they see, so the gap is
//! harmless.

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Role};
use constellation_core::directory::events as directory;
use constellation_core::import::Imported;
use constellation_platform::StoreError;
use constellation_platform::table::{Condition, Write};
use time::OffsetDateTime;

use super::accounts::{Account, StoredAccount, account_key, email_item, email_key};
use super::orgs::{OrgName, OrgRecord, org_key};
use super::{AuthError, AuthStore, MAX_ATTEMPTS, backoff, is_conflict};
use crate::password::LegacyHash;

/// An account from a legacy database, to import into an existing
/// organization with its password hash as it was.
#[derive(Debug, Clone)]
pub struct AccountForImport {
    /// Its id, chosen by the importer (derived from the legacy id, so that
    /// importing the same row again finds it).
    pub id: AccountId,
    /// Its email, which must have no other account.
    pub email: Email,
    /// Its role in the organization.
    pub role: Role,
    /// Its legacy password hash.
    pub password_hash: LegacyHash,
    /// When the legacy system created it.
    pub created_at: OffsetDateTime,
}

impl AuthStore {
    /// Creates the organization `org` named `name`, with no account yet,
    /// as the legacy system created it at `created_at`: its accounts follow
    /// through [`AuthStore::import_account`], each imported owner raising its
    /// owner count. For the migration tooling, which runs as the operator.
    /// An organization already there is [`Imported::AlreadyPresent`] and is
    /// left as it is.
    #[tracing::instrument(skip_all, fields(org = %org))]
    pub async fn import_org(
        &self,
        org: &OrgId,
        name: &OrgName,
        created_at: OffsetDateTime,
    ) -> Result<Imported, AuthError> {
        let record = OrgRecord {
            name: name.as_str().to_owned(),
            owners: 0,
            created_at,
        };
        let item = record.to_item(org)?;
        match self.table.put(&item, Condition::NotExists).await {
            Ok(()) => Ok(Imported::Created),
            Err(StoreError::ConditionFailed { .. }) => Ok(Imported::AlreadyPresent),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the account `import` describes in the organization `org`,
    /// storing its legacy password hash as it is (the first login replaces
    /// it with argon2id), and commits its `account.created` so that the
    /// services keeping a directory learn of it. For the migration tooling,
    /// which runs as the operator: no caller's role is checked.
    ///
    /// An account with this id already in `org` is
    /// [`Imported::AlreadyPresent`] (an earlier run of the same import),
    /// whatever its fields are now; an email that another account has is
    /// [`AuthError::EmailTaken`]; an organization that does not exist is an
    /// error.
    #[tracing::instrument(skip_all, fields(org = %org, account = %import.id))]
    pub async fn import_account(
        &self,
        org: &OrgId,
        import: AccountForImport,
    ) -> Result<Imported, AuthError> {
        for attempt in 0..MAX_ATTEMPTS {
            // The claim first, then the account: a concurrent import of this
            // account that commits between the two reads is seen as the
            // account it wrote, never as a taken email.
            let claimed = self.table.get(&email_key(&import.email)).await?.is_some();
            if self
                .table
                .get(&account_key(org, &import.id))
                .await?
                .is_some()
            {
                return Ok(Imported::AlreadyPresent);
            }
            if claimed {
                return Err(AuthError::EmailTaken);
            }
            let (org_item, record) = self.load_org(org).await?;
            let stored = StoredAccount {
                account: Account {
                    id: import.id.clone(),
                    org: org.clone(),
                    email: import.email.clone(),
                    role: import.role,
                    disabled: false,
                    created_at: import.created_at,
                },
                password_hash: import.password_hash.as_str().to_owned(),
                epoch: 0,
                version: 1,
            };
            let mut writes = vec![
                Write::Put {
                    item: email_item(&stored.account)?,
                    condition: Condition::NotExists,
                },
                Write::Put {
                    item: stored.to_item()?,
                    condition: Condition::NotExists,
                },
            ];
            // An owner raises the organization's owner count; anyone else
            // needs the organization to still be there.
            writes.push(if import.role == Role::Owner {
                OrgRecord {
                    owners: record.owners + 1,
                    ..record
                }
                .put_over(&org_item)?
            } else {
                Write::Check {
                    key: org_key(org),
                    condition: Condition::Exists,
                }
            });
            let created =
                self.account_event(directory::ACCOUNT_CREATED, &stored, self.clock.now())?;
            match self.outbox.commit(writes, &[created]).await {
                Ok(()) => {
                    tracing::info!(
                        cost = import.password_hash.cost(),
                        "account imported with a legacy password hash"
                    );
                    return Ok(Imported::Created);
                }
                // The account, the email claim and the owner count are
                // read again at the top.
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) if is_conflict(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    backoff(attempt + 1).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Contention)
    }

    /// Stores `phc` (an argon2id hash of the password that just matched
    /// `read`'s legacy hash) in its place, if the account is unchanged since
    /// `read`. Never fails the login: when it does not happen, the next login
    /// tries again.
    pub(super) async fn replace_legacy_hash(&self, read: &StoredAccount, phc: String) {
        let mut upgraded = read.clone();
        upgraded.password_hash = phc;
        upgraded.version = read.version + 1;
        let item = match upgraded.to_item() {
            Ok(item) => item,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "legacy password hash not replaced"
                );
                return;
            }
        };
        match self
            .table
            .put(&item, Condition::VersionEquals(read.version))
            .await
        {
            Ok(()) => tracing::info!("legacy password hash replaced with argon2id"),
            Err(StoreError::ConditionFailed { .. }) => tracing::info!(
                "legacy password hash kept: the account changed since it was read; the next login replaces it"
            ),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "legacy password hash not replaced; the next login tries again"
            ),
        }
    }
}
