//! The expense rules that need no storage: the fields' validation, the
//! state machine, and who may move an expense along it.
//!
//! They live in `constellation_core::expenses` (one copy, which the
//! WebAssembly package also runs); this module re-exports them so that the
//! service names them as before.

pub use constellation_core::expenses::*;
