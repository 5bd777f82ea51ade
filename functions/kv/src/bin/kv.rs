//! The kv Lambda function: build the service once at cold start, then serve
//! API Gateway events with the same router `constellation serve` mounts.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    constellation_web::host::lambda_http(&constellation_kv::SERVICE).await
}
