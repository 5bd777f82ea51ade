//! The orders worker as a Lambda function: catalog's stock events confirm or reject orders.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    constellation_web::host::lambda_worker(
        &constellation_orders::SERVICE,
        constellation_orders::WORKER,
    )
    .await
}
