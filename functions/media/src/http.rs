//! The media HTTP contract, mapped onto [`MediaStore`].
//!
//! `POST /v1/media/uploads` records a pending upload and answers its
//! presigned PUT; `GET /v1/media/{id}` answers the record (with download
//! URLs once ready); `DELETE /v1/media/{id}` removes it. Another
//! organization's id, and a receipt someone else uploaded (for a member),
//! answer 404.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use constellation_core::auth::Role;
use constellation_core::media::{MEDIA_ID_PATTERN, MediaId, Purpose, UploadSpec};
use constellation_web::error::ProblemType;
use constellation_web::extract::PathId;
use constellation_web::openapi::{Conventions, LinkDef, one_of, openapi_route, text};
use constellation_web::uploads::{
    PresignedView, UploadView, content_type_schema, filename_schema, size_schema,
};
use constellation_web::{ApiError, Authenticated, Json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::store::{Downloads, Media, MediaError, MediaStore, THUMBNAIL_TYPE, rfc3339};

/// The largest request body media accepts.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// The media routes (without the shared layers; see [`crate::app_with`]).
pub fn router(store: Arc<MediaStore>) -> Router {
    Router::new()
        .route("/v1/media/uploads", post(create_upload))
        .route("/v1/media/{id}", get(get_media).delete(delete_media))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(store)
        .merge(openapi_route("/v1/media/openapi.json", ApiDoc::openapi))
}

/// The media part of the OpenAPI document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Constellation media",
        description = "Presigned uploads, checked and thumbnailed by a worker; downloads by presigned URL."
    ),
    paths(create_upload, get_media, delete_media),
    components(schemas(UploadForCreate, UploadView, PresignedView, MediaView, ThumbnailView)),
    modifiers(&CONVENTIONS)
)]
pub struct ApiDoc;

const CONVENTIONS: Conventions = Conventions {
    service: crate::NAME,
    links: &[
        LinkDef {
            from: "create_upload",
            status: 201,
            to: "get_media",
            parameters: &[("id", "$response.body#/id")],
            body: &[],
        },
        LinkDef {
            from: "create_upload",
            status: 201,
            to: "delete_media",
            parameters: &[("id", "$response.body#/id")],
            body: &[],
        },
    ],
    idempotent: &[],
};

fn purpose_schema() -> Object {
    one_of(Purpose::ALL)
        .description(Some("What the file is for"))
        .build()
}

fn media_id_schema() -> Object {
    text()
        .pattern(Some(MEDIA_ID_PATTERN))
        .description(Some("A media id as issued"))
        .build()
}

/// `POST /v1/media/uploads`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadForCreate {
    /// `receipt`, `attachment` or `avatar`.
    #[schema(schema_with = purpose_schema)]
    pub purpose: String,
    /// `image/jpeg`, `image/png`, `image/webp` or `application/pdf`.
    #[schema(schema_with = content_type_schema)]
    pub content_type: String,
    /// Exact size in bytes, 1 to 10 MiB.
    #[schema(schema_with = size_schema)]
    #[serde(deserialize_with = "constellation_web::extract::whole_u64")]
    pub size: u64,
    /// The file's name (shown back, and offered when downloading).
    #[schema(schema_with = filename_schema)]
    pub filename: String,
}

/// A thumbnail's description.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ThumbnailView {
    /// Always `image/jpeg`.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A media record.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaView {
    /// The id.
    pub id: String,
    /// What it is for.
    pub purpose: String,
    /// The declared (and, once ready, checked) media type.
    pub content_type: String,
    /// The declared size in bytes.
    pub size: u64,
    /// The file name given.
    pub filename: String,
    /// `pending`, `ready` or `rejected`.
    pub status: String,
    /// The account that uploaded it.
    pub uploader: String,
    /// Why it was rejected: `size-mismatch`, `type-mismatch`, `unsupported-type`, `too-many-pixels` or `undecodable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Image width in pixels, upright (ready images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Image height in pixels, upright (ready images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// SHA-256 of the stored bytes (ready media).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The 256-pixel thumbnail (ready images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ThumbnailView>,
    /// A 5-minute URL downloading the file as an attachment (ready media).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_url: Option<String>,
    /// A 5-minute URL of the thumbnail (ready images).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// When the URLs stop working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urls_expire_at: Option<String>,
    /// When the upload was requested.
    pub created_at: String,
    /// The last change.
    pub updated_at: String,
}

