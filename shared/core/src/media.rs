//! Media types as clients send them in `Content-Type`.
//!
//! One parser, so that the kv service and both blob backends accept exactly
//! the same content types: `type/subtype` of RFC 9110 tokens, optionally
//! followed by `;` parameters, in at most 255 visible ASCII characters.

use std::fmt;

use crate::ValidationError;

/// A validated media type, kept as sent (parameters included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType(String);

/// The longest media type accepted.
pub const MAX_MEDIA_TYPE_LEN: usize = 255;

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

impl MediaType {
    /// Parses a media type; `field` names the input in the error.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let printable = raw.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        let raw = raw.trim_matches(' ');
        let essence = raw.split(';').next().unwrap_or_default().trim();
        let valid = printable
            && raw.len() <= MAX_MEDIA_TYPE_LEN
            && essence
                .split_once('/')
                .is_some_and(|(t, s)| is_token(t) && is_token(s));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                field,
                "must be a media type such as application/json, at most 255 characters",
            ))
        }
    }

    /// The media type as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_type_slash_subtype_with_optional_parameters() {
        for ok in [
            "application/json",
            "text/plain; charset=utf-8",
            "image/svg+xml",
            "application/vnd.api+json",
        ] {
            assert!(MediaType::parse("Content-Type", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "json",
            "text/",
            "/plain",
            "text/pl ain",
            "tëxt/plain",
            "a/b\n",
            &format!("a/{}", "b".repeat(255)),
        ] {
            assert_eq!(
                MediaType::parse("Content-Type", bad).map_err(|e| e.field),
                Err("Content-Type"),
                "{bad:?}"
            );
        }
    }
}
