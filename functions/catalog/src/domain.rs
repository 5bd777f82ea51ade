//! Catalog rules that need no storage: field validation, SKUs, stock
//! adjustments and the once-per-crossing low-stock rule.
//!
//! They live in `constellation_core::catalog` (one copy, which the
//! WebAssembly package also runs); this module re-exports them so that the
//! service names them as before.

pub use constellation_core::catalog::*;
