//! Test fixtures shared by every crate's tests, the storage conformance
//! suite that both adapter sets (local and AWS) must pass with the same test
//! bodies, and the HTTP harness ([`http`], [`on_both_backends!`]) that runs
//! every service's HTTP suite on both backends.

pub mod bulk;
pub mod conformance;
pub mod fixtures;
pub mod http;
pub mod items;
pub mod messaging;
pub mod s3_gate;
pub mod services;
