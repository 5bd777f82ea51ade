//! The key-value store's domain: namespaces, keys, entity tags and the
//! preconditions a write may carry.
//!
//! The rules here are the public kv contract: a namespace matches
//! `[a-z0-9][a-z0-9_-]{0,62}`; a key is 1-1024 bytes of UTF-8 without control
//! characters; a value is at most [`MAX_VALUE_BYTES`].

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::validation::{CONTROL_CHARS, class};

pub use crate::etag::{
    ETAG_HEX_DIGITS, EntityTag, Etag, IfNoneMatch, Precondition, etag_list_pattern, parse_etag_list,
};

/// The largest value the store accepts, in bytes (256 KiB).
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// The longest key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest TTL a write may ask for (one year), in seconds.
pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;
/// The shortest TTL a write may ask for, in seconds.
pub const MIN_TTL_SECONDS: u64 = 1;
/// The longest namespace, in bytes (all ASCII).
pub const MAX_NAMESPACE_BYTES: usize = 63;

/// [`Namespace::parse`]'s rule as a regular expression, for the OpenAPI document.
pub fn namespace_pattern() -> String {
    format!(
        "^[a-z0-9][a-z0-9_-]{{0,{}}}$",
        MAX_NAMESPACE_BYTES.saturating_sub(1)
    )
}

/// What a key or prefix may contain (any UTF-8 but control characters), as
/// a regular expression; the length is separate ([`MAX_KEY_BYTES`]).
pub fn key_text_pattern() -> String {
    format!("^[^{}]*$", class(CONTROL_CHARS))
}

/// What `If-None-Match` accepts on a write: only `*` (create only).
pub const IF_NONE_MATCH_WRITE_PATTERN: &str = "^[ \\t]*\\*[ \\t]*$";

/// A namespace: `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    /// Parses a namespace name.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bytes = raw.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .skip(1)
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= MAX_NAMESPACE_BYTES {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "namespace",
                "must match [a-z0-9][a-z0-9_-]{0,62}",
            ))
        }
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::validation::text_newtype!(Namespace);

/// A key: 1-1024 bytes of UTF-8 with no control characters. `/` is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

