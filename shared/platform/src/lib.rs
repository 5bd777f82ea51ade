//! Ports (the storage and messaging capabilities a service may use) and their
//! two adapter sets: [`aws`] over the official AWS SDK crates, and [`local`]
//! over SQLite and files in a data directory.
//!
//! Services name only the traits in this crate's root modules; which adapter
//! stands behind them is decided once, at start-up, by [`config`]. Every
//! adapter passes the same conformance suite in `constellation-testkit`.

pub mod aws;
pub mod blob;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod local;
pub mod observe;
pub mod queue;
pub mod runner;
pub mod secrets;
pub mod table;
pub mod tokens;

pub use blob::{BlobError, BlobMeta, BlobStore, PresignedRequest};
pub use clock::{Clock, ManualClock, SystemClock};
pub use queue::{Queue, QueueError, QueueReceiver, QueueSpec, ReceivedMessage};
pub use secrets::{CachedSecrets, SecretValue, Secrets, SecretsError};
pub use table::{
    Add, Condition, Index, IndexKey, Item, ItemKey, Page, Query, SortKey, StoreError, Table, Write,
};
