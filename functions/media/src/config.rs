//! The resources media uses, named by the environment variables template.yaml sets.

use constellation_core::media::UPLOAD_PREFIX;
use constellation_platform::config::ConfigError;
use constellation_web::host::{
    BucketNotify, EVENT_BUS, EVENT_BUS_VAR, ResourceDef, ResourceKind, Resources,
};

/// The variable naming the media table.
pub const TABLE_VAR: &str = "MEDIA_TABLE_NAME";
/// The variable naming the media bucket.
pub const BUCKET_VAR: &str = "MEDIA_BUCKET_NAME";
/// The variable naming the worker's queue (a URL in AWS).
pub const QUEUE_VAR: &str = "MEDIA_QUEUE_URL";
/// The variable naming its dead-letter queue.
pub const DLQ_VAR: &str = "MEDIA_DLQ_URL";
/// The variable naming the secret that signs pagination cursors.
pub const CURSOR_SECRET_VAR: &str = "CURSOR_KEY_SECRET_ID";

/// Every resource media uses.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        var: TABLE_VAR,
        default: "constellation-media",
        kind: ResourceKind::Table,
    },
    ResourceDef {
        var: BUCKET_VAR,
        default: "constellation-media",
        kind: ResourceKind::Bucket {
            notify: Some(BucketNotify {
                queue: QUEUE_VAR,
                prefix: UPLOAD_PREFIX,
            }),
        },
    },
    // Object-created events of `uploads/`, and `media.requested` from the bus.
    // Two minutes hide a record well past the slowest check of a 10 MiB image.
    ResourceDef {
        var: QUEUE_VAR,
        default: "constellation-media",
        kind: ResourceKind::Queue {
            visibility_timeout_secs: 120,
            max_receives: 5,
        },
    },
    ResourceDef {
        var: DLQ_VAR,
        default: "constellation-media-dlq",
        kind: ResourceKind::DeadLetterQueue { of: QUEUE_VAR },
    },
    ResourceDef {
        var: CURSOR_SECRET_VAR,
        default: "constellation/cursor-key",
        kind: ResourceKind::GeneratedSecret,
    },
    EVENT_BUS,
];

/// Where media keeps its records and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaResources {
    /// Table name.
    pub table: String,
    /// Bucket name.
    pub bucket: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
    /// The event bus.
    pub event_bus: String,
}

impl MediaResources {
    /// The typed view of resolved resources.
    pub fn from_resources(r: &Resources) -> Result<Self, ConfigError> {
        Ok(Self {
            table: r.get(TABLE_VAR)?.to_owned(),
            bucket: r.get(BUCKET_VAR)?.to_owned(),
            cursor_secret: r.get(CURSOR_SECRET_VAR)?.to_owned(),
            event_bus: r.get(EVENT_BUS_VAR)?.to_owned(),
        })
    }
}
