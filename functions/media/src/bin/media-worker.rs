//! The media worker as a Lambda function: SQS batches of the bucket's
//! object-created events (and `media.requested` events from the bus).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    constellation_web::host::lambda_worker(
        &constellation_media::SERVICE,
        constellation_media::WORKER,
    )
    .await
}
