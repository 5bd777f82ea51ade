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

/// The conversions every validated text newtype shares: `Display` shows the
/// value, `TryFrom<String>` runs the type's own `parse` (so serde's
/// `try_from = "String"` validates on the way in), and `From<_> for String`
/// gives the value back.
macro_rules! text_newtype {
    ($name:ident) => {
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ValidationError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

pub(crate) use text_newtype;
