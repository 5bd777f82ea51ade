//! The order rules that need no storage: what a valid order is, the state
//! machine and who may move an order along it, and how catalog's
//! reservation prices an order (exactly, in minor units).
//!
//! They live in `constellation_core::orders::rules` (one copy, which the
//! WebAssembly package also runs); this module re-exports them so that the
//! service names them as before.

pub use constellation_core::orders::rules::*;
