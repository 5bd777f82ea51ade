//! The API Gateway (HTTP API) Lambda authorizer: verifies the bearer token
//! with the same code every service uses, and hands `account`, `org` and
//! `role` to the route as context. It reads only the public key set.

use aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use constellation_platform::config::Platform;
use constellation_platform::observe::init_tracing;
use constellation_platform::tokens::{VerifierConfig, load_verifier};
use constellation_web::authorizer::authorize;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    init_tracing();
    let platform = Platform::from_env().await?;
    let verifier = load_verifier(&platform, &VerifierConfig::from_env()?).await?;
    let verifier = &verifier;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            Ok::<_, Error>(authorize(verifier, event.payload).await)
        },
    ))
    .await
}
