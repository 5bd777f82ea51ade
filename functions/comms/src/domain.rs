//! The rules of comms that need no storage: who an audience addresses,
//! what a notification of each event says, which email preference it
//! falls under, when a reminder comes next, and the daily counters.
//!
//! They live in `constellation_core::comms` (one copy, which the
//! WebAssembly package also runs); this module re-exports them so that the
//! service names them as before.

pub use constellation_core::comms::*;
