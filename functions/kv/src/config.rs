//! The resources kv uses, named by the environment variables template.yaml sets.

use constellation_platform::config::{BackendKind, ConfigError};
use constellation_platform::queue::QueueSpec;
use constellation_web::host::{EVENT_BUS, EVENT_BUS_VAR, ResourceDef, ResourceKind, Resources};

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

/// Every resource kv uses.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        var: TABLE_VAR,
        default: DEFAULT_TABLE,
        kind: ResourceKind::Table,
    },
    // Not consumed by a worker of ours: the feed of changes for users' own
    // consumers, fed by the bus's `kv.changed` rule.
    ResourceDef {
        var: CHANGES_QUEUE_VAR,
        default: DEFAULT_CHANGES_QUEUE,
        kind: ResourceKind::Queue {
            visibility_timeout_secs: 60,
            max_receives: 5,
        },
    },
    ResourceDef {
        var: CURSOR_SECRET_VAR,
        default: DEFAULT_CURSOR_SECRET,
        kind: ResourceKind::GeneratedSecret,
    },
    EVENT_BUS,
];

/// Where kv keeps its data and sends its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvResources {
    /// Table name.
    pub table: String,
    /// Change queue: a URL in AWS, a name locally.
    pub changes_queue: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
    /// The event bus change events are published on.
    pub event_bus: String,
}

impl KvResources {
    /// The local defaults.
    pub fn local() -> Self {
        Self {
            table: DEFAULT_TABLE.to_owned(),
            changes_queue: DEFAULT_CHANGES_QUEUE.to_owned(),
            cursor_secret: DEFAULT_CURSOR_SECRET.to_owned(),
            event_bus: constellation_web::host::DEFAULT_EVENT_BUS.to_owned(),
        }
    }

    /// Reads the resources: in AWS every variable is required; locally each
    /// falls back to its default.
    pub fn from_env(kind: BackendKind) -> Result<Self, ConfigError> {
        Self::from_resources(&Resources::from_env(RESOURCES, kind)?)
    }

    /// The typed view of resolved resources.
    pub fn from_resources(r: &Resources) -> Result<Self, ConfigError> {
        Ok(Self {
            table: r.get(TABLE_VAR)?.to_owned(),
            changes_queue: r.get(CHANGES_QUEUE_VAR)?.to_owned(),
            cursor_secret: r.get(CURSOR_SECRET_VAR)?.to_owned(),
            event_bus: r.get(EVENT_BUS_VAR)?.to_owned(),
        })
    }

    /// The change queue's shape (as template.yaml gives it): 60 s visibility,
    /// dead-lettered after 5 receives.
    pub fn changes_queue_spec(name: &str) -> QueueSpec {
        RESOURCES
            .iter()
            .find(|r| r.var == CHANGES_QUEUE_VAR)
            .and_then(|r| r.queue_spec(name))
            .unwrap_or_else(|| QueueSpec::with_dlq(name, std::time::Duration::from_secs(60), 5))
    }
}
