//! The one list of services. `serve`, `openapi`, `--provision`, `run` and the
//! end-to-end tests loop over it; adding a service adds one line here.

use constellation_web::ServiceDef;

/// Every service, in start order: auth first, because on a fresh local data
/// directory it creates the signing keys every other service verifies with.
pub const SERVICES: &[&ServiceDef] = &[
    &constellation_auth::SERVICE,
    &constellation_kv::SERVICE,
    &constellation_media::SERVICE,
    &constellation_expenses::SERVICE,
    &constellation_catalog::SERVICE,
    &constellation_orders::SERVICE,
    &constellation_comms::SERVICE,
];

/// The service named `name`.
pub fn service(name: &str) -> Option<&'static ServiceDef> {
    SERVICES.iter().copied().find(|s| s.name == name)
}
