//! The one error a constructor of a validated type returns.
//!
//! It names the field so that the HTTP edge can answer with a 4xx that tells
//! the client exactly which input was wrong.

use std::fmt;

/// An input that failed validation: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The name of the offending input as the client sent it (`namespace`, `key`, `If-Match`...).
    pub field: &'static str,
    /// A sentence a client developer can act on.
    pub reason: String,
}

impl ValidationError {
    /// Builds the error for `field`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ValidationError {}
