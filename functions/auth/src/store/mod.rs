//! The auth rules over the Table port: organizations, accounts, sessions
//! (refresh-token families), invites, brute-force counters and the audit log.
//!
//! One module per concern (`orgs`, `accounts`, `sessions`,
//! `invites`, `lockout`, `audit`, `legacy`), each with its items' layout; this
//! module holds what they share: the store itself, its error type, and the
//! conversion of records (plain structs with serde derives) to and from the
//! Table port's attributes.
//!
//! Layout (one table, DynamoDB single-table style; every item an
//! organization owns has a partition key beginning `ORG#<org>`):
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `ORG#<org>` | `ORG` | the organization: name, count of enabled owners; in `gsi1` under `ORGS#<shard>` / `<org>` |
//! | `ORG#<org>` | `ACCOUNT#<id>` | an account: email, role, disabled, argon2id hash (an imported account's bcrypt hash until its first login), session epoch |
//! | `ORG#<org>#FAMILY#<id>` | `FAMILY` | a refresh-token family (one login): active or revoked |
//! | `ORG#<org>#AUDIT` | `<ns timestamp>#<id>` | a security event (TTL 90 days), newest last |
//! | `EMAIL#<email>` | `EMAIL` | the uniqueness claim on a normalised email: its org and account |
//! | `REFRESH#<sha256>` | `REFRESH` | a refresh token, by its hash only: org, account, family, status, epoch (TTL 30 days) |
//! | `ORG#<org>` | `INVITE#<id>` | a pending invite: email, role, inviter, token hash (TTL 7 days) |
//! | `INVITE#<sha256>` | `INVITE` | the invite's lookup by token hash: org and invite id (TTL 7 days) |
//! | `LOCK#EMAIL#<email>` / `LOCK#IP#<ip>` | `LOCK` | failed-login counters (TTL 15 minutes from the first failure) |
//! | `INSTALLATION#AUDIT` | `<ns timestamp>#<id>` | installation-wide events (key rotation) |
//! | `OUTBOX#<shard>` | `<ns timestamp>#<event id>` | an account event not yet published (AWS only; see `constellation_platform::outbox`) |
//!
//! The lookup items (`EMAIL#`, `REFRESH#`, `INVITE#`, `LOCK#`) are found by
//! something the client presents before its organization is known, so they
//! cannot begin with it; they hold only ids and hashes, and every read of
//! organization data goes through the organization's own partitions.
//!
//! Invariants are kept with conditional writes, never read-then-write: the
//! email claim is written `NotExists` in the same transaction as the org and
//! account it belongs to; rotating a refresh token is one transaction
//! conditioned on the old token's and its family's versions; changing an
//! owner's role or disabled flag rewrites the organization's owner count in
//! the same transaction, conditioned on its version (and the caller's
//! account is re-checked in it), so two concurrent demotions cannot leave an
//! organization without an owner. Disabling an account bumps its session
//! epoch, which every refresh compares, so its refresh tokens die at once.
//!
//! Every write that creates an account or changes its email, role or
//! disabled flag commits its directory event (`constellation_core::directory`)
//! through the outbox in the same transaction (`directory`), so the copy
//! other services keep can never miss a committed change nor see one that
//! did not commit.

use std::sync::Arc;

use constellation_core::auth::AccountId;
use constellation_core::{OrgId, ValidationError};
use constellation_platform::observe::MetricsSink;
use constellation_platform::outbox::Outbox;
use constellation_platform::retry::MAX_ATTEMPTS;
use constellation_platform::table::{Item, ItemKey};
use constellation_platform::{Clock, StoreError, Table};
use rand::RngCore as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::AuthSettings;
use crate::password::{HashError, PasswordHasher, PasswordHasherParams};
use crate::secret::SecretToken;
use crate::signing::{IssuedToken, LazyIssuer};

mod accounts;
mod audit;
mod check;
mod directory;
mod invites;
mod legacy;
mod lockout;
mod orgs;
mod sessions;

pub use accounts::{Account, AccountForUpdate};
pub use audit::{AUDIT_TTL, AuditAction, AuditEntry, AuditEvent, append_audit};
pub use check::check_item;
pub use directory::REPUBLISH_BATCH;
pub use invites::{INVITE_TTL, Invite, InviteId, PendingInvite};
pub use legacy::AccountForImport;
pub use lockout::{LOCKOUT_THRESHOLD, LOCKOUT_WINDOW, METRICS_NAMESPACE};
pub use orgs::{
    MAX_ORG_NAME_CHARS, MAX_ORG_NAME_INPUT_CHARS, ORG_INDEX_SHARDS, OrgName, Registration,
};
pub use sessions::{REFRESH_REUSE_GRACE, REFRESH_TOKEN_TTL, SESSION_LIFETIME};

fn org_pk(org: &OrgId) -> String {
    format!("ORG#{org}")
}

