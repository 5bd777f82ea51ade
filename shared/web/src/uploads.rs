//! The answer to "I want to upload a file": a pending media id and a
//! presigned PUT. Media answers it for `POST /v1/media/uploads`, and any
//! service that takes files (expenses' receipts) answers the same body for
//! its own route, presigning into the media bucket under the key media's
//! worker watches ([`constellation_core::media::upload_key`]).

use std::collections::BTreeMap;
use std::time::Duration;

use constellation_core::OrgId;
use constellation_core::media::{
    MAX_FILENAME_CHARS, MAX_UPLOAD_BYTES, MediaId, UploadSpec, UploadType, upload_key,
};
use constellation_platform::blob::{BlobError, BlobStore};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa::openapi::schema::Object;

use crate::openapi::{integer, one_of, plain_text_pattern, text};

/// How long an upload URL works.
pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// A presigned request, as clients get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PresignedView {
    /// Where to send the bytes.
    pub url: String,
    /// `PUT`.
    pub method: String,
    /// Headers to send exactly as given (the pinned type and length).
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working (RFC 3339).
    pub expires_at: String,
}

/// `201` to an upload request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UploadView {
    /// The media id.
    pub id: String,
    /// `pending` until the worker has checked the bytes.
    pub status: String,
    /// The presigned PUT.
    pub upload: PresignedView,
}

/// Presigns the PUT of `spec`'s bytes for media `id` of `org` into `blobs`
/// (the media bucket): exactly `spec.size` bytes of `spec.content_type`, for
/// [`UPLOAD_URL_LIFETIME`].
pub async fn presign_upload(
    blobs: &dyn BlobStore,
    org: &OrgId,
    id: &MediaId,
    spec: &UploadSpec,
) -> Result<UploadView, BlobError> {
    let request = blobs
        .presign_put(
            &upload_key(org, id),
            spec.content_type.as_str(),
            spec.size,
            UPLOAD_URL_LIFETIME,
        )
        .await?;
    let mut headers: BTreeMap<String, String> = request.headers.into_iter().collect();
    headers
        .entry("content-type".to_owned())
        .or_insert_with(|| spec.content_type.as_str().to_owned());
    headers
        .entry("content-length".to_owned())
        .or_insert_with(|| spec.size.to_string());
    Ok(UploadView {
        id: id.to_string(),
        status: "pending".to_owned(),
        upload: PresignedView {
            url: request.url,
            method: request.method,
            headers,
            expires_at: request.expires_at.format(&Rfc3339).unwrap_or_default(),
        },
    })
}

/// The schema of `content_type` in an upload request.
pub fn content_type_schema() -> Object {
    one_of(UploadType::ALL)
        .description(Some("The file's media type"))
        .build()
}

/// The schema of `size` in an upload request.
pub fn size_schema() -> Object {
    integer(1, MAX_UPLOAD_BYTES)
        .description(Some("The file's exact size in bytes (at most 10 MiB)"))
        .build()
}

/// The schema of `filename` in an upload request.
pub fn filename_schema() -> Object {
    text()
        .min_length(Some(1))
        .max_length(Some(MAX_FILENAME_CHARS))
        .pattern(Some(plain_text_pattern(true)))
        .description(Some(
            "The file's name, offered back when it is downloaded: 1 to 255 characters, not blank, no control characters",
        ))
        .examples(["receipt-2026-03.jpg"])
        .build()
}
