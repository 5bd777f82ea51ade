//! The directory contract between auth and the services that keep their own
//! copy of who is in each organization (comms): the event types auth
//! publishes about accounts and the data they carry.
//!
//! Every event carries the account's whole state (a snapshot), with the
//! version auth's account record had after the change, so a consumer applies
//! an event only when its version is newer than the copy it holds: events
//! may arrive late, twice, or out of order, and the copy still converges.
//! `constellation comms resync` asks auth to publish an `account.updated`
//! snapshot of every account (with its current version), which rebuilds a
//! lost or new copy without the consumer ever reading auth's table.

use serde::{Deserialize, Serialize};

/// Event types auth publishes about accounts.
pub mod events {
    /// An account was created (registration, an accepted invite).
    pub const ACCOUNT_CREATED: &str = "account.created";
    /// An account's role, email or status changed, or a resync snapshot.
    pub const ACCOUNT_UPDATED: &str = "account.updated";
    /// An account was disabled.
    pub const ACCOUNT_DISABLED: &str = "account.disabled";
    /// Every account event type.
    pub const ALL: [&str; 3] = [ACCOUNT_CREATED, ACCOUNT_UPDATED, ACCOUNT_DISABLED];
}

/// The data of every account event: the account as it is after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// The account id (32 lowercase hex digits).
    pub account_id: String,
    /// Its email address (normalized as auth stores it).
    pub email: String,
    /// `owner`, `admin`, `staff` or `member`.
    pub role: String,
    /// Whether it is disabled (a disabled account receives nothing).
    pub disabled: bool,
    /// The version of auth's account record after this change: a consumer
    /// keeps the snapshot with the highest version.
    pub version: u64,
}
