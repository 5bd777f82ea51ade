//! Media types as clients send them in `Content-Type`.
//!
//! One parser, so that the kv service and both blob backends accept exactly
//! the same content types: `type/subtype` of RFC 9110 tokens, optionally
//! followed by `;` parameters, in at most 255 visible ASCII characters.

use std::fmt;

use crate::{OrgId, ValidationError};

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

// ---------------------------------------------------------------------------
// Uploads: what a client may ask to upload, and where it lands.

/// The largest upload, in bytes (10 MiB).
pub const MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// The longest file name, in characters.
pub const MAX_FILENAME_CHARS: usize = 255;

/// What an upload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// An expense's receipt.
    Receipt,
    /// An attachment (of an announcement, say).
    Attachment,
    /// An account's picture.
    Avatar,
}

impl Purpose {
    /// Every purpose, as the wire spells them.
    pub const ALL: [&'static str; 3] = ["receipt", "attachment", "avatar"];

    /// Parses `receipt`, `attachment` or `avatar`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "receipt" => Ok(Self::Receipt),
            "attachment" => Ok(Self::Attachment),
            "avatar" => Ok(Self::Avatar),
            _ => Err(ValidationError::new(
                field,
                "must be one of receipt, attachment, avatar",
            )),
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Attachment => "attachment",
            Self::Avatar => "avatar",
        }
    }
}

/// The content types an upload may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UploadType {
    /// `image/jpeg`
    Jpeg,
    /// `image/png`
    Png,
    /// `image/webp`
    Webp,
    /// `application/pdf`
    Pdf,
}

impl UploadType {
    /// Every accepted type, as the wire spells them.
    pub const ALL: [&'static str; 4] = ["image/jpeg", "image/png", "image/webp", "application/pdf"];

    /// Parses one of [`UploadType::ALL`], case-insensitively (media types
    /// are), without parameters.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let lower = raw.to_ascii_lowercase();
        match lower.as_str() {
            "image/jpeg" => Ok(Self::Jpeg),
            "image/png" => Ok(Self::Png),
            "image/webp" => Ok(Self::Webp),
            "application/pdf" => Ok(Self::Pdf),
            _ => Err(ValidationError::new(
                field,
                "must be one of image/jpeg, image/png, image/webp, application/pdf",
            )),
        }
    }

    /// The media type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Pdf => "application/pdf",
        }
    }

    /// The file extension a download of this type is saved with.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Pdf => "pdf",
        }
    }

    /// Whether it is an image (decoded, measured and thumbnailed).
    pub fn is_image(self) -> bool {
        !matches!(self, Self::Pdf)
    }
}

/// A media id: 32 lowercase hex digits (a random UUID without dashes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaId(String);