impl MediaView {
    fn new(m: &Media, d: Option<&Downloads>) -> Self {
        Self {
            id: m.id.to_string(),
            purpose: m.purpose.as_str().to_owned(),
            content_type: m.content_type.as_str().to_owned(),
            size: m.size,
            filename: m.filename.clone(),
            status: m.status.as_str().to_owned(),
            uploader: m.uploader.clone(),
            reason: m.reason.clone(),
            width: m.width,
            height: m.height,
            sha256: m.sha256.clone(),
            thumbnail: m.thumbnail_size.map(|size| ThumbnailView {
                content_type: THUMBNAIL_TYPE.to_owned(),
                size,
            }),
            download_url: d.map(|d| d.download_url.clone()),
            thumbnail_url: d.and_then(|d| d.thumbnail_url.clone()),
            urls_expire_at: d.map(|d| rfc3339(d.expires_at)),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::NotFound => ApiError::not_found("no such media"),
            MediaError::Forbidden(why) => ApiError::client(ProblemType::Forbidden, why),
            MediaError::Contention => ApiError::client(
                ProblemType::Conflict,
                "the media is being changed concurrently; retry",
            ),
            MediaError::Store(e) => e.into(),
            MediaError::Blob(e) => e.into(),
        }
    }
}

type Reply<T> = Result<T, ApiError>;

/// The `{id}` path parameter.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MediaPath {
    /// The media id.
    #[param(schema_with = media_id_schema)]
    pub id: String,
}

/// Asks to upload a file: answers a pending media id and a 15-minute
/// presigned PUT pinned to the declared type and size.
#[utoipa::path(
    post,
    path = "/v1/media/uploads",
    request_body = UploadForCreate,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The pending media and where to PUT its bytes", body = UploadView,
            headers(("Location" = String, description = "The media's URL"))),
        (status = 400, description = "Invalid purpose, type, size or file name, or a malformed body; `field` names it"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn create_upload(
    State(store): State<Arc<MediaStore>>,
    auth: Authenticated,
    Json(body): Json<UploadForCreate>,
) -> Reply<Response> {
    let principal = auth.require(Role::Member)?;
    let spec = UploadSpec::parse(&body.purpose, &body.content_type, body.size, &body.filename)?;
    let view = store.create_upload(principal, &spec).await?;
    let location = format!("/v1/media/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::Json(view),
    )
        .into_response())
}

/// A media record; when ready, with 5-minute download URLs.
#[utoipa::path(
    get,
    path = "/v1/media/{id}",
    params(MediaPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The media", body = MediaView),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 404, description = "No such media in the caller's organization, or a receipt someone else uploaded"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn get_media(
    State(store): State<Arc<MediaStore>>,
    auth: Authenticated,
    PathId(id): PathId<MediaId>,
) -> Reply<Response> {
    let principal = auth.require(Role::Member)?;
    let media = store.get(principal, &id).await?;
    let downloads = store.downloads(&media).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(MediaView::new(&media, downloads.as_ref())),
    )
        .into_response())
}

/// Deletes media and its bytes (its uploader, or an admin or owner).
#[utoipa::path(
    delete,
    path = "/v1/media/{id}",
    params(MediaPath),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id; `field` names it"),
        (status = 403, description = "Neither its uploader nor an admin"),
        (status = 404, description = "No such media in the caller's organization"),
        (status = 409, description = "Changed concurrently; retry"),
        (status = 503, description = "Storage is briefly unavailable; retry after Retry-After"),
    )
)]
async fn delete_media(
    State(store): State<Arc<MediaStore>>,
    auth: Authenticated,
    PathId(id): PathId<MediaId>,
) -> Reply<StatusCode> {
    let principal = auth.require(Role::Member)?;
    store.delete(principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
