//! Invites: an admin or owner invites an email with a role; the invitee
//! accepts once with the token, which creates the account and logs it in.
//!
//! Two items per pending invite, written and removed together:
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `INVITE#<sha256>` | `INVITE` | the lookup by token hash: org and invite id |
//! | `ORG#<org>` | `INVITE#<id>` | the invite: email, role, inviter, times, token hash |
//!
//! The token reaches neither: it is handed out once and only its hash is
//! kept. The organization's items are what listing and revoking read; the
//! lookup is how an invitee, who has no organization yet, finds them.
//!
//! An invite carries its inviter's authority, which can be lost before it is
//! accepted: accepting re-checks that the inviter still exists, is enabled
//! and may still grant the role, and the transaction that creates the
//! account is conditioned on the inviter's account version, so a concurrent
//! demotion or disable cannot slip between the check and the write. The
//! new account's `account.created` commits in that same transaction.

use constellation_core::OrgId;
use constellation_core::ValidationError;
use constellation_core::auth::{AccountId, Email, Password, Principal, Role};
use constellation_core::directory::events as directory;
use constellation_platform::StoreError;
use constellation_platform::table::{Condition, Item, ItemKey, Query, SortKey, Write};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::accounts::{Account, StoredAccount, account_key, email_item, email_key};
use super::orgs::OrgRecord;
use super::{
    AuditAction, AuditEvent, AuthError, AuthStore, MAX_ATTEMPTS, Session, backoff, is_conflict,
    new_account_id, org_pk, read_record, record_item,
};
use crate::client::ClientAddr;
use crate::secret::SecretToken;

/// How long an invite may be accepted.
pub const INVITE_TTL: Duration = Duration::days(7);

/// An invite's id (32 lowercase hex digits); unlike its token, not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InviteId(String);

impl InviteId {
    fn generate() -> Self {
        let mut raw = [0_u8; 16];
        rand::rng().fill_bytes(&mut raw);
        Self(hex::encode(raw))
    }

    /// Parses an id as a client presents it (the field is `id`).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = raw.len() == 32
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new("id", "is not an invite id"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InviteId {
    type Error = ValidationError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<InviteId> for String {
    fn from(id: InviteId) -> Self {
        id.0
    }
}

impl std::fmt::Display for InviteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A created invite: the one-time token (only its hash is stored) and its expiry.
#[derive(Debug)]
pub struct Invite {
    /// Its id, to list or revoke it by.
    pub id: InviteId,
    /// Hand this to the invitee.
    pub token: SecretToken,
    /// When it stops being accepted.
    pub expires_at: OffsetDateTime,
}

/// A pending invite, as admins list it (never with its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInvite {
    /// Its id.
    pub id: InviteId,
    /// Whom it invites.
    pub email: Email,
    /// The role it grants.
    pub role: Role,
    /// Who created it.
    pub invited_by: AccountId,
    /// When.
    pub created_at: OffsetDateTime,
    /// When it stops being accepted.
    pub expires_at: OffsetDateTime,
}

/// The invite as stored in its organization's partition (its id is the sort key).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InviteRecord {
    email: Email,
    role: Role,
    invited_by: AccountId,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// The expiry to the nanosecond (`expires_at`, the table's TTL, is
    /// reserved to the adapters and kept in whole seconds).
    #[serde(with = "time::serde::rfc3339")]
    valid_until: OffsetDateTime,
    /// The SHA-256 of the token, to remove the lookup with the invite.
    token_digest: String,
}

/// The lookup by token hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InviteLookup {
    org: OrgId,
    id: InviteId,
}

fn invite_key(org: &OrgId, id: &InviteId) -> ItemKey {
    ItemKey::new(org_pk(org), format!("INVITE#{id}"))
}

fn lookup_key_of_digest(digest: &str) -> ItemKey {
    ItemKey::new(format!("INVITE#{digest}"), "INVITE")
}

/// A stored invite with the versions of both its items.
struct Stored {
    org: OrgId,
    id: InviteId,
    record: InviteRecord,
    version: u64,
}

impl Stored {
    fn pending(&self) -> PendingInvite {
        let r = &self.record;
        PendingInvite {
            id: self.id.clone(),
            email: r.email.clone(),
            role: r.role,
            invited_by: r.invited_by.clone(),
            created_at: r.created_at,
            expires_at: r.valid_until,
        }
    }

    fn from_item(org: &OrgId, item: &Item) -> Result<Self, AuthError> {
        let id = item
            .key
            .sk
            .strip_prefix("INVITE#")
            .and_then(|i| InviteId::parse(i).ok())
            .ok_or_else(|| super::corrupt(item, "id"))?;
        let record: InviteRecord = read_record(item)?;
        Ok(Self {
            org: org.clone(),
            id,
            record,
            version: item.version,
        })
    }
}

