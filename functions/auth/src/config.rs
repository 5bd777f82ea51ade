//! The resources and settings auth uses, from the environment template.yaml
//! sets. Everything is read once at cold start; a bad value fails fast,
//! naming the variable.

use std::time::Duration as StdDuration;

use constellation_platform::config::{BackendKind, ConfigError, optional, required};
use constellation_web::host::{DEFAULT_EVENT_BUS, EVENT_BUS_VAR};

use crate::signing::SigningConfig;

/// The variable naming the auth table.
pub const TABLE_VAR: &str = "AUTH_TABLE_NAME";
/// The variable naming the secret that signs pagination cursors.
pub const CURSOR_SECRET_VAR: &str = "CURSOR_KEY_SECRET_ID";
/// How many proxies in front of the service append to `X-Forwarded-For`
/// and are trusted to (default 0: the header is ignored).
pub const TRUSTED_PROXIES_VAR: &str = "AUTH_TRUSTED_PROXIES";
/// Failed logins from one client address (IPv6: one /64) within the lockout
/// window before that address is refused (default 50).
pub const LOGIN_ADDRESS_LIMIT_VAR: &str = "AUTH_LOGIN_ADDRESS_LIMIT";
/// How many password hashes may run at once (default: the core count).
pub const HASH_CONCURRENCY_VAR: &str = "AUTH_HASH_CONCURRENCY";

/// Local default, and the name `serve --backend aws --provision` creates.
pub const DEFAULT_TABLE: &str = "constellation-auth";
/// The cursor secret's default name.
pub const DEFAULT_CURSOR_SECRET: &str = "constellation/cursor-key";
/// The default of [`LOGIN_ADDRESS_LIMIT_VAR`]: offices and NATs share an
/// address, so it is well above the per-account limit.
pub const DEFAULT_LOGIN_ADDRESS_LIMIT: i64 = 50;
/// How long a request waits for a hashing slot before it is answered 503.
pub const DEFAULT_HASH_WAIT: StdDuration = StdDuration::from_millis(1500);

/// Where auth keeps its data and finds its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResources {
    /// Table name.
    pub table: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
    /// The event bus account events are published on (through the outbox).
    pub event_bus: String,
    /// Token issuer, audience and both key secrets.
    pub tokens: SigningConfig,
    /// Limits and trust settings.
    pub settings: AuthSettings,
}

/// How auth identifies clients and how much work it accepts at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSettings {
    /// Proxies in front of the peer (API Gateway's `sourceIp`, the socket
    /// peer) that append to `X-Forwarded-For`. The client is the entry this
    /// many hops from the right; 0 ignores the header.
    pub trusted_proxies: usize,
    /// Failed logins per client address in the lockout window before the
    /// address is refused.
    pub login_address_limit: i64,
    /// Password hashes (argon2id, 19 MiB each) that may run at once.
    pub hash_concurrency: usize,
    /// How long a request waits for a hashing slot before answering 503.
    pub hash_wait: StdDuration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: 0,
            login_address_limit: DEFAULT_LOGIN_ADDRESS_LIMIT,
            hash_concurrency: default_hash_concurrency(),
            hash_wait: DEFAULT_HASH_WAIT,
        }
    }
}

/// The core count, or 2 when it cannot be known.
pub fn default_hash_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

impl AuthSettings {
    /// Reads the settings from the environment; unset variables take their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(optional)
    }

    /// Reads the settings through `var` (a variable's value, `None` when unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            trusted_proxies: number(&var, TRUSTED_PROXIES_VAR, 0, 16)?
                .map_or(d.trusted_proxies, |n| n as usize),
            login_address_limit: number(&var, LOGIN_ADDRESS_LIMIT_VAR, 1, 1_000_000)?
                .map_or(d.login_address_limit, i64::from),
            hash_concurrency: number(&var, HASH_CONCURRENCY_VAR, 1, 1024)?
                .map_or(d.hash_concurrency, |n| n as usize),
            hash_wait: d.hash_wait,
        })
    }
}

/// An optional whole number in `min..=max`.
fn number(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ConfigError> {
    let Some(raw) = var(name) else {
        return Ok(None);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ConfigError::Invalid {
            name,
            reason: format!("`{raw}` is not a whole number from {min} to {max}"),
        }),
    }
}

impl AuthResources {
    /// The local defaults.
    pub fn local() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            cursor_secret: DEFAULT_CURSOR_SECRET.to_owned(),
            event_bus: DEFAULT_EVENT_BUS.to_owned(),
            tokens: SigningConfig::default(),
            settings: AuthSettings::default(),
        }
    }

    /// Reads the resources: in AWS the table, cursor secret and event bus are required;
    /// locally each falls back to its default. Token settings come from
    /// [`SigningConfig::from_env`], limits from [`AuthSettings::from_env`].
    pub fn from_env(kind: BackendKind) -> Result<Self, ConfigError> {
        let tokens = SigningConfig::from_env()?;
        let settings = AuthSettings::from_env()?;
        match kind {
            BackendKind::Aws => Ok(Self {
                table: required(TABLE_VAR)?,
                cursor_secret: required(CURSOR_SECRET_VAR)?,
                event_bus: required(EVENT_BUS_VAR)?,
                tokens,
                settings,
            }),
            BackendKind::Local => {
                let d = Self::local();
                Ok(Self {
                    table: optional(TABLE_VAR).unwrap_or(d.table),
                    cursor_secret: optional(CURSOR_SECRET_VAR).unwrap_or(d.cursor_secret),
                    event_bus: optional(EVENT_BUS_VAR).unwrap_or(d.event_bus),
                    tokens,
                    settings,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn unset_settings_take_their_defaults() {
        let s = AuthSettings::from_vars(vars(&[])).ok();
        assert_eq!(s, Some(AuthSettings::default()));
        let d = AuthSettings::default();
        assert_eq!((d.trusted_proxies, d.login_address_limit), (0, 50));
        assert!(d.hash_concurrency >= 1);
    }

    #[test]
    fn settings_are_read_from_their_variables() {
        let s = AuthSettings::from_vars(vars(&[
            (TRUSTED_PROXIES_VAR, "2"),
            (LOGIN_ADDRESS_LIMIT_VAR, " 200 "),
            (HASH_CONCURRENCY_VAR, "3"),
        ]))
        .ok();
        let want = AuthSettings {
            trusted_proxies: 2,
            login_address_limit: 200,
            hash_concurrency: 3,
            ..AuthSettings::default()
        };
        assert_eq!(s, Some(want));
    }

    #[test]
    fn a_bad_setting_fails_naming_its_variable() {
        for (name, raw) in [
            (TRUSTED_PROXIES_VAR, "-1"),
            (TRUSTED_PROXIES_VAR, "many"),
            (LOGIN_ADDRESS_LIMIT_VAR, "0"),
            (HASH_CONCURRENCY_VAR, "0"),
            (HASH_CONCURRENCY_VAR, "1.5"),
        ] {
            let err = AuthSettings::from_vars(vars(&[(name, raw)])).err();
            match err {
                Some(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name, "{raw}"),
                other => panic!("{name}={raw}: {other:?}"),
            }
            let message = AuthSettings::from_vars(vars(&[(name, raw)]))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(name), "{message}");
        }
    }
}
