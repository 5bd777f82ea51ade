//! Mail: one `comms.email` record per recipient of a delivery, sent
//! through the [`Mailer`] port behind a circuit breaker.
//!
//! After [`FAILURES`] consecutive failures the breaker opens for
//! [`OPEN_FOR`]: records are reported as batch item failures at once
//! (without calling SES), come back after the queue's visibility timeout,
//! and are sent when it has closed. A mail is marked sent (`SENT#<org>`)
//! after SES accepted it, and a record whose mail is marked is dropped, so
//! a redelivered record sends nothing twice; the one window left is a
//! crash between SES's answer and the mark.

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
        if store.table.get(&mark).await.map_err(store_err)?.is_some() {
            return Ok(());
        }
        let Some(d) = store
            .delivery(org, delivery)
            .await
            .map_err(RecordError::retryable)?
        else {
            // A delivery expires a month after it was made: nothing to say.
            return Ok(());
        };
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
        match self.mailer.send(&mail).await {
            Ok(message_id) => {
                self.breaker.record_success();
                let mut item = Item::new(mark)
                    .with("message_id", message_id)
                    .with("sent_at", rfc3339(store.now()));
                item.expires_at = Some(store.now() + SENT_RETENTION);
                match store.table.put(&item, Condition::NotExists).await {
                    Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
                    Err(e) => {
                        // Sent, but unmarked: a redelivery would send it again.
                        tracing::error!(error = %e, "a sent mail could not be marked");
                        Ok(())
                    }
                }
            }
            Err(MailError::Invalid(why)) => {
                // The address or message is refused: no retry helps, and
                // it says nothing about the sender's health.
                Err(RecordError::permanent(anyhow::anyhow!(
                    "mail refused: {why}"
                )))
            }
            Err(e) => {
                self.breaker.record_failure();
                Err(RecordError::retryable(anyhow::anyhow!("mail failed: {e}")))
            }
        }
    }
}