impl AuthStore {
    /// Invites `email` into the caller's organization with `role` (at most
    /// the caller's own). Only admins and owners invite.
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account, role = %role))]
    pub async fn create_invite(
        &self,
        principal: &Principal,
        email: &Email,
        role: Role,
        ip: &ClientAddr,
    ) -> Result<Invite, AuthError> {
        let actor = self.authorize(principal, Role::Admin).await?;
        if role > actor.account.role {
            return Err(AuthError::Forbidden(
                "you cannot invite someone with a role above your own",
            ));
        }
        let now = self.clock.now();
        let token = SecretToken::generate();
        let id = InviteId::generate();
        let expires_at = now + INVITE_TTL;
        let record = InviteRecord {
            email: email.clone(),
            role,
            invited_by: actor.account.id.clone(),
            created_at: now,
            valid_until: expires_at,
            token_digest: token.digest(),
        };
        let mut invite = record_item(invite_key(&principal.org, &id), &record)?;
        invite.expires_at = Some(expires_at);
        let lookup = InviteLookup {
            org: principal.org.clone(),
            id: id.clone(),
        };
        let mut lookup = record_item(lookup_key_of_digest(&record.token_digest), &lookup)?;
        lookup.expires_at = Some(expires_at);
        self.table
            .transact(&[
                Write::Put {
                    item: invite,
                    condition: Condition::NotExists,
                },
                Write::Put {
                    item: lookup,
                    condition: Condition::NotExists,
                },
            ])
            .await?;
        tracing::info!(invite = %id, "invite created");
        self.audit(
            Some(&principal.org),
            AuditEvent::new(AuditAction::InviteCreated)
                .actor(&actor.account.id)
                .ip(ip)
                .detail(format!("invite {id}, role {role}")),
        )
        .await;
        Ok(Invite {
            id,
            token,
            expires_at,
        })
    }

    /// One page of the caller's organization's pending invites, in id order
    /// (admins and owners). Accepted, revoked and expired invites are gone.
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account))]
    pub async fn list_invites(
        &self,
        principal: &Principal,
        limit: u32,
        cursor: Option<String>,
        ip: &ClientAddr,
    ) -> Result<(Vec<PendingInvite>, Option<String>), AuthError> {
        let actor = self.authorize(principal, Role::Admin).await?;
        let page = self
            .table
            .query(&Query {
                index: None,
                pk: org_pk(&principal.org),
                sort: SortKey::Prefix("INVITE#".into()),
                descending: false,
                limit,
                cursor,
            })
            .await?;
        let invites = page
            .items
            .iter()
            .map(|i| Stored::from_item(&principal.org, i).map(|s| s.pending()))
            .collect::<Result<Vec<_>, _>>()?;
        self.audit(
            Some(&principal.org),
            AuditEvent::new(AuditAction::InvitesListed)
                .actor(&actor.account.id)
                .ip(ip)
                .detail(format!("{} pending", invites.len())),
        )
        .await;
        Ok((invites, page.next_cursor))
    }

    /// Revokes a pending invite of the caller's organization (admins and
    /// owners; not an invite for a role above the caller's). Its token no
    /// longer works. Another organization's invite, or an unknown one, is
    /// [`AuthError::InviteNotFound`].
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account, invite = %id))]
    pub async fn revoke_invite(
        &self,
        principal: &Principal,
        id: &InviteId,
        ip: &ClientAddr,
    ) -> Result<(), AuthError> {
        for attempt in 0..MAX_ATTEMPTS {
            let actor = self.authorize(principal, Role::Admin).await?;
            let Some(item) = self.table.get(&invite_key(&principal.org, id)).await? else {
                return Err(AuthError::InviteNotFound);
            };
            let stored = Stored::from_item(&principal.org, &item)?;
            let role = stored.record.role;
            if role > actor.account.role {
                return Err(AuthError::Forbidden(
                    "you cannot revoke an invite for a role above your own",
                ));
            }
            let writes = [
                Write::Delete {
                    key: invite_key(&stored.org, &stored.id),
                    condition: Condition::VersionEquals(stored.version),
                },
                Write::Delete {
                    key: lookup_key_of_digest(&stored.record.token_digest),
                    condition: Condition::None,
                },
            ];
            match self.table.transact(&writes).await {
                Ok(()) => {
                    tracing::info!("invite revoked");
                    self.audit(
                        Some(&principal.org),
                        AuditEvent::new(AuditAction::InviteRevoked)
                            .actor(&actor.account.id)
                            .ip(ip)
                            .detail(format!("invite {id}, role {role}")),
                    )
                    .await;
                    return Ok(());
                }
                // Accepted or revoked meanwhile: the next read says which.
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) if is_conflict(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    backoff(attempt + 1).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Contention)
    }

    /// Reads the invite a token names, if it is still pending.
    async fn pending_invite(&self, token: &SecretToken) -> Result<(Item, Stored), AuthError> {
        let lookup_item = self
            .table
            .get(&lookup_key_of_digest(&token.digest()))
            .await?
            .ok_or(AuthError::InvalidInvite)?;
        let lookup: InviteLookup = read_record(&lookup_item)?;
        let item = self
            .table
            .get(&invite_key(&lookup.org, &lookup.id))
            .await?
            .ok_or(AuthError::InvalidInvite)?;
        Ok((lookup_item, Stored::from_item(&lookup.org, &item)?))
    }

    /// The inviter's stored account, if it may still grant `role`.
    async fn inviter_with_authority(&self, invite: &Stored) -> Result<StoredAccount, AuthError> {
        let role = invite.record.role;
        let inviter = self
            .load_account(&invite.org, &invite.record.invited_by)
            .await?
            .filter(|a| {
                !a.account.disabled && a.account.role.allows(Role::Admin) && role <= a.account.role
            });
        inviter.ok_or_else(|| {
            tracing::warn!(
                org = %invite.org,
                invite = %invite.id,
                "invite refused: its inviter is gone, disabled, or may no longer grant its role"
            );
            AuthError::Forbidden("the inviter can no longer grant this invite")
        })
    }

    /// Accepts an invite: creates the account in the inviting organization
    /// and consumes the invite in the same transaction, then logs it in. The
    /// inviter must still be enabled and allowed to grant the role.
    #[tracing::instrument(skip_all, fields(org, account))]
    pub async fn accept_invite(
        &self,
        token: &SecretToken,
        password: &str,
        ip: &ClientAddr,
    ) -> Result<Session, AuthError> {
        let issuer = self.token_issuer().await?;
        let (_, first) = self.pending_invite(token).await?;
        self.inviter_with_authority(&first).await?;
        let email = first.record.email.clone();
        let password = Password::new_for(password, &email)?;
        let password_hash = self.hasher.hash(&password).await?;
        let id = new_account_id();
        let span = tracing::Span::current();
        span.record("org", tracing::field::display(&first.org));
        span.record("account", tracing::field::display(&id));

        for attempt in 0..MAX_ATTEMPTS {
            // Everything is read again: the invite and its inviter may have
            // changed while the password was hashed or a write was retried.
            let (lookup, invite) = self.pending_invite(token).await?;
            let inviter = self.inviter_with_authority(&invite).await?;
            let (org, role) = (invite.org.clone(), invite.record.role);
            let now = self.clock.now();
            let stored = StoredAccount {
                account: Account {
                    id: id.clone(),
                    org: org.clone(),
                    email: email.clone(),
                    role,
                    disabled: false,
                    created_at: now,
                },
                password_hash: password_hash.clone(),
                epoch: 0,
                version: 1,
            };
            let mut writes = vec![
                Write::Delete {
                    key: lookup.key.clone(),
                    condition: Condition::VersionEquals(lookup.version),
                },
                Write::Delete {
                    key: invite_key(&org, &invite.id),
                    condition: Condition::VersionEquals(invite.version),
                },
                Write::Check {
                    key: account_key(&org, &inviter.account.id),
                    condition: Condition::VersionEquals(inviter.version),
                },
                Write::Put {
                    item: email_item(&stored.account)?,
                    condition: Condition::NotExists,
                },
                Write::Put {
                    item: stored.to_item()?,
                    condition: Condition::NotExists,
                },
            ];
            if role == Role::Owner {
                let (org_item, record) = self.load_org(&org).await?;
                let owners = record.owners + 1;
                writes.push(OrgRecord { owners, ..record }.put_over(&org_item)?);
            }
            let refresh = self.session_writes(&stored.account, 0, now, &mut writes)?;
            let created = self.account_event(directory::ACCOUNT_CREATED, &stored, now)?;
            match self.outbox.commit(writes, &[created]).await {
                Ok(()) => {
                    tracing::info!(invite = %invite.id, "invite accepted");
                    self.audit(
                        Some(&org),
                        AuditEvent::new(AuditAction::InviteAccepted)
                            .actor(&id)
                            .target(&id)
                            .ip(ip)
                            .detail(format!("invite {}, role {role}", invite.id)),
                    )
                    .await;
                    return Ok(self.issue(issuer, stored.account, refresh, now));
                }
                Err(StoreError::ConditionFailed { .. }) => {
                    // The email claim is final; anything else (the invite
                    // consumed, the inviter changed, the owner count moved)
                    // is decided by the next round's reads.
                    if self.table.get(&email_key(&email)).await?.is_some() {
                        return Err(AuthError::EmailTaken);
                    }
                }
                Err(e) if is_conflict(&e) && attempt + 1 < MAX_ATTEMPTS => {
                    backoff(attempt + 1).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AuthError::Contention)
    }
}
