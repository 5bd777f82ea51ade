//! The comms worker as a Lambda function: other services' events, and
//! comms' own fan-out, mail and retraction steps.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    constellation_web::host::lambda_worker(
        &constellation_comms::SERVICE,
        constellation_comms::WORKER,
    )
    .await
}
