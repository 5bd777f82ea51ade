//! Local adapters.
