//! The catalog outbox relay as a Lambda function, run by an EventBridge Scheduler schedule.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    constellation_web::host::lambda_schedule(
        &constellation_catalog::SERVICE,
        constellation_catalog::RELAY,
    )
    .await
}
