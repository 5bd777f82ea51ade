//! comms' two schedules, both run by the `comms-scheduler` function:
//! every minute, due announcements and reminders and the outbox relay; at
//! 07:00 UTC, yesterday's reports.

use std::sync::Arc;

use async_trait::async_trait;
use constellation_platform::outbox::OutboxRelay;
use constellation_platform::schedule::{ScheduledEvent, ScheduledHandler};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain;
use crate::store::CommsStore;

/// Every minute: publish what is due, relay the outbox.
#[derive(Debug, Clone)]
pub struct Minutely(pub Arc<CommsStore>);

#[async_trait]
impl ScheduledHandler for Minutely {
    async fn run(&self, event: ScheduledEvent) -> anyhow::Result<Value> {
        // The relay first: however much is due, stranded events go out.
        let relay = OutboxRelay(self.0.outbox().clone()).run(event).await?;
        let due = self.0.run_due().await?;
        Ok(json!({ "due": due, "outbox": relay }))
    }
}

/// At 07:00 UTC: queues the reports of the day before, one `comms.report`
/// step per organization for the worker. Run by hand for a `date`, it
/// writes that day's reports before it returns.
#[derive(Debug, Clone)]
pub struct DailyReport(pub Arc<CommsStore>);

#[async_trait]
impl ScheduledHandler for DailyReport {
    async fn run(&self, event: ScheduledEvent) -> anyhow::Result<Value> {
        let by_hand = event.date.is_some();
        let date = match &event.date {
            Some(d) => domain::date("date", d)?,
            None => {
                let at = event
                    .scheduled_time
                    .as_deref()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                    .unwrap_or_else(|| self.0.now());
                at.date()
                    .previous_day()
                    .ok_or_else(|| anyhow::anyhow!("no day before {}", at.date()))?
            }
        };
        let reports = if by_hand {
            self.0.write_reports_now(date).await?
        } else {
            self.0.queue_reports(date).await?
        };
        Ok(json!({ "date": domain::date_string(date), "reports": reports }))
    }
}
