//! The resources kv uses, from the environment template.yaml sets.

use constellation_platform::config::{BackendKind, ConfigError, optional, required};
use constellation_platform::queue::QueueSpec;
use std::time::Duration;

/// The variable naming the kv table.
pub const TABLE_VAR: &str = "KV_TABLE_NAME";
/// The variable naming the change queue (a URL in AWS).
pub const CHANGES_QUEUE_VAR: &str = "KV_CHANGES_QUEUE_URL";
/// The variable naming the secret that signs pagination cursors.
pub const CURSOR_SECRET_VAR: &str = "CURSOR_KEY_SECRET_ID";

/// Local defaults, and the names `serve --backend aws --provision` creates.
pub const DEFAULT_TABLE: &str = "constellation-kv";
/// The change queue's default name.
pub const DEFAULT_CHANGES_QUEUE: &str = "constellation-kv-changes";
/// The cursor secret's default name.
pub const DEFAULT_CURSOR_SECRET: &str = "constellation/cursor-key";

/// Where kv keeps its data and sends its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvResources {
    /// Table name.
    pub table: String,
    /// Change queue: a URL in AWS, a name locally.
    pub changes_queue: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
}

impl KvResources {
    /// The local defaults.
    pub fn local() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            changes_queue: DEFAULT_CHANGES_QUEUE.to_owned(),
            cursor_secret: DEFAULT_CURSOR_SECRET.to_owned(),
        }
    }

    /// Reads the resources: in AWS every variable is required; locally each
    /// falls back to its default.
    pub fn from_env(kind: BackendKind) -> Result<Self, ConfigError> {
        match kind {
            BackendKind::Aws => Ok(Self {
                table: required(TABLE_VAR)?,
                changes_queue: required(CHANGES_QUEUE_VAR)?,
                cursor_secret: required(CURSOR_SECRET_VAR)?,
            }),
            BackendKind::Local => {
                let d = Self::local();
                Ok(Self {
                    table: optional(TABLE_VAR).unwrap_or(d.table),
                    changes_queue: optional(CHANGES_QUEUE_VAR).unwrap_or(d.changes_queue),
                    cursor_secret: optional(CURSOR_SECRET_VAR).unwrap_or(d.cursor_secret),
                })
            }
        }
    }

    /// The change queue's shape (as template.yaml gives it): 60 s visibility,
    /// dead-lettered after 5 receives.
    pub fn changes_queue_spec(name: &str) -> QueueSpec {
        QueueSpec::with_dlq(name, Duration::from_secs(60), 5)
    }
}
