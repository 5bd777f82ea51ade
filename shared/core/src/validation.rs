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

/// Free text as services keep it: trimmed, `min` to `max` characters, no
/// control characters; `field` names the input in the error.
pub fn trimmed_text(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<String, ValidationError> {
    let value = raw.trim();
    let chars = value.chars().count();
    if chars < min || chars > max || value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            format!("must be {min} to {max} characters without control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// The characters [`char::is_control`] matches (Unicode category Cc), as
/// inclusive ranges: the rules that refuse control characters, written for
/// the OpenAPI document (see [`class`]).
pub const CONTROL_CHARS: &[(char, char)] = &[('\u{0}', '\u{1f}'), ('\u{7f}', '\u{9f}')];

/// The characters [`char::is_whitespace`] matches (Unicode White_Space), as
/// inclusive ranges: what `str::trim` removes.
pub const WHITESPACE_CHARS: &[(char, char)] = &[
    ('\u{9}', '\u{d}'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// The body of a regular-expression character class (ECMA-262, as JSON
/// Schema's `pattern` is) matching the characters of `ranges`, each written
/// as a `\uXXXX` escape so that the pattern is plain ASCII.
pub fn class(ranges: &[(char, char)]) -> String {
    let escape = |c: char| format!("\\u{:04x}", u32::from(c));
    ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                escape(lo)
            } else {
                format!("{}-{}", escape(lo), escape(hi))
            }
        })
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn within(ranges: &[(char, char)], c: char) -> bool {
        ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
    }

    #[test]
    fn the_documented_classes_are_exactly_what_std_matches() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(within(CONTROL_CHARS, c), c.is_control(), "{c:?}");
            assert_eq!(within(WHITESPACE_CHARS, c), c.is_whitespace(), "{c:?}");
        }
    }

    #[test]
    fn classes_render_as_escapes() {
        assert_eq!(class(CONTROL_CHARS), "\\u0000-\\u001f\\u007f-\\u009f");
        assert_eq!(class(&[(' ', ' ')]), "\\u0020");
    }
}
