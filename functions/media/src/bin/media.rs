//! The media Lambda function: upload requests and media metadata over API Gateway.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    constellation_web::host::lambda_http(&constellation_media::SERVICE).await
}
