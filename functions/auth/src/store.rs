//! The auth rules over the Table port: organizations, accounts, sessions
//! (refresh-token families), invites, brute-force counters and the audit log.
//!
//! Layout (one table, DynamoDB single-table style; every item an
//! organization owns has a partition key beginning `ORG#<org>`):
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `ORG#<org>` | `ORG` | the organization: name, count of enabled owners |
//! | `ORG#<org>` | `ACCOUNT#<id>` | an account: email, role, disabled, argon2id hash, session epoch |
//! | `ORG#<org>#FAMILY#<id>` | `FAMILY` | a refresh-token family (one login): active or revoked |
//! | `ORG#<org>#AUDIT` | `<ns timestamp>#<id>` | a security event (TTL 90 days), newest last |
//! | `EMAIL#<email>` | `EMAIL` | the uniqueness claim on a normalised email: its org and account |
//! | `REFRESH#<sha256>` | `REFRESH` | a refresh token, by its hash only: org, account, family, status, epoch (TTL 30 days) |
//! | `ORG#<org>` | `INVITE#<id>` | a pending invite: email, role, inviter, token hash (TTL 7 days) |
//! | `INVITE#<sha256>` | `INVITE` | the invite's lookup by token hash: org and invite id (TTL 7 days) |
//! | `LOCK#EMAIL#<email>` / `LOCK#IP#<ip>` | `LOCK` | failed-login counters (TTL 15 minutes from the first failure) |
//! | `INSTALLATION#AUDIT` | `<ns timestamp>#<id>` | installation-wide events (key rotation) |
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use constellation_core::auth::{AccountId, Email, Password, Principal, Role};
use constellation_core::{OrgId, ValidationError};
use constellation_platform::observe::{Metric, MetricsSink};
use constellation_platform::table::{Add, Condition, Item, ItemKey, Query, SortKey, Write};
use constellation_platform::tokens::{IssuedToken, TokenIssuer};
use constellation_platform::{Clock, StoreError, Table};
use rand::RngCore as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::client::ClientAddr;
use crate::config::AuthSettings;
use crate::password::{HashError, PasswordHasher, PasswordHasherParams};
use crate::secret::SecretToken;

mod invites;
mod sessions;

pub use invites::{Invite, InviteId, PendingInvite};
pub use sessions::{REFRESH_REUSE_GRACE, REFRESH_TOKEN_TTL, SESSION_LIFETIME};

/// How often a conditional write is retried after losing a race.
const MAX_ATTEMPTS: usize = 8;
/// Failed logins for one email that lock further attempts on it (the
/// per-address limit is [`AuthSettings::login_address_limit`]).
pub const LOCKOUT_THRESHOLD: i64 = 5;
/// How long failures are counted, from the first one.
pub const LOCKOUT_WINDOW: Duration = Duration::minutes(15);
/// How long an invite may be accepted.
pub const INVITE_TTL: Duration = Duration::days(7);
/// How long audit events are kept.
pub const AUDIT_TTL: Duration = Duration::days(90);
/// The longest organization name, in characters.
pub const MAX_ORG_NAME_CHARS: usize = 100;
/// The CloudWatch namespace of the `FailedLogin` metric.
pub const METRICS_NAMESPACE: &str = "Constellation";

fn org_pk(org: &OrgId) -> String {
    format!("ORG#{org}")
}

fn org_key(org: &OrgId) -> ItemKey {
    ItemKey::new(org_pk(org), "ORG")
}

fn account_key(org: &OrgId, id: &AccountId) -> ItemKey {
    ItemKey::new(org_pk(org), format!("ACCOUNT#{id}"))
}

fn email_key(email: &Email) -> ItemKey {
    ItemKey::new(format!("EMAIL#{email}"), "EMAIL")
}

fn lock_key(kind: &str, subject: &str) -> ItemKey {
    ItemKey::new(format!("LOCK#{kind}#{subject}"), "LOCK")
}

fn audit_pk(org: Option<&OrgId>) -> String {
    match org {
        Some(org) => format!("ORG#{org}#AUDIT"),
        None => "INSTALLATION#AUDIT".to_owned(),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
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
/// item (`TransactionConflict`, which the adapter reports as unavailable).
fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_))
}

