//! The benchmark tools `scripts/bench` runs, as a library their binaries share.
//!
//! - [`loadgen`]: an open-loop kv load generator (fixed request rates,
//!   latency from each request's scheduled time).
//! - [`coldstart`]: spawns a Lambda bootstrap against a fake Runtime API
//!   ([`runtime_api`]) and times its start and first invocation.
//! - [`stats`]: the percentiles both report.
//!
//! The `hello` binary is the hello-world `lambda_http` function the cold
//! starts are compared with.

pub mod coldstart;
pub mod loadgen;
pub mod runtime_api;
pub mod stats;
