//! The catalog worker as a Lambda function: order events (reserve, release, ship).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    constellation_web::host::lambda_worker(
        &constellation_catalog::SERVICE,
        constellation_catalog::WORKER,
    )
    .await
}
