//! The resources orders uses, named by the environment variables template.yaml sets.

use constellation_platform::config::ConfigError;
use constellation_web::host::{EVENT_BUS, EVENT_BUS_VAR, ResourceDef, ResourceKind, Resources};

/// The variable naming the orders table.
pub const TABLE_VAR: &str = "ORDERS_TABLE_NAME";
/// The variable naming the queue of catalog's stock events (a URL in AWS).
pub const QUEUE_VAR: &str = "ORDERS_QUEUE_URL";
/// The variable naming its dead-letter queue.
pub const DLQ_VAR: &str = "ORDERS_DLQ_URL";
/// The variable naming the secret that signs pagination cursors.
pub const CURSOR_SECRET_VAR: &str = "CURSOR_KEY_SECRET_ID";

/// Every resource orders uses.
pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        var: TABLE_VAR,
        default: "constellation-orders",
        kind: ResourceKind::Table,
    },
    ResourceDef {
        var: QUEUE_VAR,
        default: "constellation-orders",
        kind: ResourceKind::Queue {
            visibility_timeout_secs: 60,
            max_receives: 5,
        },
    },
    ResourceDef {
        var: DLQ_VAR,
        default: "constellation-orders-dlq",
        kind: ResourceKind::DeadLetterQueue { of: QUEUE_VAR },
    },
    ResourceDef {
        var: CURSOR_SECRET_VAR,
        default: "constellation/cursor-key",
        kind: ResourceKind::GeneratedSecret,
    },
    EVENT_BUS,
];

/// Where orders keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrdersResources {
    /// Table name.
    pub table: String,
    /// Secret id of the cursor-signing key.
    pub cursor_secret: String,
    /// The event bus.
    pub event_bus: String,
}

impl OrdersResources {
    /// The typed view of resolved resources.
    pub fn from_resources(r: &Resources) -> Result<Self, ConfigError> {
        Ok(Self {
            table: r.get(TABLE_VAR)?.to_owned(),
            cursor_secret: r.get(CURSOR_SECRET_VAR)?.to_owned(),
            event_bus: r.get(EVENT_BUS_VAR)?.to_owned(),
        })
    }
}
