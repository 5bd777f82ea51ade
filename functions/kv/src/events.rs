//! The change event kv publishes for every successful write and delete.
//!
//! Consumers follow the store from these; delivery is at least once, so each
//! event carries an id and the key's version for de-duplication.

use serde::{Deserialize, Serialize};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// Created or replaced.
    Put,
    /// Deleted.
    Delete,
}

/// One change, as sent on the change queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Unique per event (stable across redelivery).
    pub event_id: String,
    /// The owning organization.
    pub org: String,
    /// The namespace.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The key's version after a put, or the deleted version.
    pub version: u64,
    /// `put` or `delete`.
    pub op: ChangeOp,
    /// When it happened (RFC 3339).
    pub time: String,
}
