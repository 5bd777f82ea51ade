//! The request and response bodies of the auth contract: what a client
//! sends (strict: unknown fields are refused) and what it is shown (never
//! a password hash, and a token only in the response that issues it).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use super::schemas;
use crate::store::{Account, AuditEntry, PendingInvite, Session};

/// `POST /v1/auth/register`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationForCreate {
    /// The organization's name, 1-100 characters.
    #[schema(schema_with = schemas::organization)]
    pub organization: String,
    /// The owner's email (normalised: trimmed, lowercased).
    #[schema(schema_with = schemas::email)]
    pub email: String,
    /// 12-128 characters, not the email, not a common password.
    #[schema(schema_with = schemas::new_password)]
    pub password: String,
}

/// `POST /v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginForCreate {
    /// Email.
    #[schema(schema_with = schemas::email)]
    pub email: String,
    /// Password.
    #[schema(schema_with = schemas::presented_password)]
    pub password: String,
}

/// `POST /v1/auth/refresh`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshForCreate {
    /// The refresh token of the latest token response.
    #[schema(schema_with = schemas::secret_token)]
    pub refresh_token: String,
}

/// `POST /v1/auth/logout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutForCreate {
    /// Any refresh token of the session to end.
    #[schema(schema_with = schemas::secret_token)]
    pub refresh_token: String,
}

/// `POST /v1/auth/invites`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteForCreate {
    /// Whom to invite.
    #[schema(schema_with = schemas::email)]
    pub email: String,
    /// `owner`, `admin`, `staff` or `member`; at most the inviter's own role.
    #[schema(schema_with = schemas::role_field)]
    pub role: String,
}

/// `POST /v1/auth/accept-invite`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteAcceptance {
    /// The invite token.
    #[schema(schema_with = schemas::secret_token)]
    pub invite_token: String,
    /// The new account's password.
    #[schema(schema_with = schemas::new_password)]
    pub password: String,
}

/// `PATCH /v1/auth/accounts/{id}`: at least one field (documented as
/// [`schemas::AccountPatchSchema`], which says so).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountForPatch {
    /// The new role.
    pub role: Option<String>,
    /// Disable (true) or re-enable (false).
    pub disabled: Option<bool>,
}

/// An account, as `me` and token responses show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// Account id.
    #[schema(schema_with = schemas::id)]
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Organization id.
    pub org: String,
    /// Role.
    #[schema(schema_with = schemas::role_field)]
    pub role: String,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            email: a.email.to_string(),
            org: a.org.to_string(),
            role: a.role.to_string(),
        }
    }
}

/// An account, as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDetail {
    /// Account id.
    #[schema(schema_with = schemas::id)]
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Organization id.
    pub org: String,
    /// Role.
    #[schema(schema_with = schemas::role_field)]
    pub role: String,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Creation time (RFC 3339).
    #[schema(schema_with = schemas::time)]
    pub created_at: String,
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl From<&Account> for AccountDetail {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            email: a.email.to_string(),
            org: a.org.to_string(),
            role: a.role.to_string(),
            disabled: a.disabled,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// One page of accounts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    /// Accounts in id order.
    pub items: Vec<AccountDetail>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A session's tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (a JWT, EdDSA-signed).
    pub access_token: String,
    /// The refresh token: opaque, one use (a second use within 10 s of the
    /// first, as from two tabs, gets its own new token), 30 days, and never
    /// beyond 90 days from the login.
    #[schema(schema_with = schemas::secret_token)]
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(schema_with = schemas::bearer_type)]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Who logged in.
    pub account: AccountView,
}

impl From<&Session> for TokenResponse {
    fn from(s: &Session) -> Self {
        Self {
            access_token: s.access.token.clone(),
            refresh_token: s.refresh_token.expose().to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: s.access.expires_in,
            account: AccountView::from(&s.account),
        }
    }
}

/// A created invite.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteView {
    /// Its id, to revoke it by.
    #[schema(schema_with = schemas::id)]
    pub id: String,
    /// Hand this to the invitee; it works once.
    #[schema(schema_with = schemas::secret_token)]
    pub invite_token: String,
    /// When it expires (RFC 3339).
    #[schema(schema_with = schemas::time)]
    pub expires_at: String,
}

/// A pending invite (its token is never shown again).
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingInviteView {
    /// Invite id.
    #[schema(schema_with = schemas::id)]
    pub id: String,
    /// Whom it invites.
    pub email: String,
    /// The role it grants.
    #[schema(schema_with = schemas::role_field)]
    pub role: String,
    /// The account that created it.
    #[schema(schema_with = schemas::id)]
    pub invited_by: String,
    /// When it was created (RFC 3339).
    #[schema(schema_with = schemas::time)]
    pub created_at: String,
    /// When it stops being accepted (RFC 3339).
    #[schema(schema_with = schemas::time)]
    pub expires_at: String,
}

impl From<&PendingInvite> for PendingInviteView {
    fn from(i: &PendingInvite) -> Self {
        Self {
            id: i.id.to_string(),
            email: i.email.to_string(),
            role: i.role.to_string(),
            invited_by: i.invited_by.to_string(),
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
        }
    }
}

/// One page of pending invites.
#[derive(Debug, Serialize, ToSchema)]
pub struct InviteList {
    /// Invites in id order.
    pub items: Vec<PendingInviteView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Event id.
    pub id: String,
    /// When (RFC 3339).
    #[schema(schema_with = schemas::time)]
    pub time: String,
    /// What: `register`, `login_succeeded`, `login_failed`, `lockout`,
    /// `refresh_reuse`, `logout`, `role_changed`, `account_disabled`,
    /// `account_enabled`, `invite_created`, `invite_accepted`,
    /// `invite_revoked`, `invites_listed`, `key_rotated`.
    pub action: String,
    /// Who did it.
    pub actor: Option<String>,
    /// To whom.
    pub target: Option<String>,
    /// From where.
    pub ip: Option<String>,
    /// Details.
    pub detail: Option<String>,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: e.id.clone(),
            time: rfc3339(e.time),
            action: e.event.action.as_str().to_owned(),
            actor: e.event.actor.as_ref().map(ToString::to_string),
            target: e.event.target.as_ref().map(ToString::to_string),
            ip: e.event.ip.clone(),
            detail: e.event.detail.clone(),
        }
    }
}

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Events, newest first.
    pub items: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

pub(super) fn tokens(status: StatusCode, session: &Session) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(TokenResponse::from(session)),
    )
        .into_response()
}
