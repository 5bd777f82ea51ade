//! The kv outbox relay as a Lambda function, run by an EventBridge schedule.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use constellation_kv::KvResources;
use constellation_kv::relay::handle_schedule;
use constellation_platform::config::Platform;
use constellation_platform::observe::init_tracing;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let platform = Platform::from_env().await?;
    let resources = KvResources::from_env(platform.kind())?;
    let store = constellation_kv::store(&platform, &resources).await?;
    let store = &store;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<Value>>| async move {
            handle_schedule(store, event.payload)
                .await
                .map_err(|e| -> lambda_runtime::Error { e.into() })
        },
    ))
    .await
    .map(|_: ()| ())
}
