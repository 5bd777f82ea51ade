//! The emulator the AWS-backend tests run against: the moto server named by
//! `CONSTELLATION_TEST_AWS_ENDPOINT` (started by `scripts/test`, which also
//! exports the dummy credentials the SDK signs with).

use constellation_platform::aws::AwsBackend;

/// The variable naming the emulator.
pub const ENDPOINT_VAR: &str = "CONSTELLATION_TEST_AWS_ENDPOINT";

/// The AWS adapters, pointed at the emulator.
pub async fn fx_backend() -> AwsBackend {
    let endpoint = std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set: this test needs a moto server \
             (run it through scripts/test, which starts one)"
        )
    });
    AwsBackend::connect(Some(&endpoint)).await
}

/// A resource name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
