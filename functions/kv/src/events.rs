//! The change event kv publishes for every successful write and delete.
//!
//! Each is a domain event of type [`CHANGED`] on the bus (routed to the kv
//! change queue), whose `data` is a [`ChangeEvent`]. Delivery is at least
//! once: consumers de-duplicate by the event's `id`. Versions count a key's
//! writes (a delete is a version of its own), but a key deleted and created
//! again starts over, so `(key, version)` alone does not identify an event.

use serde::{Deserialize, Serialize};

/// The event type of every kv change.
pub const CHANGED: &str = "kv.changed";

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Created or replaced.
    Put,
    /// Deleted.
    Delete,
}

/// The `data` of a `kv.changed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The key's version after a put; for a delete, the deleted version + 1.
    pub version: u64,
    /// `put` or `delete`.
    pub op: ChangeOp,
}
