//! Brute-force protection for logins: failed attempts are counted per
//! email and per client address (IPv6: per /64) in counters that expire a
//! window after their first failure.
//!
//! | pk | sk | what |
//! | --- | --- | --- |
//! | `LOCK#EMAIL#<email>` / `LOCK#IP#<address>` | `LOCK` | failed-login counters (TTL 15 minutes from the first failure) |
//!
//! One shared address is often many people (offices, NAT), so its limit
//! ([`AuthSettings::login_address_limit`](crate::config::AuthSettings::login_address_limit), default 50) is its own and well
//! above the per-email [`LOCKOUT_THRESHOLD`]. A refused attempt costs no
//! password hashing.

use constellation_core::auth::{Email, Password};
use constellation_platform::StoreError;
use constellation_platform::observe::Metric;
use constellation_platform::table::{Add, Condition, ItemKey};
use time::{Duration, OffsetDateTime};

use super::accounts::StoredAccount;
use super::{AuditAction, AuditEvent, AuthError, AuthStore, Session};
use crate::client::ClientAddr;
use crate::password::Verified;

/// Failed logins for one email that lock further attempts on it (the
/// per-address limit is [`AuthSettings::login_address_limit`](crate::config::AuthSettings::login_address_limit)).
pub const LOCKOUT_THRESHOLD: i64 = 5;
/// How long failures are counted, from the first one.
pub const LOCKOUT_WINDOW: Duration = Duration::minutes(15);
pub use constellation_platform::observe::METRICS_NAMESPACE;

fn lock_key(kind: &str, subject: &str) -> ItemKey {
    ItemKey::new(format!("LOCK#{kind}#{subject}"), "LOCK")
}

/// Whole seconds from `now` until `until`, rounded up, at least 1.
fn seconds_until(until: OffsetDateTime, now: OffsetDateTime) -> u64 {
    let left = until - now;
    let secs = left.whole_seconds() + i64::from(left.subsec_nanoseconds() > 0);
    u64::try_from(secs.max(1)).unwrap_or(1)
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

impl AuthStore {
    /// Logs in with email and password.
    ///
    /// Attempts are counted per email and per source address with an atomic
    /// add *before* the password is checked (so a burst of parallel guesses
    /// cannot slip past the count), in counters that expire
    /// [`LOCKOUT_WINDOW`] after their first attempt. A success clears the
    /// email's counter and takes itself off the address's, so what remains
    /// are failures. Beyond [`LOCKOUT_THRESHOLD`] for the email, or
    /// [`AuthSettings::login_address_limit`](crate::config::AuthSettings::login_address_limit) for the client's address (its
    /// /64 for IPv6), attempts answer `LockedOut` until the counter expires,
    /// whatever the password, without hashing anything. Unknown
    /// emails get the same counting, the same answers and the same hashing
    /// work as known ones. When no hashing slot frees up in time the attempt
    /// is taken off the counters again and answered [`HashError::Busy`](crate::password::HashError::Busy).
    /// An imported account's legacy bcrypt hash is verified in the same
    /// place, counted the same way, and replaced with argon2id on success
    /// (see `legacy`).
    #[tracing::instrument(skip_all, fields(account))]
    pub async fn login(
        &self,
        email: &Email,
        password: &Password,
        ip: &ClientAddr,
    ) -> Result<Session, AuthError> {
        let issuer = self.token_issuer().await?;
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
        let verified = match self
            .hasher
            .verify_and_rehash(password, target.as_ref().map(|t| t.password_hash.as_str()))
            .await
        {
            Ok(verified) => verified,
            Err(e) => {
                // The password was never checked: this attempt is no failure.
                self.uncount_attempt(&email_lock, ip_lock.as_ref(), window_end)
                    .await;
                return Err(e.into());
            }
        };

        let stored = match target {
            Some(t) if verified.matches() && !t.account.disabled => t,
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
        if let Verified::YesRehashed(phc) = verified {
            // A legacy (bcrypt) hash matched: argon2id from now on.
            self.replace_legacy_hash(&stored, phc).await;
        }
        tracing::info!("login succeeded");
        self.audit(
            Some(&stored.account.org),
            AuditEvent::new(AuditAction::LoginSucceeded)
                .actor(&stored.account.id)
                .target(&stored.account.id)
                .ip(ip),
        )
        .await;
        Ok(self.issue(issuer, stored.account, refresh, now))
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
            &[("Service", crate::NAME)],
            &[Metric {
                name: "FailedLogin",
                value: 1.0,
                unit: "Count",
            }],
            &[],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        let now = time::macros::datetime!(2026-01-01 0:00 UTC);
        assert_eq!(seconds_until(now + Duration::seconds(90), now), 90);
        assert_eq!(seconds_until(now + Duration::milliseconds(1500), now), 2);
        assert_eq!(seconds_until(now - Duration::seconds(5), now), 1);
    }
}