/// A short, growing, jittered pause before retrying a conflicted write.
async fn backoff(attempt: usize) {
    let base = 5_u64 << attempt.min(5);
    let jitter = rand::rng().next_u64() % base.max(1);
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

/// Whole seconds from `now` until `until`, rounded up, at least 1.
fn seconds_until(until: OffsetDateTime, now: OffsetDateTime) -> u64 {
    let left = until - now;
    let secs = left.whole_seconds() + i64::from(left.subsec_nanoseconds() > 0);
    u64::try_from(secs.max(1)).unwrap_or(1)
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
    fn principal(&self) -> Principal {
        Principal {
            account: self.id.clone(),
            org: self.org.clone(),
            role: self.role,
        }
    }
}

/// An account as stored, with what clients never see.
#[derive(Clone)]
struct StoredAccount {
    account: Account,
    password_hash: String,
    /// Bumped when the account is disabled: refresh tokens of an older epoch are dead.
    epoch: i64,
    version: u64,
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

impl StoredAccount {
    fn to_item(&self) -> Item {
        let a = &self.account;
        let mut item = Item::new(account_key(&a.org, &a.id))
            .with("email", a.email.as_str())
            .with("role", a.role.as_str())
            .with("disabled", a.disabled)
            .with("password_hash", self.password_hash.as_str())
            .with("epoch", self.epoch)
            .with("created_at", rfc3339(a.created_at));
        item.version = self.version;
        item
    }

    fn from_item(item: &Item) -> Result<Self, AuthError> {
        let org = item
            .key
            .pk
            .strip_prefix("ORG#")
            .and_then(|o| OrgId::parse(o).ok())
            .ok_or_else(|| corrupt(item, "org"))?;
        let id = item
            .key
            .sk
            .strip_prefix("ACCOUNT#")
            .and_then(|i| AccountId::parse(i).ok())
            .ok_or_else(|| corrupt(item, "id"))?;
        let email = item
            .str("email")
            .and_then(|e| Email::parse(e).ok())
            .ok_or_else(|| corrupt(item, "email"))?;
        let role = item
            .str("role")
            .and_then(|r| Role::parse("role", r).ok())
            .ok_or_else(|| corrupt(item, "role"))?;
        let disabled = item
            .attrs
            .get("disabled")
            .and_then(Value::as_bool)
            .ok_or_else(|| corrupt(item, "disabled"))?;
        let created_at = item
            .str("created_at")
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .ok_or_else(|| corrupt(item, "created_at"))?;
        Ok(Self {
            account: Account {
                id,
                org,
                email,
                role,
                disabled,
                created_at,
            },
            password_hash: item
                .str("password_hash")
                .ok_or_else(|| corrupt(item, "password_hash"))?
                .to_owned(),
            epoch: item.int("epoch").ok_or_else(|| corrupt(item, "epoch"))?,
            version: item.version,
        })
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

/// A change to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountForUpdate {
    /// The new role.
    pub role: Option<Role>,
    /// Disable (true) or re-enable (false).
    pub disabled: Option<bool>,
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

/// What happened, in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    clock: Arc<dyn Clock>,
    issuer: Arc<TokenIssuer>,
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
    /// A store over `table`, signing access tokens with `issuer`, hashing
    /// new passwords with `params`, limited by `settings`, and emitting
    /// `FailedLogin` to `metrics`.
    pub fn new(
        table: Arc<dyn Table>,
        clock: Arc<dyn Clock>,
        issuer: Arc<TokenIssuer>,
        params: PasswordHasherParams,
        settings: AuthSettings,
        metrics: MetricsSink,
    ) -> Self {
        Self {
            table,
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

    // -- registration and login --------------------------------------------

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
            let org_item = Item::new(org_key(&org))
                .with("name", reg.organization.as_str())
                .with("owners", 1)
                .with("created_at", rfc3339(now));
            let mut writes = vec![
                Write::Put {
                    item: email_item(&stored.account),
                    condition: Condition::NotExists,
                },
                Write::Put {
                    item: org_item,
                    condition: Condition::NotExists,
                },
                Write::Put {
                    item: stored.to_item(),
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

    /// Logs in with email and password.
    ///
    /// Attempts are counted per email and per source address with an atomic
    /// add *before* the password is checked (so a burst of parallel guesses
    /// cannot slip past the count), in counters that expire
    /// [`LOCKOUT_WINDOW`] after their first attempt. A success clears the
    /// email's counter and takes itself off the address's, so what remains
    /// are failures. Beyond [`LOCKOUT_THRESHOLD`] for the email, or
    /// [`AuthSettings::login_address_limit`] for the client's address (its
    /// /64 for IPv6), attempts answer `LockedOut` until the counter expires,
    /// whatever the password, without hashing anything. Unknown
    /// emails get the same counting, the same answers and the same hashing
    /// work as known ones. When no hashing slot frees up in time the attempt
    /// is taken off the counters again and answered [`HashError::Busy`].
    #[tracing::instrument(skip_all, fields(account))]
    pub async fn login(
        &self,
        email: &Email,
        password: &Password,
        ip: &ClientAddr,
    ) -> Result<Session, AuthError> {
        let email_lock = lock_key("EMAIL", email.as_str());
        let ip_lock = ip.counter_subject().map(|subject| lock_key("IP", &subject));
        let window_end = self.clock.now() + LOCKOUT_WINDOW;
        let count = |key: &ItemKey, delta: i64| attempt_count(key, delta, window_end);
        let email_attempt = count(&email_lock, 1);
        let (by_email, by_ip, target) = tokio::join!(
            self.table.add(&email_attempt),
            async {
                match &ip_lock {
                    Some(key) => self.table.add(&count(key, 1)).await.map(Some),
                    None => Ok(None),
                }
            },
            self.account_by_email(email),
        );
        let (by_email, by_ip, target) = (by_email?, by_ip?, target?);
        if let Some(t) = &target {
            tracing::Span::current().record("account", tracing::field::display(&t.account.id));
        }
        let now = self.clock.now();
        let mut locks = Vec::new();
        if by_email > LOCKOUT_THRESHOLD {
            locks.push(&email_lock);
        }
        if let (Some(n), Some(key)) = (by_ip, &ip_lock)
            && n > self.settings.login_address_limit
        {
            locks.push(key);
        }
        if !locks.is_empty() {
            // Refused without hashing: a locked-out guess costs no argon2 work.
            self.count_failed_login();
            tracing::info!("login refused: locked out");
            let mut until = now;
            for key in locks {
                if let Some(expires) = self.table.get(key).await?.and_then(|c| c.expires_at) {
                    until = until.max(expires);
                }
            }
            if let Some(t) = &target {
                self.audit(
                    Some(&t.account.org),
                    AuditEvent::new(AuditAction::LoginFailed)
                        .target(&t.account.id)
                        .ip(ip)
                        .detail("locked out"),
                )
                .await;
            }
            return Err(AuthError::LockedOut {
                retry_after: seconds_until(until, now),
            });
        }

        // The same hashing work for known and unknown emails.
        let matches = match self
            .hasher
            .verify(password, target.as_ref().map(|t| t.password_hash.as_str()))
            .await
        {
            Ok(matches) => matches,
            Err(e) => {
                // The password was never checked: this attempt is no failure.
                self.uncount_attempt(&email_lock, ip_lock.as_ref(), window_end)
                    .await;
                return Err(e.into());
            }
        };

        let stored = match target {
            Some(t) if matches && !t.account.disabled => t,
            other => {
                let reason = match &other {
                    None => "unknown email",
                    Some(t) if t.account.disabled => "account disabled",
                    Some(_) => "wrong password",
                };
                self.record_failed_login(other.as_ref(), by_email, by_ip, ip, reason)
                    .await;
                return Err(AuthError::InvalidCredentials);
            }
        };

        // A success is not a failure: clear the email's count, take this
        // attempt off the address's.
        self.table.delete(&email_lock, Condition::None).await?;
        if let Some(key) = &ip_lock {
            match self.table.add(&count(key, -1)).await {
                Ok(_) | Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut writes = Vec::new();
        let refresh = self.session_writes(&stored.account, stored.epoch, now, &mut writes)?;
        self.table.transact(&writes).await?;
        tracing::info!("login succeeded");
        self.audit(
            Some(&stored.account.org),
            AuditEvent::new(AuditAction::LoginSucceeded)
                .actor(&stored.account.id)
                .target(&stored.account.id)
                .ip(ip),
        )
        .await;
        Ok(self.issue(stored.account, refresh, now))
    }

    /// Takes back an attempt counted by `login` that was never checked.
    /// Best effort: a failure here only leaves one attempt counted.
    async fn uncount_attempt(
        &self,
        email_lock: &ItemKey,
        ip_lock: Option<&ItemKey>,
        window_end: OffsetDateTime,
    ) {
        for key in std::iter::once(email_lock).chain(ip_lock) {
            match self.table.add(&attempt_count(key, -1, window_end)).await {
                Ok(_) | Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "login attempt not uncounted"),
            }
        }
    }

    async fn record_failed_login(
        &self,
        target: Option<&StoredAccount>,
        by_email: i64,
        by_ip: Option<i64>,
        ip: &ClientAddr,
        reason: &'static str,
    ) {
        self.count_failed_login();
        tracing::info!(reason, failures = by_email, "login failed");
        if let Some(t) = target {
            let org = Some(&t.account.org);
            self.audit(
                org,
                AuditEvent::new(AuditAction::LoginFailed)
                    .target(&t.account.id)
                    .ip(ip)
                    .detail(reason),
            )
            .await;
            if by_email == LOCKOUT_THRESHOLD {
                self.audit(
                    org,
                    AuditEvent::new(AuditAction::Lockout)
                        .target(&t.account.id)
                        .ip(ip)
                        .detail(format!("{LOCKOUT_THRESHOLD} failed logins")),
                )
                .await;
            }
        }
        if by_email == LOCKOUT_THRESHOLD {
            tracing::warn!("account locked after repeated failed logins");
        }
        if by_ip == Some(self.settings.login_address_limit) {
            tracing::warn!(ip = %ip, "source address locked after repeated failed logins");
        }
    }

    fn count_failed_login(&self) {
        self.metrics.emit(
            METRICS_NAMESPACE,
            &[("Service", crate::SERVICE)],
            &[Metric {
                name: "FailedLogin",
                value: 1.0,
                unit: "Count",
            }],
            &[],
        );
    }

    // -- accounts -------------------------------------------------------------

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
                item: updated.to_item(),
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
                let org = self
                    .table
                    .get(&org_key(&principal.org))
                    .await?
                    .ok_or_else(|| {
                        AuthError::Store(StoreError::Backend(anyhow::anyhow!(
                            "organization {} has no org item",
                            principal.org
                        )))
                    })?;
                let owners = org.int("owners").unwrap_or(0) + delta;
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
                let mut next = org.clone().with("owners", owners);
                next.version = org.version + 1;
                writes.push(Write::Put {
                    item: next,
                    condition: Condition::VersionEquals(org.version),
                });
            }
            match self.table.transact(&writes).await {
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

    // -- audit ----------------------------------------------------------------

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
    async fn audit(&self, org: Option<&OrgId>, event: AuditEvent) {
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

    // -- helpers --------------------------------------------------------------

    async fn load_account(
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

    async fn account_by_email(&self, email: &Email) -> Result<Option<StoredAccount>, AuthError> {
        let Some(claim) = self.table.get(&email_key(email)).await? else {
            return Ok(None);
        };
        let org = claim
            .str("org")
            .and_then(|o| OrgId::parse(o).ok())
            .ok_or_else(|| corrupt(&claim, "org"))?;
        let id = claim
            .str("account")
            .and_then(|a| AccountId::parse(a).ok())
            .ok_or_else(|| corrupt(&claim, "account"))?;
        self.load_account(&org, &id).await
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
    async fn active(&self, principal: &Principal) -> Result<StoredAccount, AuthError> {
        self.load_account(&principal.org, &principal.account)
            .await?
            .filter(|s| !s.account.disabled)
            .ok_or(AuthError::AccountInactive)
    }

    /// [`Self::active`], and its *current* role must allow `required`.
    async fn authorize(
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
    let mut item = Item::new(ItemKey::new(audit_pk(org), sk))
        .with("action", event.action.as_str())
        .with("time", rfc3339(now));
    let optional = [
        ("actor", event.actor.map(String::from)),
        ("target", event.target.map(String::from)),
        ("ip", event.ip),
        ("detail", event.detail),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            item = item.with(name, v);
        }
    }
    item.expires_at = Some(now + AUDIT_TTL);
    table.put(&item, Condition::NotExists).await
}

/// Adds `delta` to a failed-login counter, which expires at `window_end`
/// when this creates it; it never goes below 0.
fn attempt_count(key: &ItemKey, delta: i64, window_end: OffsetDateTime) -> Add {
    Add {
        key: key.clone(),
        field: "failures".to_owned(),
        delta,
        floor: Some(0),
        expires_at: Some(window_end),
    }
}

fn email_item(account: &Account) -> Item {
    Item::new(email_key(&account.email))
        .with("org", account.org.as_str())
        .with("account", account.id.as_str())
}

fn audit_entry(item: &Item) -> Result<AuditEntry, AuthError> {
    let id_of = |name: &str| item.str(name).and_then(|v| AccountId::parse(v).ok());
    let text = |name: &str| item.str(name).map(str::to_owned);
    Ok(AuditEntry {
        id: item
            .key
            .sk
            .rsplit_once('#')
            .map(|(_, id)| id.to_owned())
            .ok_or_else(|| corrupt(item, "id"))?,
        time: item
            .str("time")
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .ok_or_else(|| corrupt(item, "time"))?,
        event: AuditEvent {
            action: item
                .str("action")
                .and_then(AuditAction::parse)
                .ok_or_else(|| corrupt(item, "action"))?,
            actor: id_of("actor"),
            target: id_of("target"),
            ip: text("ip"),
            detail: text("detail"),
        },
    })
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

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        assert_eq!(seconds_until(now + Duration::seconds(90), now), 90);
        assert_eq!(seconds_until(now + Duration::milliseconds(1500), now), 2);
        assert_eq!(seconds_until(now - Duration::seconds(5), now), 1);
    }

    #[test]
    fn audit_actions_round_trip() {
        for a in [
            AuditAction::Register,
            AuditAction::LoginFailed,
            AuditAction::RefreshReuse,
            AuditAction::KeyRotated,
        ] {
            assert_eq!(AuditAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(AuditAction::parse("nope"), None);
    }
}
