//! The resources auth uses, from the environment template.yaml sets.

use constellation_platform::config::{BackendKind, ConfigError, optional, required};
use constellation_platform::tokens::TokenConfig;

/// The variable naming the auth table.
pub const TABLE_VAR: &str = "AUTH_TABLE_NAME";
/// The variable naming the secret that signs pagination cursors.
pub const CURSOR_SECRET_VAR: &str = "CURSOR_KEY_SECRET_ID";

/// Local default, and the name `serve --backend aws --provision` creates.
pub const DEFAULT_TABLE: &str = "constellation-auth";
/// The cursor secret's default name.
pub const DEFAULT_CURSOR_SECRET: &str = "constellation/cursor-key";

/// Where auth keeps its data and finds its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResources {
    /// Table name.
    pub table: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
    /// Token issuer, audience and key secrets.
    pub tokens: TokenConfig,
}

impl AuthResources {
    /// The local defaults.
    pub fn local() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            cursor_secret: DEFAULT_CURSOR_SECRET.to_owned(),
            tokens: TokenConfig::default(),
        }
    }

    /// Reads the resources: in AWS the table and cursor secret are required;
    /// locally each falls back to its default. Token settings come from
    /// [`TokenConfig::from_env`].
    pub fn from_env(kind: BackendKind) -> Result<Self, ConfigError> {
        let tokens = TokenConfig::from_env()?;
        match kind {
            BackendKind::Aws => Ok(Self {
                table: required(TABLE_VAR)?,
                cursor_secret: required(CURSOR_SECRET_VAR)?,
                tokens,
            }),
            BackendKind::Local => {
                let d = Self::local();
                Ok(Self {
                    table: optional(TABLE_VAR).unwrap_or(d.table),
                    cursor_secret: optional(CURSOR_SECRET_VAR).unwrap_or(d.cursor_secret),
                    tokens,
                })
            }
        }
    }
}
