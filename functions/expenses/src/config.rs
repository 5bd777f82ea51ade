//! The resources expenses uses, named by the environment variables template.yaml sets.

use constellation_platform::config::ConfigError;
use constellation_web::host::{EVENT_BUS, EVENT_BUS_VAR, ResourceDef, ResourceKind, Resources};

/// The variable naming the expenses table.
pub const TABLE_VAR: &str = "EXPENSES_TABLE_NAME";
/// The variable naming the queue of media events (a URL in AWS).
pub const QUEUE_VAR: &str = "EXPENSES_QUEUE_URL";
/// The variable naming its dead-letter queue.
pub const DLQ_VAR: &str = "EXPENSES_DLQ_URL";
/// The variable naming the media bucket receipts are uploaded to.
pub const MEDIA_BUCKET_VAR: &str = "MEDIA_BUCKET_NAME";
/// The variable naming the secret that signs pagination cursors.
pub const CURSOR_SECRET_VAR: &str = "CURSOR_KEY_SECRET_ID";

/// Every resource expenses uses.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        var: TABLE_VAR,
        default: "constellation-expenses",
        kind: ResourceKind::Table,
    },
    ResourceDef {
        var: QUEUE_VAR,
        default: "constellation-expenses",
        kind: ResourceKind::Queue {
            visibility_timeout_secs: 60,
            max_receives: 5,
        },
    },
    ResourceDef {
        var: DLQ_VAR,
        default: "constellation-expenses-dlq",
        kind: ResourceKind::DeadLetterQueue { of: QUEUE_VAR },
    },
    // Media's bucket: receipts are presigned into its `uploads/`, which
    // media's worker watches (media declares the notification).
    ResourceDef {
        var: MEDIA_BUCKET_VAR,
        default: "constellation-media",
        kind: ResourceKind::Bucket { notify: None },
    },
    ResourceDef {
        var: CURSOR_SECRET_VAR,
        default: "constellation/cursor-key",
        kind: ResourceKind::GeneratedSecret,
    },
    EVENT_BUS,
];

/// Where expenses keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpensesResources {
    /// Table name.
    pub table: String,
    /// The media bucket.
    pub media_bucket: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
    /// The event bus.
    pub event_bus: String,
}

impl ExpensesResources {
    /// The typed view of resolved resources.
    pub fn from_resources(r: &Resources) -> Result<Self, ConfigError> {
        Ok(Self {
            table: r.get(TABLE_VAR)?.to_owned(),
            media_bucket: r.get(MEDIA_BUCKET_VAR)?.to_owned(),
            cursor_secret: r.get(CURSOR_SECRET_VAR)?.to_owned(),
            event_bus: r.get(EVENT_BUS_VAR)?.to_owned(),
        })
    }
}
