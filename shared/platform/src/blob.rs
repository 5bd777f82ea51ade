//! The BlobStore port: object storage with presigned URLs.
//!
//! A presigned PUT pins the content type and the exact content length, so a
//! client handed the URL can upload only what the service agreed to; both
//! presigned forms expire.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;

/// What is known of a stored object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// The content type given when it was stored.
    pub content_type: String,
    /// Its size in bytes.
    pub content_length: u64,
}

/// A request a client can make without credentials, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// `PUT` or `GET`.
    pub method: String,
    /// The full URL.
    pub url: String,
    /// Headers the client must send exactly as given.
    pub headers: Vec<(String, String)>,
    /// When the URL stops working.
    pub expires_at: OffsetDateTime,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The request is malformed (bad key, expiry out of range...).
    #[error("invalid blob request: {0}")]
    Invalid(String),
    /// The backend is throttling or briefly unreachable.
    #[error("blob storage temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else from the backend.
    #[error("blob storage backend error")]
    Backend(#[source] anyhow::Error),
}

/// The longest a presigned URL may live (S3's own limit for SigV4).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// An object store (one bucket).
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `body` under `key`, replacing what was there.
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError>;
    /// Reads an object.
    async fn get(&self, key: &str) -> Result<Option<(BlobMeta, Bytes)>, BlobError>;
    /// Reads an object's metadata.
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError>;
    /// Removes an object; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// A URL that accepts exactly one upload of `content_length` bytes of `content_type`.
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError>;
    /// A URL that reads the object. With `content_disposition`, the
    /// response carries that `Content-Disposition` header (S3's
    /// `response-content-disposition`), covered by the signature.
    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        content_disposition: Option<&str>,
    ) -> Result<PresignedRequest, BlobError>;
}

/// Checks an object key: 1-1024 bytes, no control characters, no `..` segment,
/// not starting with `/`. Both adapters apply it, so a key that works locally
/// works on S3 and cannot escape the local blob directory.
pub fn validate_blob_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && !key.chars().any(char::is_control)
        && !key
            .split('/')
            .any(|seg| seg == ".." || seg == "." || seg.is_empty());
    if ok {
        Ok(())
    } else {
        Err(BlobError::Invalid(format!("bad object key {key:?}")))
    }
}

/// Checks a presign expiry.
pub fn validate_expiry(expires_in: Duration) -> Result<(), BlobError> {
    if expires_in.is_zero() || expires_in > MAX_PRESIGN_EXPIRY {
        Err(BlobError::Invalid(
            "presigned URLs live between 1 second and 7 days".into(),
        ))
    } else {
        Ok(())
    }
}

/// Checks a `Content-Disposition` value to be signed into a URL: visible
/// ASCII and spaces, at most 1024 bytes (build it with [`attachment`]).
pub fn validate_disposition(value: &str) -> Result<(), BlobError> {
    if !value.is_empty()
        && value.len() <= 1024
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        Ok(())
    } else {
        Err(BlobError::Invalid(
            "a content disposition is 1 to 1024 visible ASCII characters".into(),
        ))
    }
}

/// Characters RFC 8187's `attr-char` leaves unescaped.
const ATTR_CHAR_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The most bytes the percent-encoded name takes in [`attachment`].
const MAX_ENCODED_NAME: usize = 600;
/// The most characters of the ASCII fallback name in [`attachment`].
const MAX_FALLBACK_NAME: usize = 150;

/// `name` cut (on a character boundary, keeping an extension of up to 16
/// characters) to the longest prefix whose `cost` is at most `limit`.
fn shorten(name: &str, limit: usize, cost: impl Fn(&str) -> usize) -> String {
    if cost(name) <= limit {
        return name.to_owned();
    }
    let ext = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|e| e.chars().count() <= 16 && cost(e) < limit)
        .unwrap_or("");
    let stem = &name[..name.len() - ext.len()];
    let mut kept = String::new();
    for c in stem.chars() {
        let mut next = kept.clone();
        next.push(c);
        if cost(&next) + cost(ext) > limit {
            break;
        }
        kept = next;
    }
    kept + ext
}

/// `attachment; filename="<ascii fallback>"; filename*=UTF-8''<name>`
/// (RFC 6266 with RFC 8187 encoding): a download saved under `filename`
/// whatever its characters, and never shown inline. The fallback replaces
/// every character outside printable ASCII, and `"` and `\\`, with `_`.
/// Long names are shortened (keeping their extension) so that the value
/// always fits the 1024 bytes a presigned URL may carry.
pub fn attachment(filename: &str) -> String {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, ATTR_CHAR_ESCAPES).to_string();
    let encoded = encode(&shorten(filename, MAX_ENCODED_NAME, |s| encode(s).len()));
    let fallback: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let fallback = shorten(&fallback, MAX_FALLBACK_NAME, |s| s.chars().count());
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Checks a content type with the same rule the HTTP edge applies
/// ([`constellation_core::media::MediaType`]), so both backends accept the same types.
pub fn validate_content_type(content_type: &str) -> Result<(), BlobError> {
    constellation_core::media::MediaType::parse("content_type", content_type)
        .map(drop)
        .map_err(|e| BlobError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_name_makes_a_disposition_a_url_can_carry() {
        for name in [
            "Beleg März.jpg".to_owned(),
            "日本語の領収書".repeat(40) + ".pdf",
            "é".repeat(255),
            format!("{}.jpeg", "\"".repeat(250)),
        ] {
            let value = attachment(&name);
            assert!(validate_disposition(&value).is_ok(), "{name}: {value}");
        }
        let long = attachment(&("é".repeat(300) + ".pdf"));
        assert!(
            long.ends_with(".pdf"),
            "the extension survives shortening: {long}"
        );
        assert_eq!(
            attachment("a \"b\".png"),
            "attachment; filename=\"a _b_.png\"; filename*=UTF-8''a%20%22b%22.png"
        );
    }
}
