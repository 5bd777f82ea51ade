//! The security audit log: what happened, who did it, to whom, from where.
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `ORG#<org>#AUDIT` | `<ns timestamp>#<seq>#<id>` | a security event (TTL 90 days), newest last |
//! | `INSTALLATION#AUDIT` | `<ns timestamp>#<seq>#<id>` | installation-wide events (key rotation) |
//!
//! Recording never fails the operation it records: a failure is logged.

use std::sync::atomic::{AtomicU64, Ordering};

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_platform::table::{Condition, Item, ItemKey, Query, SortKey};
use constellation_platform::{StoreError, Table};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::{AuthError, AuthStore, random_hex_16, read_record, record_item};

/// How long audit events are kept.
pub const AUDIT_TTL: Duration = Duration::days(90);
fn audit_pk(org: Option<&OrgId>) -> String {
    match org {
        Some(org) => format!("ORG#{org}#AUDIT"),
        None => "INSTALLATION#AUDIT".to_owned(),
    }
}

/// What happened, in the audit log (stored and shown in snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// An organization and its owner were created.
    Register,
    /// A login succeeded.
    LoginSucceeded,
    /// A login failed (wrong password, disabled account, or locked out).
    LoginFailed,
    /// Failed logins reached the lockout threshold.
    Lockout,
    /// A rotated refresh token was presented again; its family was revoked.
    RefreshReuse,
    /// A session was ended by logout.
    Logout,
    /// An account's role changed.
    RoleChanged,
    /// An account was disabled.
    AccountDisabled,
    /// An account was re-enabled.
    AccountEnabled,
    /// An invite was created.
    InviteCreated,
    /// An invite was accepted.
    InviteAccepted,
    /// An invite was revoked.
    InviteRevoked,
    /// The pending invites were listed.
    InvitesListed,
    /// The token signing key was rotated.
    KeyRotated,
}

impl AuditAction {
    /// The stable name stored and returned.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::Lockout => "lockout",
            Self::RefreshReuse => "refresh_reuse",
            Self::Logout => "logout",
            Self::RoleChanged => "role_changed",
            Self::AccountDisabled => "account_disabled",
            Self::AccountEnabled => "account_enabled",
            Self::InviteCreated => "invite_created",
            Self::InviteAccepted => "invite_accepted",
            Self::InviteRevoked => "invite_revoked",
            Self::InvitesListed => "invites_listed",
            Self::KeyRotated => "key_rotated",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Register,
            Self::LoginSucceeded,
            Self::LoginFailed,
            Self::Lockout,
            Self::RefreshReuse,
            Self::Logout,
            Self::RoleChanged,
            Self::AccountDisabled,
            Self::AccountEnabled,
            Self::InviteCreated,
            Self::InviteAccepted,
            Self::InviteRevoked,
            Self::InvitesListed,
            Self::KeyRotated,
        ]
        .into_iter()
        .find(|a| a.as_str() == raw)
    }
}

/// A security event to record. Never put a secret in `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// What happened.
    pub action: AuditAction,
    /// Who did it, when known.
    pub actor: Option<AccountId>,
    /// Whom it was done to, when it was done to an account.
    pub target: Option<AccountId>,
    /// The client's address, when known.
    pub ip: Option<String>,
    /// A short, secret-free description (`member -> staff`, a key id...).
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event with nothing but its action.
    pub fn new(action: AuditAction) -> Self {
        Self {
            action,
            actor: None,
            target: None,
            ip: None,
            detail: None,
        }
    }

    /// Sets the actor.
    pub fn actor(mut self, id: &AccountId) -> Self {
        self.actor = Some(id.clone());
        self
    }

    /// Sets the target.
    pub fn target(mut self, id: &AccountId) -> Self {
        self.target = Some(id.clone());
        self
    }

    /// Sets the client address.
    pub fn ip(mut self, ip: impl ToString) -> Self {
        self.ip = Some(ip.to_string());
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// A recorded audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its id.
    pub id: String,
    /// When it happened.
    pub time: OffsetDateTime,
    /// The event.
    pub event: AuditEvent,
}

