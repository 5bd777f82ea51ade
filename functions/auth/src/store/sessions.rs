//! Sessions: a login starts a refresh-token *family*; every refresh rotates
//! the presented token for a new one in the same family; logout, a disable,
//! or a reused token revokes the whole family.
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `ORG#<org>#FAMILY#<id>` | `FAMILY` | one login: account, active or revoked, when it started and must end |
//! | `REFRESH#<sha256>` | `REFRESH` | a refresh token, by its hash only: org, account, family, epoch, active or rotated |
//!
//! **Concurrent refreshes.** Two tabs often refresh with the same token at
//! the same moment; only one rotation can win, and treating the loser as a
//! thief would log the user out. So a token rotated less than
//! [`REFRESH_REUSE_GRACE`] ago, presented again, is answered with a fresh
//! token of its own in the same family (a sibling of the winner's), and
//! both callers keep a working session. Nothing but hashes is ever stored:
//! the winner's token is not kept in a form that could be handed out again,
//! which is why the loser gets a new one rather than the same one. After the
//! grace a rotated token is reuse, as before: the family is revoked. A
//! rotated token buys one sibling only: presented a third time, even within
//! the grace, it is reuse, so a thief replaying it cannot keep a chain of
//! their own beside the owner's (the owner's next rotation and the thief's
//! would both be siblings of one token, and the third presentation revokes
//! the family).
//!
//! **Absolute lifetime.** A family ends [`SESSION_LIFETIME`] after its
//! login however often it is refreshed; then refresh answers 401 and the
//! user logs in again. Refresh tokens never outlive their family's end.

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal};
use constellation_platform::StoreError;
use constellation_platform::table::{Condition, Item, ItemKey, Write};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{
    Account, AuditAction, AuditEvent, AuthError, AuthStore, MAX_ATTEMPTS, Session, backoff,
    is_conflict, random_hex_16, read_record, record_item,
};
use crate::client::ClientAddr;
use crate::secret::SecretToken;
use crate::signing::TokenIssuer;

/// How long a refresh token lives (unless its family ends first).
pub const REFRESH_TOKEN_TTL: Duration = Duration::days(30);
/// How long a session lasts from its login, however often it is refreshed.
pub const SESSION_LIFETIME: Duration = Duration::days(90);
/// How long after its rotation a refresh token may be presented again
/// (a concurrent refresh) before that counts as reuse.
pub const REFRESH_REUSE_GRACE: Duration = Duration::seconds(10);

/// Where a refresh token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TokenStatus {
    /// Not used yet.
    Active,
    /// Exchanged for a newer token.
    Rotated,
}

/// Where a family (one login) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FamilyStatus {
    /// Its tokens may be refreshed.
    Active,
    /// Ended: by logout, a disable, or reuse.
    Revoked,
}

/// A stored refresh token (found by its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshRecord {
    org: OrgId,
    account: AccountId,
    family: String,
    status: TokenStatus,
    /// The account's session epoch when issued; a disable bumps it.
    epoch: i64,
    #[serde(with = "time::serde::rfc3339")]
    issued_at: OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    rotated_at: Option<OffsetDateTime>,
    /// Whether this rotated token already bought its one extra token within
    /// the grace: a second presentation is reuse, so a thief replaying it
    /// cannot grow a chain of their own beside the owner's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    grace_used: bool,
}

/// A stored family.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FamilyRecord {
    account: AccountId,
    status: FamilyStatus,
    /// When its login happened.
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// When it ends whatever happens; families from before the absolute
    /// lifetime existed end [`SESSION_LIFETIME`] after `created_at`.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    ends_at: Option<OffsetDateTime>,
}

impl FamilyRecord {
    fn ends_at(&self) -> OffsetDateTime {
        self.ends_at.unwrap_or(self.created_at + SESSION_LIFETIME)
    }
}

pub(super) fn family_key(org: &OrgId, family: &str) -> ItemKey {
    ItemKey::new(format!("ORG#{org}#FAMILY#{family}"), "FAMILY")
}

fn refresh_key(token: &SecretToken) -> ItemKey {
    ItemKey::new(format!("REFRESH#{}", token.digest()), "REFRESH")
}

/// A new active refresh token of `family`, living until `ends_at` at most.
fn refresh_item(
    token: &SecretToken,
    account: &Account,
    family: &str,
    epoch: i64,
    now: OffsetDateTime,
    ends_at: OffsetDateTime,
) -> Result<Item, AuthError> {
    let record = RefreshRecord {
        org: account.org.clone(),
        account: account.id.clone(),
        family: family.to_owned(),
        status: TokenStatus::Active,
        epoch,
        issued_at: now,
        rotated_at: None,
        grace_used: false,
    };
    let mut item = record_item(refresh_key(token), &record)?;
    item.expires_at = Some((now + REFRESH_TOKEN_TTL).min(ends_at));
    Ok(item)
}

