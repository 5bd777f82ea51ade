//! The auth Lambda function: build the service once at cold start, then serve
//! API Gateway events with the same router `constellation serve` mounts.

use constellation_auth::AuthResources;
use constellation_platform::config::Platform;
use constellation_platform::observe::{MetricsSink, init_tracing};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let platform = Platform::from_env().await?;
    let resources = AuthResources::from_env(platform.kind())?;
    let app = constellation_auth::app(&platform, &resources, MetricsSink::stdout()).await?;
    lambda_http::run(app).await
}
