//! Ports (the storage and messaging capabilities a service may use) and their
//! two adapter sets: [`aws`] over the official AWS SDK crates, and [`local`]
//! over SQLite and files in a data directory.
//!
//! Services name only the traits in this crate's root modules; which adapter
//! stands behind them is decided once, at start-up, by [`config`]. Every
//! adapter passes the same conformance suite in `constellation-testkit`.
//!
//! Each port's accessor is behind a cargo feature (`table`, `blob`, `queue`,
//! `bus`, `mail`), each adapter set too (`local`, `aws`), and each AWS SDK
//! client (`dynamodb`, `s3`, `sqs`, `eventbridge`, `sesv2`, and `provision`
//! for creating resources); the default is all of them. A Lambda function
//! enables only the ports it uses and their clients, so that it links only
//! those clients, and its local-only build links none.

#[cfg(feature = "aws")]
pub mod aws;
pub mod blob;
pub mod breaker;
pub mod clock;
pub mod config;
pub mod cursor;
pub mod events;
pub mod ids;
pub mod inbox;
pub mod jsonlog;
#[cfg(feature = "table")]
mod lazy;
#[cfg(feature = "local")]
pub mod local;
pub mod mail;
pub mod observe;
pub mod outbox;
pub mod prometheus;
pub mod queue;
pub mod retry;
pub mod runner;
pub mod schedule;
pub mod secrets;
pub mod table;
pub mod tokens;
pub mod trace;
pub mod worker;

pub use blob::{BlobError, BlobMeta, BlobStore, PresignedRequest};
pub use breaker::{BreakerOpen, CircuitBreaker};
pub use clock::{Clock, ManualClock, SystemClock};
pub use events::{DomainEvent, EventBus, EventsError, Route};
pub use mail::{MailError, Mailer, OutgoingMail};
pub use queue::{
    Queue, QueueAdmin, QueueError, QueueReceiver, QueueSpec, QueueStats, ReceivedMessage,
};
pub use secrets::{CachedSecrets, SecretValue, Secrets, SecretsError};
pub use table::{
    Add, Condition, Index, IndexKey, Item, ItemKey, Page, Query, SortKey, StoreError, Table, Write,
};

#[cfg(not(any(feature = "local", feature = "aws")))]
compile_error!(
    "build constellation-platform with a backend: its `local` feature, its `aws` feature, or both"
);
#[cfg(all(feature = "aws", feature = "table", not(feature = "dynamodb")))]
compile_error!("the `table` port on the AWS backend needs the `dynamodb` feature");
#[cfg(all(feature = "aws", feature = "blob", not(feature = "s3")))]
compile_error!("the `blob` port on the AWS backend needs the `s3` feature");
#[cfg(all(feature = "aws", feature = "queue", not(feature = "sqs")))]
compile_error!("the `queue` port on the AWS backend needs the `sqs` feature");
#[cfg(all(feature = "aws", feature = "bus", not(feature = "eventbridge")))]
compile_error!("the `bus` port on the AWS backend needs the `eventbridge` feature");
#[cfg(all(feature = "aws", feature = "mail", not(feature = "sesv2")))]
compile_error!("the `mail` port on the AWS backend needs the `sesv2` feature");