/// An audit item's attributes.
#[derive(Serialize, Deserialize)]
pub(super) struct AuditRecord {
    action: AuditAction,
    #[serde(with = "time::serde::rfc3339")]
    time: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actor: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<AccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl AuthStore {
    /// Records a security event in `org`'s audit log, or in the
    /// installation's when `org` is `None` (key rotation).
    pub async fn record_audit(
        &self,
        org: Option<&OrgId>,
        event: AuditEvent,
    ) -> Result<(), StoreError> {
        append_audit(self.table.as_ref(), self.clock.now(), org, event).await
    }

    /// Records an event; a failure is logged, never fails the operation.
    pub(super) async fn audit(&self, org: Option<&OrgId>, event: AuditEvent) {
        let action = event.action.as_str();
        if let Err(e) = self.record_audit(org, event).await {
            tracing::error!(error = format!("{e:#}"), action, "audit event not recorded");
        }
    }

    /// One page of an audit log, newest first, without an access check
    /// (`None`: the installation's log).
    pub async fn read_audit(
        &self,
        org: Option<&OrgId>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<AuditEntry>, Option<String>), AuthError> {
        let page = self
            .table
            .query(&Query {
                index: None,
                pk: audit_pk(org),
                sort: SortKey::All,
                descending: true,
                limit,
                cursor,
            })
            .await?;
        let entries = page
            .items
            .iter()
            .map(audit_entry)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((entries, page.next_cursor))
    }

    /// One page of the caller's organization's audit log, newest first (admins and owners).
    #[tracing::instrument(skip_all, fields(org = %principal.org, account = %principal.account))]
    pub async fn audit_log(
        &self,
        principal: &Principal,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<AuditEntry>, Option<String>), AuthError> {
        self.authorize(principal, Role::Admin).await?;
        self.read_audit(Some(&principal.org), limit, cursor).await
    }
}

static AUDIT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Appends a security event to `org`'s audit log (the installation's when
/// `org` is `None`), stamped `now` and kept for [`AUDIT_TTL`].
#[tracing::instrument(skip_all, fields(action = event.action.as_str()))]
pub async fn append_audit(
    table: &dyn Table,
    now: OffsetDateTime,
    org: Option<&OrgId>,
    event: AuditEvent,
) -> Result<(), StoreError> {
    // Time first; a per-process sequence orders events stamped alike (a
    // coarse or manual clock); the random part keeps keys unique across processes.
    let seq = AUDIT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let sk = format!(
        "{:020}#{seq:016x}#{}",
        now.unix_timestamp_nanos().max(0),
        random_hex_16()
    );
    let record = AuditRecord {
        action: event.action,
        time: now,
        actor: event.actor,
        target: event.target,
        ip: event.ip,
        detail: event.detail,
    };
    let mut item = record_item(ItemKey::new(audit_pk(org), sk), &record).map_err(|e| match e {
        AuthError::Store(e) => e,
        other => StoreError::Backend(anyhow::anyhow!("audit record: {other}")),
    })?;
    item.expires_at = Some(now + AUDIT_TTL);
    table.put(&item, Condition::NotExists).await
}

fn audit_entry(item: &Item) -> Result<AuditEntry, AuthError> {
    let id = item
        .key
        .sk
        .rsplit_once('#')
        .map(|(_, id)| id.to_owned())
        .ok_or_else(|| super::corrupt(item, "id"))?;
    let r: AuditRecord = read_record(item)?;
    Ok(AuditEntry {
        id,
        time: r.time,
        event: AuditEvent {
            action: r.action,
            actor: r.actor,
            target: r.target,
            ip: r.ip,
            detail: r.detail,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_actions_round_trip() {
        for a in [
            AuditAction::Register,
            AuditAction::LoginFailed,
            AuditAction::RefreshReuse,
            AuditAction::InviteRevoked,
            AuditAction::KeyRotated,
        ] {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_value(a).ok(),
                Some(serde_json::Value::from(a.as_str())),
                "stored as shown"
            );
        }
        assert_eq!(AuditAction::parse("nope"), None);
    }
}
