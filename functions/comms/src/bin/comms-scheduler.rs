//! The comms scheduler as a Lambda function, run by two EventBridge
//! Scheduler schedules: every minute (due announcements and reminders, the
//! outbox) and at 07:00 UTC (yesterday's reports).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    constellation_web::host::lambda_schedule(
        &constellation_comms::SERVICE,
        constellation_comms::SCHEDULER,
    )
    .await
}