impl Key {
    /// Parses a key.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        validate_key_text("key", raw, 1)?;
        Ok(Self(raw.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::validation::text_newtype!(Key);

/// A key prefix for listing: like a key, but may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Parses a listing prefix (0-1024 bytes, no control characters).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        validate_key_text("prefix", raw, 0)?;
        Ok(Self(raw.to_owned()))
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_key_text(field: &'static str, raw: &str, min: usize) -> Result<(), ValidationError> {
    if raw.len() < min {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if raw.len() > MAX_KEY_BYTES {
        return Err(ValidationError::new(
            field,
            format!(
                "is {} bytes; at most {MAX_KEY_BYTES} are allowed",
                raw.len()
            ),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A TTL given as `?ttl=<seconds>`: 1 second to one year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl(u64);

impl Ttl {
    /// Parses the `ttl` query parameter.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let secs: u64 = raw
            .parse()
            .map_err(|_| ValidationError::new("ttl", "must be a whole number of seconds"))?;
        if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&secs) {
            return Err(ValidationError::new(
                "ttl",
                format!("must be between 1 and {MAX_TTL_SECONDS} seconds"),
            ));
        }
        Ok(Self(secs))
    }

    /// The TTL in seconds.
    pub fn seconds(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_the_contract_pattern() {
        for ok in ["a", "0", "my-ns_1", &"a".repeat(63)] {
            assert!(Namespace::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a b", "a/b", &"a".repeat(64)] {
            assert_eq!(
                Namespace::parse(bad).map_err(|e| e.field),
                Err("namespace"),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_are_bounded_utf8_without_control_characters() {
        assert!(Key::parse("a/b c/ü").is_ok());
        assert!(Key::parse(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        let too_long = Key::parse(&"k".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
        assert!(too_long.reason.contains("1025"));
        assert!(Key::parse("").is_err());
        assert!(Key::parse("a\nb").is_err());
        assert!(Key::parse("a\u{7f}").is_err());
        assert!(KeyPrefix::parse("").is_ok());
    }

    #[test]
    fn etags_render_quoted_and_parse_back() {
        let tag = Etag::from_bytes([0xab; 16]);
        assert_eq!(tag.as_str(), "ab".repeat(16));
        assert_eq!(
            parse_etag_list("If-Match", &tag.quoted()),
            Ok(vec![EntityTag::strong(tag.clone())])
        );
        assert_eq!(
            parse_etag_list("If-Match", &format!("W/{}", tag.quoted())),
            Ok(vec![EntityTag {
                etag: tag,
                weak: true
            }])
        );
    }

    #[test]
    fn conditional_headers_parse_into_preconditions() {
        let tag = Etag::from_bytes([1; 16]);
        assert_eq!(
            Precondition::from_headers(None, None),
            Ok(Precondition::None)
        );
        assert_eq!(
            Precondition::from_headers(None, Some("*")),
            Ok(Precondition::Absent)
        );
        assert_eq!(
            Precondition::from_headers(Some("*"), None),
            Ok(Precondition::Exists)
        );
        assert_eq!(
            Precondition::from_headers(Some(&tag.quoted()), None),
            Ok(Precondition::Matches(vec![EntityTag::strong(tag.clone())]))
        );
        for bad in ["abc", "\"abc\"", "\"", "\"0123\","] {
            assert_eq!(
                Precondition::from_headers(Some(bad), None).map_err(|e| e.field),
                Err("If-Match"),
                "{bad}"
            );
        }
        assert!(Precondition::from_headers(None, Some(&tag.quoted())).is_err());
        // Both headers parse, and together no state admits the write.
        for im in ["*", tag.quoted().as_str()] {
            let both = Precondition::from_headers(Some(im), Some("*"));
            assert_eq!(both, Ok(Precondition::Unsatisfiable), "{im}");
            assert!(!Precondition::Unsatisfiable.admits(None));
            assert!(!Precondition::Unsatisfiable.admits(Some(&tag)));
        }
        // Each header is still checked on its own.
        assert_eq!(
            Precondition::from_headers(Some("garbage"), Some("*")).map_err(|e| e.field),
            Err("If-Match")
        );
        assert_eq!(
            Precondition::from_headers(Some("*"), Some(&tag.quoted())).map_err(|e| e.field),
            Err("If-None-Match")
        );
    }

    #[test]
    fn preconditions_admit_the_right_states() {
        let a = Etag::from_bytes([1; 16]);
        let b = Etag::from_bytes([2; 16]);
        assert!(Precondition::Absent.admits(None));
        assert!(!Precondition::Absent.admits(Some(&a)));
        assert!(Precondition::Exists.admits(Some(&a)));
        assert!(!Precondition::Exists.admits(None));
        let only_a = Precondition::Matches(vec![EntityTag::strong(a.clone())]);
        assert!(only_a.admits(Some(&a)));
        assert!(!only_a.admits(Some(&b)));
        assert!(!only_a.admits(None));
    }

    #[test]
    fn if_match_compares_strongly_so_a_weak_tag_never_matches() {
        let tag = Etag::from_bytes([7; 16]);
        let weak = format!("W/{}", tag.quoted());
        let weak_only = Precondition::from_headers(Some(&weak), None).unwrap();
        assert!(
            !weak_only.admits(Some(&tag)),
            "W/ must not satisfy If-Match"
        );
        assert!(!weak_only.admits(None));
        let mixed =
            Precondition::from_headers(Some(&format!("{weak}, {}", tag.quoted())), None).unwrap();
        assert!(
            mixed.admits(Some(&tag)),
            "the strong tag in the list matches"
        );
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let tag = Etag::from_bytes([7; 16]);
        let other = Etag::from_bytes([8; 16]);
        let weak = IfNoneMatch::parse(&format!("W/{}", tag.quoted())).unwrap();
        assert!(weak.matches(&tag), "a weak tag matches for If-None-Match");
        assert!(!weak.matches(&other));
        assert!(IfNoneMatch::parse(&tag.quoted()).unwrap().matches(&tag));
        let list = IfNoneMatch::parse(&format!("{}, W/{}", other.quoted(), tag.quoted())).unwrap();
        assert!(list.matches(&tag));
        assert_eq!(IfNoneMatch::parse(" * "), Ok(IfNoneMatch::Any));
        assert!(IfNoneMatch::Any.matches(&other));
        for bad in [
            "garbage",
            "W/abc",
            "\"abc\"",
            "w/\"00000000000000000000000000000000\"",
        ] {
            assert_eq!(
                IfNoneMatch::parse(bad).map_err(|e| e.field),
                Err("If-None-Match"),
                "{bad}"
            );
        }
    }

    #[test]
    fn ttl_is_bounded() {
        assert_eq!(Ttl::parse("60").map(Ttl::seconds), Ok(60));
        for bad in ["0", "-1", "1.5", "x", "31536001"] {
            assert_eq!(Ttl::parse(bad).map_err(|e| e.field), Err("ttl"), "{bad}");
        }
    }
}