/// What a presented refresh token may do.
enum Presented {
    /// Unused: rotate it.
    Fresh,
    /// Rotated within the grace: a concurrent refresh, answered with a sibling.
    WithinGrace,
    /// Rotated before the grace: reuse.
    Reused,
}

impl AuthStore {
    /// Exchanges a refresh token for a new session in the same family.
    ///
    /// The presented token is rotated. Presented again within
    /// [`REFRESH_REUSE_GRACE`] of its rotation (two tabs refreshing at once)
    /// it is answered with another new token of the family; later, it is
    /// reuse and revokes the whole family. A family ends
    /// [`SESSION_LIFETIME`] after its login.
    #[tracing::instrument(skip_all, fields(org, account))]
    pub async fn refresh(
        &self,
        token: &SecretToken,
        ip: &ClientAddr,
    ) -> Result<Session, AuthError> {
        let issuer = self.token_issuer().await?;
        let key = refresh_key(token);
        for attempt in 0..MAX_ATTEMPTS {
            let Some(item) = self.table.get(&key).await? else {
                return Err(AuthError::InvalidRefreshToken);
            };
            let record: RefreshRecord = read_record(&item)?;
            let span = tracing::Span::current();
            span.record("org", tracing::field::display(&record.org));
            span.record("account", tracing::field::display(&record.account));
            let now = self.clock.now();
            let presented = match (record.status, record.rotated_at) {
                (TokenStatus::Active, _) => Presented::Fresh,
                (TokenStatus::Rotated, Some(at))
                    if now < at + REFRESH_REUSE_GRACE && !record.grace_used =>
                {
                    Presented::WithinGrace
                }
                (TokenStatus::Rotated, _) => Presented::Reused,
            };
            if let Presented::Reused = presented {
                self.on_reuse(&record, ip).await?;
                return Err(AuthError::InvalidRefreshToken);
            }
            let fam_key = family_key(&record.org, &record.family);
            let Some(family_item) = self.table.get(&fam_key).await? else {
                return Err(AuthError::InvalidRefreshToken);
            };
            let family: FamilyRecord = read_record(&family_item)?;
            if family.status != FamilyStatus::Active {
                return Err(AuthError::InvalidRefreshToken);
            }
            let ends_at = family.ends_at();
            if now >= ends_at {
                tracing::info!("refresh refused: the session reached its absolute lifetime");
                return Err(AuthError::InvalidRefreshToken);
            }
            let stored = self.load_account(&record.org, &record.account).await?;
            let Some(stored) = stored.filter(|s| !s.account.disabled && s.epoch == record.epoch)
            else {
                self.revoke_family(&record.org, &record.family).await?;
                return Err(AuthError::InvalidRefreshToken);
            };

            let next = SecretToken::generate();
            let mut renewed = family_item.clone();
            renewed.version = family_item.version + 1;
            renewed.expires_at = Some((now + REFRESH_TOKEN_TTL).min(ends_at));
            let presented_write = match presented {
                Presented::Fresh => {
                    let rotated = RefreshRecord {
                        status: TokenStatus::Rotated,
                        rotated_at: Some(now),
                        ..record.clone()
                    };
                    let mut rotated = record_item(key.clone(), &rotated)?;
                    rotated.expires_at = item.expires_at;
                    rotated.version = item.version + 1;
                    Write::Put {
                        item: rotated,
                        condition: Condition::VersionEquals(item.version),
                    }
                }
                // The presented token stays rotated (its grace counting from
                // the first rotation) and spends its one extra token.
                Presented::WithinGrace | Presented::Reused => {
                    let spent = RefreshRecord {
                        grace_used: true,
                        ..record.clone()
                    };
                    let mut spent = record_item(key.clone(), &spent)?;
                    spent.expires_at = item.expires_at;
                    spent.version = item.version + 1;
                    Write::Put {
                        item: spent,
                        condition: Condition::VersionEquals(item.version),
                    }
                }
            };
            let writes = [
                presented_write,
                Write::Put {
                    item: refresh_item(
                        &next,
                        &stored.account,
                        &record.family,
                        record.epoch,
                        now,
                        ends_at,
                    )?,
                    condition: Condition::NotExists,
                },
                // Conditioned on the family's version: a concurrent revoke
                // (logout, reuse, disable) wins over this refresh.
                Write::Put {
                    item: renewed,
                    condition: Condition::VersionEquals(family_item.version),
                },
            ];
            match self.table.transact(&writes).await {
                Ok(()) => {
                    if let Presented::WithinGrace = presented {
                        tracing::info!(
                            "rotated refresh token presented within the grace; new token issued"
                        );
                    } else {
                        tracing::info!("refresh token rotated");
                    }
                    return Ok(self.issue(issuer, stored.account, next, now));
                }
                // Someone rotated, refreshed or revoked concurrently: read again.
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) if is_conflict(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    backoff(attempt + 1).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Contention)
    }

    async fn on_reuse(&self, record: &RefreshRecord, ip: &ClientAddr) -> Result<(), AuthError> {
        let revoked = self.revoke_family(&record.org, &record.family).await?;
        tracing::warn!(
            org = %record.org,
            account = %record.account,
            family = %record.family,
            "security: a rotated refresh token was presented again; its session family is revoked"
        );
        if revoked {
            self.audit(
                Some(&record.org),
                AuditEvent::new(AuditAction::RefreshReuse)
                    .target(&record.account)
                    .ip(ip)
                    .detail(format!("family {} revoked", record.family)),
            )
            .await;
        }
        Ok(())
    }

    /// Ends the session the refresh token belongs to (its whole family).
    /// Unknown tokens and other accounts' tokens change nothing.
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account))]
    pub async fn logout(
        &self,
        principal: &Principal,
        token: &SecretToken,
        ip: &ClientAddr,
    ) -> Result<(), AuthError> {
        let Some(item) = self.table.get(&refresh_key(token)).await? else {
            return Ok(());
        };
        let record: RefreshRecord = read_record(&item)?;
        if record.account != principal.account || record.org != principal.org {
            return Ok(());
        }
        if self.revoke_family(&record.org, &record.family).await? {
            self.audit(
                Some(&record.org),
                AuditEvent::new(AuditAction::Logout)
                    .actor(&principal.account)
                    .target(&record.account)
                    .ip(ip),
            )
            .await;
        }
        Ok(())
    }

    /// Marks a family revoked; returns whether this call revoked it.
    pub(super) async fn revoke_family(&self, org: &OrgId, family: &str) -> Result<bool, AuthError> {
        let key = family_key(org, family);
        for _ in 0..MAX_ATTEMPTS {
            let Some(item) = self.table.get(&key).await? else {
                return Ok(false);
            };
            let record: FamilyRecord = read_record(&item)?;
            if record.status == FamilyStatus::Revoked {
                return Ok(false);
            }
            let revoked = FamilyRecord {
                status: FamilyStatus::Revoked,
                ..record
            };
            let mut next = record_item(key.clone(), &revoked)?;
            next.expires_at = item.expires_at;
            next.version = item.version + 1;
            match self
                .table
                .put(&next, Condition::VersionEquals(item.version))
                .await
            {
                Ok(()) => return Ok(true),
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Contention)
    }

    /// Adds a new family (a login at `now`) with its first refresh token to `writes`.
    pub(super) fn session_writes(
        &self,
        account: &Account,
        epoch: i64,
        now: OffsetDateTime,
        writes: &mut Vec<Write>,
    ) -> Result<SecretToken, AuthError> {
        let family = random_hex_16();
        let token = SecretToken::generate();
        let ends_at = now + SESSION_LIFETIME;
        let record = FamilyRecord {
            account: account.id.clone(),
            status: FamilyStatus::Active,
            created_at: now,
            ends_at: Some(ends_at),
        };
        let mut family_item = record_item(family_key(&account.org, &family), &record)?;
        family_item.expires_at = Some(now + REFRESH_TOKEN_TTL);
        writes.push(Write::Put {
            item: family_item,
            condition: Condition::NotExists,
        });
        writes.push(Write::Put {
            item: refresh_item(&token, account, &family, epoch, now, ends_at)?,
            condition: Condition::NotExists,
        });
        Ok(token)
    }

    /// The token issuer, loaded on the first call (on AWS). A flow that
    /// ends by signing a token takes it before its first write, so that a
    /// failed load leaves nothing written. A throttled or unreachable
    /// Secrets Manager is a 503; anything else (no key yet, a key the public
    /// set lacks, access denied) will not pass by itself: a 500, logged as an
    /// error with the fix.
    pub(super) async fn token_issuer(&self) -> Result<&TokenIssuer, AuthError> {
        self.issuer.get().await.map_err(|e| {
            if constellation_platform::secrets::is_transient(e.as_ref()) {
                AuthError::Store(StoreError::Unavailable(e))
            } else {
                tracing::error!(
                    error = format!("{e:#}"),
                    "the signing key cannot be loaded: no token can be issued (if no key \
                     exists yet, run `constellation keys rotate --backend aws`)"
                );
                AuthError::Store(StoreError::Backend(e))
            }
        })
    }

    pub(super) fn issue(
        &self,
        issuer: &TokenIssuer,
        account: Account,
        refresh_token: SecretToken,
        now: OffsetDateTime,
    ) -> Session {
        let access = issuer.issue(&account.principal(), now);
        Session {
            account,
            access,
            refresh_token,
        }
    }
}
