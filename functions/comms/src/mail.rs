//! Mail: one `comms.email` record per recipient of a delivery, sent
//! through the [`Mailer`] port behind a circuit breaker.
//!
//! After [`FAILURES`] consecutive failures the breaker opens for
//! [`OPEN_FOR`]: records are reported as batch item failures at once
//! (without calling SES), come back after the queue's visibility timeout,
//! and are sent when it has closed. Before sending, a record claims its
//! mail (`SENT#<org>`, written only if absent, expiring after
//! [`CLAIM_FOR`]); after SES accepted it the claim becomes the sent mark.
//! A record whose mail is claimed or sent sends nothing, so neither a
//! redelivery nor two copies handled at once send twice; the one window
//! left is a crash between SES's answer and the mark, after which the
//! claim's expiry lets a redelivery send again. A recipient the sender
//! refuses for good (an address SES cannot take) is recorded as refused,
//! not dead-lettered; a retracted announcement's mail is not sent.

use std::sync::Arc;
use std::time::Duration;

use constellation_core::OrgId;
use constellation_platform::StoreError;
use constellation_platform::breaker::CircuitBreaker;
use constellation_platform::mail::{MailError, Mailer, OutgoingMail, escape_html};
use constellation_platform::table::{Condition, Item, ItemKey};
use constellation_platform::worker::RecordError;

use crate::store::{CommsError, CommsStore, rfc3339};

/// Consecutive failures that open the breaker.
pub const FAILURES: u32 = 5;
/// How long it stays open.
pub const OPEN_FOR: Duration = Duration::from_secs(30);
/// How long a sent mark is kept (longer than any redelivery).
const SENT_RETENTION: time::Duration = time::Duration::days(15);
/// How long a claim to send stops other deliveries of the same record: far
/// longer than one send, shorter than the queue's ten receives.
const CLAIM_FOR: time::Duration = time::Duration::minutes(5);

/// The mail sender of one process.
#[derive(Debug, Clone)]
pub struct Mail {
    mailer: Arc<dyn Mailer>,
    breaker: CircuitBreaker,
    from: String,
}

fn sent_key(org: &OrgId, delivery: &str, account: &str) -> ItemKey {
    ItemKey::new(format!("SENT#{org}"), format!("{delivery}#{account}"))
}

impl Mail {
    /// Mail from `from` through `mailer`, guarded by `breaker`.
    pub fn new(mailer: Arc<dyn Mailer>, breaker: CircuitBreaker, from: &str) -> Self {
        Self {
            mailer,
            breaker,
            from: from.to_owned(),
        }
    }

    /// The breaker (tests look at it).
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Sends delivery `delivery`'s mail to `account`, once.
    pub async fn send(
        &self,
        store: &CommsStore,
        org: &OrgId,
        delivery: &str,
        account: &str,
    ) -> Result<(), RecordError> {
        let store_err = |e: StoreError| RecordError::retryable(CommsError::from(e));
        let mark = sent_key(org, delivery, account);
        if let Some(m) = store.table.get(&mark).await.map_err(store_err)? {
            return match m.str("status") {
                // Another delivery of this record is sending it right now
                // (SQS and the outbox deliver at least once): come back
                // when that one has finished, or its claim has expired.
                Some("sending") => Err(RecordError::retryable(anyhow::anyhow!(
                    "this mail is being sent by another delivery of the record"
                ))),
                _ => Ok(()),
            };
        }
        let Some(d) = store
            .delivery(org, delivery)
            .await
            .map_err(RecordError::retryable)?
        else {
            // A delivery expires a month after it was made: nothing to say.
            return Ok(());
        };
        if let Some(announcement) = &d.announcement {
            let published = store
                .announcement_item(org, announcement)
                .await
                .map_err(store_err)?
                .is_some_and(|a| a.str("status") == Some("published"));
            if !published {
                // Retracted since: its mail is not sent either.
                return Ok(());
            }
        }
        let entry = match store
            .entry(org, account)
            .await
            .map_err(RecordError::retryable)?
        {
            Some(e) if !e.disabled => e,
            // Disabled or gone since: it receives nothing.
            _ => return Ok(()),
        };
        if let Err(open) = self.breaker.check() {
            return Err(RecordError::retryable(anyhow::anyhow!(
                "mail is paused for {:?}: the sender failed {FAILURES} times in a row",
                open.retry_after
            )));
        }
        // Claim the mail before sending: of two deliveries of one record
        // at once, one sends. A claim whose sender died expires, and a
        // later delivery sends it then.
        let now = store.now();
        let mut claim = Item::new(mark.clone())
            .with("status", "sending")
            .with("claimed_at", rfc3339(now));
        claim.expires_at = Some(now + CLAIM_FOR);
        match store.table.put(&claim, Condition::NotExists).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => {
                return Err(RecordError::retryable(anyhow::anyhow!(
                    "this mail is being sent by another delivery of the record"
                )));
            }
            Err(e) => return Err(store_err(e)),
        }
        let link = d.message.link.as_deref().unwrap_or("");
        let mut text = d.message.body.clone();
        let mut html = format!(
            "<p>{}</p>",
            escape_html(&d.message.body).replace('\n', "<br>\n")
        );
        if !link.is_empty() {
            text.push_str(&format!("\n\n{link}\n"));
            html.push_str(&format!("<p><code>{}</code></p>", escape_html(link)));
        }
        let mail = OutgoingMail {
            from: self.from.clone(),
            to: entry.email.clone(),
            to_name: None,
            subject: d.message.title.clone(),
            text,
            html,
        };
        let outcome = self.mailer.send(&mail).await;
        let (status, result) = match outcome {
            Ok(message_id) => {
                self.breaker.record_success();
                (Some(("sent", message_id)), Ok(()))
            }
            Err(MailError::Invalid(_)) => {
                // The address or message is refused for good (an address
                // SES cannot take, say): no retry helps, the sender is not
                // at fault, and dead-lettering would page someone for one
                // account's address. Recorded and counted, never logged
                // with the address.
                tracing::warn!(%org, account, delivery, "mail refused by the sender for this recipient; not retried");
                (Some(("refused", String::new())), Ok(()))
            }
            Err(e) => {
                self.breaker.record_failure();
                (
                    None,
                    Err(RecordError::retryable(anyhow::anyhow!("mail failed: {e}"))),
                )
            }
        };
        match status {
            Some((status, message_id)) => {
                let mut done = Item::new(mark)
                    .with("status", status)
                    .with("message_id", message_id)
                    .with("at", rfc3339(store.now()));
                done.version = claim.version + 1;
                done.expires_at = Some(store.now() + SENT_RETENTION);
                if let Err(e) = store
                    .table
                    .put(&done, Condition::VersionEquals(claim.version))
                    .await
                {
                    // Its claim still stops a second send until it expires.
                    tracing::error!(error = %e, "a sent mail could not be marked");
                }
            }
            None => {
                // Not sent: release the claim so the retry can send it.
                if let Err(e) = store
                    .table
                    .delete(&mark, Condition::VersionEquals(claim.version))
                    .await
                {
                    tracing::warn!(error = %e, "a mail claim could not be released; it expires");
                }
            }
        }
        result
    }
}
