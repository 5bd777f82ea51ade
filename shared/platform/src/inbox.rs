//! De-duplication of consumed events: SQS and EventBridge deliver at least
//! once, so a consumer records each event id it has applied, in the same
//! transaction as the effect.
//!
//! [`Inbox::claim`] is a conditional put (`INBOX#<consumer>` / event id, must
//! not exist) that the consumer adds to its transaction; if the transaction
//! fails on that write, the event was applied before and the delivery is a
//! duplicate ([`Inbox::is_duplicate`]). Claims expire after [`RETENTION`],
//! longer than any redelivery (SQS keeps messages at most 14 days).

use std::sync::Arc;

use crate::clock::Clock;
use crate::table::{Condition, Item, ItemKey, StoreError, Write};

/// How long an applied event id is remembered.
pub const RETENTION: time::Duration = time::Duration::days(15);

/// The record of which events one consumer has applied.
#[derive(Debug, Clone)]
pub struct Inbox {
    consumer: String,
    clock: Arc<dyn Clock>,
}

impl Inbox {
    /// The inbox of `consumer` (one per consuming queue or worker).
    pub fn new(consumer: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            consumer: consumer.to_owned(),
            clock,
        }
    }

    /// The key of the claim for `event_id`.
    pub fn key(&self, event_id: &str) -> ItemKey {
        ItemKey::new(format!("INBOX#{}", self.consumer), event_id)
    }

    /// The write that claims `event_id`; put it in the effect's transaction.
    pub fn claim(&self, event_id: &str) -> Write {
        let now = self.clock.now();
        let mut item = Item::new(self.key(event_id)).with(
            "applied_at",
            now.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        );
        item.expires_at = Some(now + RETENTION);
        Write::Put {
            item,
            condition: Condition::NotExists,
        }
    }

    /// Whether `error`, from a transaction whose write at `claim_index` was
    /// [`Inbox::claim`], means the event had been applied already.
    pub fn is_duplicate(error: &StoreError, claim_index: usize) -> bool {
        matches!(error, StoreError::ConditionFailed { index: Some(i) } if *i == claim_index)
    }
}