fn random_hex_16() -> String {
    let mut raw = [0_u8; 16];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

fn new_account_id() -> AccountId {
    let mut raw = [0_u8; 16];
    rand::rng().fill_bytes(&mut raw);
    AccountId::from_bytes(raw)
}

/// Whether a failed transaction lost a race worth retrying after a re-read:
/// DynamoDB cancels a transaction that meets a concurrent one on the same
/// item (`TransactionConflict`). Throttling is not a race: it answers 503.
fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

/// The shared pause before retry `attempt` of a conflicted write.
async fn backoff(attempt: usize) {
    tokio::time::sleep(constellation_platform::retry::backoff(attempt)).await;
}

/// An item whose attributes are `record` (a struct with serde derives).
fn record_item<T: Serialize>(key: ItemKey, record: &T) -> Result<Item, AuthError> {
    match serde_json::to_value(record) {
        Ok(Value::Object(attrs)) => {
            let mut item = Item::new(key);
            item.attrs = attrs;
            Ok(item)
        }
        Ok(_) => Err(AuthError::Store(StoreError::Backend(anyhow::anyhow!(
            "auth record for {}/{} is not an object",
            key.pk,
            key.sk
        )))),
        Err(e) => Err(AuthError::Store(StoreError::Backend(anyhow::anyhow!(
            "auth record for {}/{} does not serialize: {e}",
            key.pk,
            key.sk
        )))),
    }
}

/// The record an item's attributes hold.
fn read_record<T: DeserializeOwned>(item: &Item) -> Result<T, AuthError> {
    serde_json::from_value(Value::Object(item.attrs.clone())).map_err(|e| {
        AuthError::Store(StoreError::Backend(anyhow::anyhow!(
            "auth item {}/{} does not hold a valid record: {e}",
            item.key.pk,
            item.key.sk
        )))
    })
}

fn corrupt(item: &Item, what: &str) -> AuthError {
    AuthError::Store(StoreError::Backend(anyhow::anyhow!(
        "auth item {}/{} has no valid {what}",
        item.key.pk,
        item.key.sk
    )))
}

/// A logged-in session: the account, a fresh access token and a fresh refresh token.
pub struct Session {
    /// Who logged in.
    pub account: Account,
    /// The signed access token.
    pub access: IssuedToken,
    /// The opaque refresh token (only its hash is stored).
    pub refresh_token: SecretToken,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("account", &self.account)
            .field("access", &self.access)
            .field("refresh_token", &self.refresh_token)
            .finish()
    }
}

/// Why an auth operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 400: an input broke a rule (the field is named).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// 409: the email already has an account.
    #[error("this email already has an account")]
    EmailTaken,
    /// 401: unknown email, wrong password or disabled account (deliberately indistinct).
    #[error("the email or password is not correct")]
    InvalidCredentials,
    /// 429: too many failed logins for this email or address.
    #[error("too many failed logins; retry later")]
    LockedOut {
        /// Seconds until the lock lifts.
        retry_after: u64,
    },
    /// 401: the refresh token is unknown, expired, reused or revoked.
    #[error("the refresh token is not valid")]
    InvalidRefreshToken,
    /// 401: the invite token is unknown, expired or already used.
    #[error("the invite is not valid")]
    InvalidInvite,
    /// 401: the caller's account no longer exists or is disabled.
    #[error("the account is disabled or no longer exists")]
    AccountInactive,
    /// 403: the caller's role does not allow this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: no such account in the caller's organization.
    #[error("no such account")]
    NotFound,
    /// 404: no such pending invite in the caller's organization.
    #[error("no such invite")]
    InviteNotFound,
    /// 409: the change would leave the organization without an enabled owner.
    #[error("the last owner cannot be demoted or disabled")]
    LastOwner,
    /// 409: too many concurrent changes; retry.
    #[error("the resource is being changed concurrently; retry")]
    Contention,
    /// Password hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The auth service's state and rules.
pub struct AuthStore {
    table: Arc<dyn Table>,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    issuer: LazyIssuer,
    hasher: PasswordHasher,
    settings: AuthSettings,
    metrics: MetricsSink,
}

impl std::fmt::Debug for AuthStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStore")
            .field("table", &self.table)
            .field("hasher", &self.hasher)
            .finish_non_exhaustive()
    }
}

impl AuthStore {
    /// A store over `table`, committing account events through `outbox`
    /// (the outbox of the same table), signing access tokens with `issuer`,
    /// hashing new passwords with `params`, limited by `settings`, and
    /// emitting `FailedLogin` to `metrics`.
    pub fn new(
        table: Arc<dyn Table>,
        outbox: Outbox,
        clock: Arc<dyn Clock>,
        issuer: LazyIssuer,
        params: PasswordHasherParams,
        settings: AuthSettings,
        metrics: MetricsSink,
    ) -> Self {
        Self {
            table,
            outbox,
            clock,
            issuer,
            hasher: PasswordHasher::with_limits(
                params,
                settings.hash_concurrency,
                settings.hash_wait,
            ),
            settings,
            metrics,
        }
    }

    /// The outbox account events are committed through (its relay is the
    /// `auth-outbox` schedule).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The limits and trust settings this store was built with.
    pub fn settings(&self) -> AuthSettings {
        self.settings
    }

    /// The argon2id parameters of new password hashes.
    pub fn password_params(&self) -> PasswordHasherParams {
        self.hasher.params()
    }

    /// The password hasher, with its bound and its count of runs.
    pub fn password_hasher(&self) -> &PasswordHasher {
        &self.hasher
    }
}
