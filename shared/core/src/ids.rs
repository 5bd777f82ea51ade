//! Identifiers shared by every service.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The organization that owns a piece of data; the first component of every
/// storage key, so that tenancy is enforced by the key layout itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgId(String);

impl OrgId {
    /// Parses an organization id: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new(
                "org",
                "must be 1-64 characters of letters, digits, '-' or '_'",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::validation::text_newtype!(OrgId);

/// A record id that sorts by creation time: 12 hex digits of the creation
/// time in milliseconds, then 20 of the caller's randomness (the core has
/// no clock and no random source of its own).
pub fn time_ordered_id(unix_millis: u64, random: u128) -> String {
    let random = random & ((1_u128 << 80) - 1);
    format!("{:012x}{random:020x}", unix_millis & 0xffff_ffff_ffff)
}

/// [`time_ordered_id`] of the moment `at` (its Unix milliseconds; 0 before
/// 1970). `random` is fresh randomness for a new record, or for a record
/// imported from elsewhere a seed derived from its legacy id, so that a
/// re-run makes the same id and the record sorts by when it really was.
pub fn time_ordered_id_at(at: time::OffsetDateTime, random: u128) -> String {
    let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    time_ordered_id(millis, random)
}

/// An id type of time-ordered ids ([`time_ordered_id_at`]): the newtype,
/// `at`, `parse` (refusing anything not as issued, naming `id` and the
/// `$noun`) and `as_str`.
#[macro_export]
macro_rules! time_ordered_id_type {
    ($(#[$meta:meta])* $name:ident, $noun:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id of a record made at `at`, with `random` (see
            /// [`time_ordered_id_at`]($crate::ids::time_ordered_id_at)).
            pub fn at(at: time::OffsetDateTime, random: u128) -> Self {
                Self($crate::ids::time_ordered_id_at(at, random))
            }

            /// Parses an id as issued.
            pub fn parse(raw: &str) -> Result<Self, $crate::ValidationError> {
                if $crate::ids::is_time_ordered_id(raw) {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err($crate::ValidationError::new(
                        "id",
                        concat!("must be ", $noun, " id as issued"),
                    ))
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Whether `raw` is an id as [`time_ordered_id`] makes them: 32 lowercase
/// hex digits.
pub fn is_time_ordered_id(raw: &str) -> bool {
    raw.len() == 32
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The pattern of [`time_ordered_id`]s (for OpenAPI documents).
pub const TIME_ORDERED_ID_PATTERN: &str = "^[0-9a-f]{32}$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_are_restricted_to_key_safe_characters() {
        assert!(OrgId::parse("acme-01").is_ok());
        assert_eq!(OrgId::parse("").map_err(|e| e.field), Err("org"));
        assert!(OrgId::parse("a#b").is_err());
        assert!(OrgId::parse(&"x".repeat(65)).is_err());
    }
}
