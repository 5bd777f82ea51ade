//! What auth tells other services about accounts: the directory contract of
//! `constellation_core::directory`.
//!
//! Every write that creates an account or changes its email, role or
//! disabled flag commits one event through the outbox in its own
//! transaction (registration and an accepted invite: `account.created`; a
//! change: `account.updated` or `account.disabled`). Its data is an
//! [`AccountSnapshot`] of the account after the write, with the version the
//! write gave its item, so a consumer keeps the snapshot with the highest
//! version whatever order events arrive in. A snapshot names its fields one
//! by one: nothing secret (password hash, session epoch, tokens) can reach
//! an event.
//!
//! [`AuthStore::republish_accounts`] publishes an `account.updated`
//! snapshot of every account of one organization or of all of them
//! (`constellation comms resync`), to rebuild a lost or new copy. A
//! snapshot is read and then published, never rewritten: if the account
//! changes in between, that change publishes a higher version, which wins.
//! Organizations are found through the index their items carry (see
//! `orgs`); accounts by a query of their organization's partition, a page
//! of [`REPUBLISH_BATCH`] at a time, each page committed as one outbox
//! transaction (on AWS one outbox record per event, well under
//! `MAX_TRANSACTION_WRITES`).

use constellation_core::OrgId;
use constellation_core::directory::{AccountSnapshot, events as directory};
use constellation_platform::StoreError;
use constellation_platform::events::DomainEvent;
use constellation_platform::table::{Condition, Index, Query, SortKey, Write};
use time::OffsetDateTime;

use super::accounts::StoredAccount;
use super::orgs::{ORG_INDEX_SHARDS, org_index_partition, org_key};
use super::{AuthError, AuthStore, MAX_ATTEMPTS, backoff, is_conflict, org_pk};

/// How many snapshots one republishing transaction carries.
pub const REPUBLISH_BATCH: u32 = 25;

/// How many organizations one page of the organization index returns.
const ORG_PAGE: u32 = 100;

impl StoredAccount {
    /// The account as the directory sees it: no hash, no epoch.
    pub(super) fn snapshot(&self) -> AccountSnapshot {
        let a = &self.account;
        AccountSnapshot {
            account_id: a.id.as_str().to_owned(),
            email: a.email.as_str().to_owned(),
            role: a.role.as_str().to_owned(),
            disabled: a.disabled,
            version: self.version,
        }
    }
}

impl AuthStore {
    /// The `event_type` event of `account` as it is (its version included)
    /// after the write that commits it.
    pub(super) fn account_event(
        &self,
        event_type: &str,
        account: &StoredAccount,
        now: OffsetDateTime,
    ) -> Result<DomainEvent, AuthError> {
        DomainEvent::new(event_type, &account.account.org, now, account.snapshot())
            .map_err(|e| AuthError::Store(StoreError::Invalid(e.to_string())))
    }

    /// Publishes an `account.updated` snapshot, with its current version, of
    /// every account of `org`, or of every organization when `org` is
    /// `None`; returns how many. An `org` that does not exist is an error.
    #[tracing::instrument(skip_all, fields(org = org.map(tracing::field::display)))]
    pub async fn republish_accounts(&self, org: Option<&OrgId>) -> Result<usize, AuthError> {
        let published = match org {
            Some(org) => {
                // An unknown organization (a mistyped id) fails here.
                self.load_org(org).await?;
                self.republish_org(org).await?
            }
            None => {
                let mut published = 0;
                for shard in 0..ORG_INDEX_SHARDS {
                    let mut query = Query {
                        index: Some(Index::Gsi1),
                        pk: org_index_partition(shard),
                        sort: SortKey::All,
                        descending: false,
                        limit: ORG_PAGE,
                        cursor: None,
                    };
                    loop {
                        let page = self.table.query(&query).await?;
                        for item in &page.items {
                            let org = item
                                .key
                                .pk
                                .strip_prefix("ORG#")
                                .and_then(|o| OrgId::parse(o).ok())
                                .ok_or_else(|| super::corrupt(item, "org"))?;
                            published += self.republish_org(&org).await?;
                        }
                        match page.next_cursor {
                            Some(cursor) => query.cursor = Some(cursor),
                            None => break,
                        }
                    }
                }
                published
            }
        };
        tracing::info!(published, "account snapshots republished");
        Ok(published)
    }

    /// Republishes the accounts of `org`, a page per transaction.
    async fn republish_org(&self, org: &OrgId) -> Result<usize, AuthError> {
        let mut query = Query {
            index: None,
            pk: org_pk(org),
            sort: SortKey::Prefix("ACCOUNT#".into()),
            descending: false,
            limit: REPUBLISH_BATCH,
            cursor: None,
        };
        let now = self.clock.now();
        let mut published = 0;
        loop {
            let page = self.table.query(&query).await?;
            let events = page
                .items
                .iter()
                .map(|item| {
                    let account = StoredAccount::from_item(item)?;
                    self.account_event(directory::ACCOUNT_UPDATED, &account, now)
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !events.is_empty() {
                self.commit_snapshots(org, &events).await?;
                published += events.len();
            }
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => return Ok(published),
            }
        }
    }

    /// Commits `events` through the outbox, on the condition that `org`
    /// still exists (a transaction needs one write of its own).
    async fn commit_snapshots(&self, org: &OrgId, events: &[DomainEvent]) -> Result<(), AuthError> {
        for attempt in 0..MAX_ATTEMPTS {
            let check = Write::Check {
                key: org_key(org),
                condition: Condition::Exists,
            };
            match self.outbox.commit(vec![check], events).await {
                Ok(()) => return Ok(()),
                Err(e) if is_conflict(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    backoff(attempt + 1).await;
                }
                Err(StoreError::ConditionFailed { .. }) => {
                    return Err(AuthError::Store(StoreError::Backend(anyhow::anyhow!(
                        "organization {org} has accounts but no org item"
                    ))));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Contention)
    }
}
