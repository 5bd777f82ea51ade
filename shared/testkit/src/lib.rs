//! Test fixtures shared by every crate's tests, and the storage conformance
//! suite that both adapter sets (local and AWS) must pass with the same test
//! bodies.

pub mod conformance;
pub mod fixtures;
pub mod messaging;
pub mod s3_gate;