impl MediaId {
    /// A new id from 16 random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Parses an id as issued.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.len() == 32
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new("id", "must be a media id as issued"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::validation::text_newtype!(MediaId);

/// The pattern of a [`MediaId`] (for the OpenAPI document).
pub const MEDIA_ID_PATTERN: &str = "^[0-9a-f]{32}$";

/// Unicode's bidirectional formatting characters, which can make a name
/// display with another extension than it has (`invoice` U+202E `fdp.exe` shows as `invoiceexe.pdf`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A file name as the client gave it: 1 to 255 characters, no control
/// characters, not only whitespace. It is only ever shown back and offered
/// as the download's name, never used in a storage key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filename(String);

impl Filename {
    /// Parses a file name; `field` names the input in the error.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if chars == 0
            || chars > MAX_FILENAME_CHARS
            || raw.chars().any(|c| c.is_control() || is_bidi_control(c))
            || raw.trim().is_empty()
        {
            return Err(ValidationError::new(
                field,
                "must be 1 to 255 characters, not blank, without control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated upload request: what the presigned PUT will pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSpec {
    /// What it is for.
    pub purpose: Purpose,
    /// Its declared type.
    pub content_type: UploadType,
    /// Its declared size in bytes, 1 to [`MAX_UPLOAD_BYTES`].
    pub size: u64,
    /// Its file name.
    pub filename: Filename,
}

impl UploadSpec {
    /// Checks each input, naming the field at fault.
    pub fn parse(
        purpose: &str,
        content_type: &str,
        size: u64,
        filename: &str,
    ) -> Result<Self, ValidationError> {
        let purpose = Purpose::parse("purpose", purpose)?;
        let content_type = UploadType::parse("content_type", content_type)?;
        if !(1..=MAX_UPLOAD_BYTES).contains(&size) {
            return Err(ValidationError::new(
                "size",
                format!("must be 1 to {MAX_UPLOAD_BYTES} bytes"),
            ));
        }
        let filename = Filename::parse("filename", filename)?;
        Ok(Self {
            purpose,
            content_type,
            size,
            filename,
        })
    }
}

/// Where the client's bytes land (the bucket notifies the worker of this prefix).
pub const UPLOAD_PREFIX: &str = "uploads/";

/// The object key of an upload: built from organization and id only.
pub fn upload_key(org: &OrgId, id: &MediaId) -> String {
    format!("{UPLOAD_PREFIX}{org}/{id}")
}

/// The object key of accepted media (metadata stripped).
pub fn stored_key(org: &OrgId, id: &MediaId) -> String {
    format!("media/{org}/{id}")
}

/// The object key of an image's thumbnail.
pub fn thumbnail_key(org: &OrgId, id: &MediaId) -> String {
    format!("thumbnails/{org}/{id}")
}

/// The organization and id of an upload's key, if it is one.
pub fn parse_upload_key(key: &str) -> Option<(OrgId, MediaId)> {
    let rest = key.strip_prefix(UPLOAD_PREFIX)?;
    let (org, id) = rest.split_once('/')?;
    Some((OrgId::parse(org).ok()?, MediaId::parse(id).ok()?))
}

// ---------------------------------------------------------------------------
// Events: how media and the services that use it talk.

/// Event types media publishes and consumes.
pub mod events {
    /// Another service asks media to expect an upload (consumed by media).
    pub const REQUESTED: &str = "media.requested";
    /// An upload passed every check and is ready to download.
    pub const READY: &str = "media.ready";
    /// An upload failed a check; its object was deleted.
    pub const REJECTED: &str = "media.rejected";
    /// Media was deleted.
    pub const DELETED: &str = "media.deleted";
    /// An expense was deleted: media deletes the receipts it owned
    /// ([`super::OwnerDeleted`]).
    pub const EXPENSE_DELETED: &str = "expense.deleted";
}

/// The data of an event saying a record that owned media is gone: media
/// deletes each listed media whose owner it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnerDeleted {
    /// The record that is gone.
    pub owner: MediaOwner,
    /// The ids of the media it owned.
    pub media: Vec<String>,
}

/// Which record of which service an upload belongs to (a receipt's expense,
/// say); media echoes it in every event about the upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaOwner {
    /// The owning service.
    pub service: String,
    /// The owning record's id in that service.
    pub id: String,
}

/// The data of [`events::REQUESTED`]: an upload another service presigned
/// (under [`upload_key`]) and media is to track.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaRequested {
    /// The media id.
    pub id: String,
    /// The account uploading.
    pub uploader: String,
    /// [`Purpose`] as the wire spells it.
    pub purpose: String,
    /// [`UploadType`] as the wire spells it.
    pub content_type: String,
    /// The declared size.
    pub size: u64,
    /// The file name.
    pub filename: String,
    /// The record it belongs to.
    pub owner: Option<MediaOwner>,
}

/// The data of [`events::READY`], [`events::REJECTED`] and [`events::DELETED`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaChanged {
    /// The media id.
    pub id: String,
    /// `ready`, `rejected` or `deleted`.
    pub status: String,
    /// [`Purpose`] as the wire spells it.
    pub purpose: String,
    /// The account that uploaded it.
    pub uploader: String,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The record it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<MediaOwner>,
    /// Once ready: the object key of the checked bytes in the media bucket,
    /// so a service showing the media (comms' attachments) can presign a
    /// download without reading media's table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_key: Option<String>,
    /// Once ready: the name a download is saved under (the client's name
    /// with the checked type's extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_name: Option<String>,
    /// Once ready: the checked content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upload_specs_name_the_field_at_fault() {
        let ok = UploadSpec::parse("receipt", "IMAGE/JPEG", 1, "März.jpg").unwrap();
        assert_eq!(ok.content_type, UploadType::Jpeg);
        for (args, field) in [
            (("logo", "image/png", 5, "a"), "purpose"),
            (("receipt", "image/gif", 5, "a"), "content_type"),
            (("receipt", "image/png; q=1", 5, "a"), "content_type"),
            (("receipt", "image/png", 0, "a"), "size"),
            (("receipt", "image/png", MAX_UPLOAD_BYTES + 1, "a"), "size"),
            (("receipt", "image/png", 5, ""), "filename"),
            (("receipt", "image/png", 5, "  "), "filename"),
            (("receipt", "image/png", 5, "a\nb"), "filename"),
            (
                ("receipt", "image/png", 5, "bill\u{202e}gnp.exe"),
                "filename",
            ),
        ] {
            let (p, t, s, f) = args;
            assert_eq!(
                UploadSpec::parse(p, t, s, f).unwrap_err().field,
                field,
                "{args:?}"
            );
        }
        let long = "é".repeat(MAX_FILENAME_CHARS);
        assert!(Filename::parse("filename", &long).is_ok());
        assert!(Filename::parse("filename", &format!("{long}x")).is_err());
    }

    #[test]
    fn upload_keys_hold_only_org_and_id() {
        let org = OrgId::parse("acme").unwrap();
        let id = MediaId::from_bytes([0xab; 16]);
        let key = upload_key(&org, &id);
        assert_eq!(key, format!("uploads/acme/{}", "ab".repeat(16)));
        assert_eq!(parse_upload_key(&key), Some((org.clone(), id.clone())));
        assert_eq!(parse_upload_key(&stored_key(&org, &id)), None);
        assert_eq!(parse_upload_key("uploads/acme/../x"), None);
        assert_eq!(parse_upload_key("uploads/acme"), None);
        assert!(MediaId::parse(&"AB".repeat(16)).is_err());
    }

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
