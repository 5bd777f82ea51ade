//! The key-value store's domain: namespaces, keys, entity tags and the
//! preconditions a write may carry.
//!
//! The rules here are the public kv contract: a namespace matches
//! `[a-z0-9][a-z0-9_-]{0,62}`; a key is 1-1024 bytes of UTF-8 without control
//! characters; a value is at most [`MAX_VALUE_BYTES`].

use serde::{Deserialize, Serialize};

use crate::ValidationError;
use crate::validation::{CONTROL_CHARS, class};

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
/// Hex digits in an entity tag.
pub const ETAG_HEX_DIGITS: usize = 32;

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

/// One entity tag as a conditional header carries it: strong or `W/` weak.
fn entity_tag_pattern() -> String {
    format!("(?:W/)?\"[0-9a-f]{{{ETAG_HEX_DIGITS}}}\"")
}

/// What `If-Match` (and `If-None-Match` on a read) accepts: `*` or a
/// comma-separated list of entity tags ([`parse_etag_list`]), as a regular
/// expression.
pub fn etag_list_pattern() -> String {
    let tag = entity_tag_pattern();
    format!("^[ \\t]*(?:\\*|{tag}(?:[ \\t]*,[ \\t]*{tag})*)[ \\t]*$")
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

/// An opaque entity tag that changes on every write of a key.
///
/// On the wire it is quoted (`"3f2a..."`); inside it is 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Etag(String);

impl Etag {
    /// Makes an etag from 16 bytes of entropy supplied by the caller (the core
    /// has no random source of its own).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut s = String::with_capacity(32);
        for b in bytes {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Self(s)
    }

    /// Parses the unquoted form (as stored).
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.len() == ETAG_HEX_DIGITS
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "etag",
                "must be 32 lowercase hex digits",
            ))
        }
    }

    /// The unquoted tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The quoted form used in `ETag` headers and response bodies.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl TryFrom<String> for Etag {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Etag> for String {
    fn from(value: Etag) -> Self {
        value.0
    }
}

/// An entity tag as a client sent it in a conditional header: strong
/// (`"…"`) or weak (`W/"…"`).
///
/// RFC 9110 §8.8.3.2 defines two comparisons: *strong* (both tags strong and
/// equal; `If-Match` uses it, because a write must be conditioned on exactly
/// the bytes the client saw) and *weak* (equal opaque parts, weakness
/// ignored; `If-None-Match` uses it, because a cache only needs an
/// equivalent representation). This store only issues strong tags, so a weak
/// tag can satisfy `If-None-Match` but never `If-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    /// The opaque part.
    pub etag: Etag,
    /// Whether the client sent it with the `W/` prefix.
    pub weak: bool,
}

impl EntityTag {
    /// A strong tag.
    pub fn strong(etag: Etag) -> Self {
        Self { etag, weak: false }
    }

    /// Strong comparison with the current (always strong) tag.
    pub fn strong_match(&self, current: &Etag) -> bool {
        !self.weak && &self.etag == current
    }

    /// Weak comparison with the current tag.
    pub fn weak_match(&self, current: &Etag) -> bool {
        &self.etag == current
    }
}

/// What a write requires of the current state of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No requirement (`PUT` or `DELETE` without conditional headers).
    None,
    /// `If-None-Match: *`: the key must not exist.
    Absent,
    /// `If-Match: *`: the key must exist, whatever its tag.
    Exists,
    /// `If-Match: "a", "b"`: the current tag must strongly match one of these
    /// (a `W/` tag in the list parses, and never matches).
    Matches(Vec<EntityTag>),
    /// `If-Match` and `If-None-Match: *` together: the key would have to
    /// exist and be absent at once, so no state admits the write.
    Unsatisfiable,
}

impl Precondition {
    /// Parses the conditional headers of a write. Anything but `*` in
    /// `If-None-Match` on a write is a client error.
    ///
    /// Both headers together are well-formed HTTP: RFC 9110 section 13.2.2
    /// evaluates `If-Match` first and `If-None-Match` after it. On a write
    /// `If-None-Match` can only be `*` (the key must be absent) while
    /// `If-Match` needs the key present, so the pair is
    /// [`Precondition::Unsatisfiable`] and the write fails with 412, once
    /// each header on its own has parsed.
    pub fn from_headers(
        if_match: Option<&str>,
        if_none_match: Option<&str>,
    ) -> Result<Self, ValidationError> {
        match (if_match, if_none_match) {
            (Some(im), Some(inm)) => {
                Self::from_headers(Some(im), None)?;
                Self::from_headers(None, Some(inm))?;
                Ok(Self::Unsatisfiable)
            }
            (None, None) => Ok(Self::None),
            (None, Some(inm)) => {
                if inm.trim() == "*" {
                    Ok(Self::Absent)
                } else {
                    Err(ValidationError::new(
                        "If-None-Match",
                        "on a write only `*` (create only) is supported",
                    ))
                }
            }
            (Some(im), None) => {
                if im.trim() == "*" {
                    Ok(Self::Exists)
                } else {
                    parse_etag_list("If-Match", im).map(Self::Matches)
                }
            }
        }
    }

    /// Whether a key whose current tag is `current` (`None` when absent)
    /// satisfies this, comparing tags strongly.
    pub fn admits(&self, current: Option<&Etag>) -> bool {
        match self {
            Self::None => true,
            Self::Absent => current.is_none(),
            Self::Exists => current.is_some(),
            Self::Matches(tags) => current.is_some_and(|c| tags.iter().any(|t| t.strong_match(c))),
            Self::Unsatisfiable => false,
        }
    }
}

/// `If-None-Match` on a read: `*` or a list of tags, compared weakly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfNoneMatch {
    /// `*`: any current representation matches.
    Any,
    /// The tags the client holds.
    Tags(Vec<EntityTag>),
}

impl IfNoneMatch {
    /// Parses the header's value.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.trim() == "*" {
            Ok(Self::Any)
        } else {
            parse_etag_list("If-None-Match", raw).map(Self::Tags)
        }
    }

    /// Whether the current tag matches (so a read answers 304 Not Modified).
    pub fn matches(&self, current: &Etag) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t.weak_match(current)),
        }
    }
}

/// Parses a comma-separated list of quoted entity tags (`"a", W/"b"`),
/// keeping whether each is weak; `field` names the header in errors.
pub fn parse_etag_list(field: &'static str, raw: &str) -> Result<Vec<EntityTag>, ValidationError> {
    let mut tags = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        let (weak, part) = match part.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, part),
        };
        let inner = part
            .strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .ok_or_else(|| {
                ValidationError::new(field, "must be `*` or a list of quoted entity tags")
            })?;
        let etag = Etag::parse(inner).map_err(|_| {
            ValidationError::new(field, "names an entity tag this store never issued")
        })?;
        tags.push(EntityTag { etag, weak });
    }
    Ok(tags)
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
