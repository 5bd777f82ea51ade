//! Entity tags and the conditional headers that carry them (RFC 9110
//! section 8.8.3 and 13.1): what every service that lets clients write
//! conditionally (`If-Match`) or revalidate (`If-None-Match`) parses.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Hex digits in an entity tag.
pub const ETAG_HEX_DIGITS: usize = 32;

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

/// [`etag_list_pattern`] without `*`: what an edit that must name the tag
/// it read accepts.
pub fn etag_tags_pattern() -> String {
    let tag = entity_tag_pattern();
    format!("^[ \\t]*{tag}(?:[ \\t]*,[ \\t]*{tag})*[ \\t]*$")
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
