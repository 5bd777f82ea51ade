//! The resources comms uses, named by the environment variables template.yaml sets.

use constellation_platform::config::ConfigError;
use constellation_web::host::{EVENT_BUS, EVENT_BUS_VAR, ResourceDef, ResourceKind, Resources};

/// The variable naming the comms table.
pub const TABLE_VAR: &str = "COMMS_TABLE_NAME";
/// The variable naming comms' queue (a URL in AWS): the other services'
/// events and comms' own fan-out, mail and retraction steps.
pub const QUEUE_VAR: &str = "COMMS_QUEUE_URL";
/// The variable naming its dead-letter queue.
pub const DLQ_VAR: &str = "COMMS_DLQ_URL";
/// The variable naming the media bucket (attachments are read from it,
/// reports written to its `reports/`).
pub const MEDIA_BUCKET_VAR: &str = "MEDIA_BUCKET_NAME";
/// The variable naming the secret that signs pagination cursors.
pub const CURSOR_SECRET_VAR: &str = "CURSOR_KEY_SECRET_ID";
/// The variable naming the address mail is sent from (an SES identity).
pub const MAIL_SENDER_VAR: &str = "COMMS_MAIL_SENDER";

/// Every resource comms uses.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        var: TABLE_VAR,
        default: "constellation-comms",
        kind: ResourceKind::Table,
    },
    ResourceDef {
        var: QUEUE_VAR,
        default: "constellation-comms",
        kind: ResourceKind::Queue {
            visibility_timeout_secs: 60,
            // Mail held back by an open circuit breaker comes back each
            // minute; ten receives ride out a ten-minute SES outage before
            // the dead-letter queue (and its alarm) takes over.
            max_receives: 10,
        },
    },
    ResourceDef {
        var: DLQ_VAR,
        default: "constellation-comms-dlq",
        kind: ResourceKind::DeadLetterQueue { of: QUEUE_VAR },
    },
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
    ResourceDef {
        var: MAIL_SENDER_VAR,
        default: "noreply@constellation.local",
        kind: ResourceKind::MailSender,
    },
    EVENT_BUS,
];

/// Where comms keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommsResources {
    /// Table name.
    pub table: String,
    /// The media bucket.
    pub media_bucket: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
    /// The event bus.
    pub event_bus: String,
    /// The sender address.
    pub mail_sender: String,
}

impl CommsResources {
    /// The typed view of resolved resources.
    pub fn from_resources(r: &Resources) -> Result<Self, ConfigError> {
        Ok(Self {
            table: r.get(TABLE_VAR)?.to_owned(),
            media_bucket: r.get(MEDIA_BUCKET_VAR)?.to_owned(),
            cursor_secret: r.get(CURSOR_SECRET_VAR)?.to_owned(),
            event_bus: r.get(EVENT_BUS_VAR)?.to_owned(),
            mail_sender: r.get(MAIL_SENDER_VAR)?.to_owned(),
        })
    }
}
