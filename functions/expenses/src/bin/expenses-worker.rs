//! The expenses worker as a Lambda function: media events about receipts.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    constellation_web::host::lambda_worker(
        &constellation_expenses::SERVICE,
        constellation_expenses::WORKER,
    )
    .await
}
