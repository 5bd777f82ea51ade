//! Pure domain of Constellation: identifiers, validated newtypes and the
//! errors their constructors return, the access-token format ([`token`]:
//! signing and verifying with keys the caller supplies), and each service's
//! storage-free rules ([`expenses`], [`catalog`], [`orders::rules`],
//! [`comms`]), kept here so that the services and the WebAssembly package
//! (`shared/wasm`) run one copy of them.
//!
//! Nothing in this crate does I/O, reads a clock or needs an async runtime, so
//! it builds for `wasm32-unknown-unknown` and every rule here can be tested
//! without a backend. Values are parsed once at the edge (HTTP, queue bodies)
//! and travel inward only as these types.

pub mod auth;
pub mod catalog;
pub mod comms;
pub mod csv;
pub mod directory;
pub mod etag;
pub mod expenses;
pub mod ids;
pub mod import;
pub mod kv;
pub mod media;
pub mod money;
pub mod orders;
pub mod token;
pub mod validation;

pub use ids::OrgId;
pub use validation::ValidationError;
