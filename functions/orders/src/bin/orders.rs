//! The orders Lambda function over API Gateway.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    constellation_web::host::lambda_http(&constellation_orders::SERVICE).await
}
