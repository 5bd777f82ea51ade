//! The BlobStore port over files, plus the HTTP endpoint that honours its
//! presigned URLs.
//!
//! Object bytes live at `<data_dir>/blobs/<bucket>/<key>`; their content type
//! and length live in the `blobs` table, which is the commit point: bytes are
//! written to a temporary file, then renamed into place inside the same
//! `BEGIN IMMEDIATE` transaction that records the metadata, so an object is
//! either wholly there or not there, also across processes.
//!
//! Presigned URLs imitate S3's: they carry the method, the pinned content
//! type and length and a wall-clock expiry, all covered by an HMAC-SHA256
//! signature that [`router`] checks before it reads the body.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use bytes::Bytes;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rusqlite::{OptionalExtension as _, params};
use serde::Deserialize;
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::{Fail, LocalBackend};
use crate::blob::{
    BlobError, BlobMeta, BlobStore, PresignedRequest, validate_blob_key, validate_content_type,
    validate_disposition, validate_expiry,
};

/// Characters escaped in a key's URL path: all but unreserved ones and `/`.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// Characters escaped in a query-string value.
const QUERY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A key that signs presigned URLs; its `Debug` does not print it.
#[derive(Clone)]
struct SigningKey([u8; 32]);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(**redacted**)")
    }
}

impl SigningKey {
    /// The MAC over everything a presigned URL pins.
    fn mac(&self, grant: &Grant<'_>) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        let length = grant
            .content_length
            .map(|n| n.to_string())
            .unwrap_or_default();
        // Keys, buckets and content types hold no control characters, so `\n` separates unambiguously.
        for part in [
            grant.method,
            grant.bucket,
            grant.key,
            grant.content_type.unwrap_or_default(),
            &length,
            &grant.expires.to_string(),
            grant.disposition.unwrap_or_default(),
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac
    }
}

/// What one presigned URL allows.
struct Grant<'a> {
    method: &'a str,
    bucket: &'a str,
    key: &'a str,
    content_type: Option<&'a str>,
    content_length: Option<u64>,
    /// Unix seconds.
    expires: i64,
    /// The `Content-Disposition` a GET answers with.
    disposition: Option<&'a str>,
}

/// Reads the key a [`FileBlobStore`] signs URLs with (see
/// [`LocalBackend::blob_store_on_first_use`]).
pub type SigningKeySource =
    Arc<dyn Fn() -> BoxFuture<'static, Result<[u8; 32], BlobError>> + Send + Sync>;

/// A [`BlobStore`] over files in the local data directory.
#[derive(Clone)]
pub struct FileBlobStore {
    backend: LocalBackend,
    bucket: String,
    base_url: String,
    /// The key URLs are signed with, once read (`source` reads it).
    signing_key: Arc<OnceCell<SigningKey>>,
    source: SigningKeySource,
}

impl std::fmt::Debug for FileBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBlobStore")
            .field("bucket", &self.bucket)
            .field("base_url", &self.base_url)
            .field("key_read", &self.signing_key.initialized())
            .finish_non_exhaustive()
    }
}

fn validate_bucket(bucket: &str) -> Result<(), BlobError> {
    let ok = !bucket.is_empty()
        && bucket.len() <= 255
        && !bucket.starts_with('.')
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(BlobError::Invalid(format!("bad bucket name {bucket:?}")))
    }
}

impl FileBlobStore {
    pub(super) fn new(
        backend: LocalBackend,
        bucket: &str,
        base_url: &str,
        signing_key: [u8; 32],
    ) -> Self {
        Self {
            backend,
            bucket: bucket.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            signing_key: Arc::new(OnceCell::new_with(Some(SigningKey(signing_key)))),
            source: Arc::new(move || Box::pin(async move { Ok(signing_key) })),
        }
    }

    pub(super) fn on_first_use(
        backend: LocalBackend,
        bucket: &str,
        base_url: &str,
        source: SigningKeySource,
    ) -> Self {
        Self {
            backend,
            bucket: bucket.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            signing_key: Arc::new(OnceCell::new()),
            source,
        }
    }

    /// The signing key, read by the first presign that needs it; a failed
    /// read fails that presign (the source logs it) and the next one tries
    /// again.
    async fn signing_key(&self) -> Result<&SigningKey, BlobError> {
        self.signing_key
            .get_or_try_init(|| async { (self.source)().await.map(SigningKey) })
            .await
    }

    fn presign(&self, key: &SigningKey, grant: &Grant<'_>) -> PresignedRequest {
        let mut url = format!(
            "{}/_local/blobs/{}/{}?X-Method={}",
            self.base_url,
            grant.bucket,
            utf8_percent_encode(grant.key, KEY_ESCAPES),
            grant.method
        );
        let mut headers = Vec::new();
        if let Some(ct) = grant.content_type {
            let _ = write!(
                url,
                "&X-Content-Type={}",
                utf8_percent_encode(ct, QUERY_ESCAPES)
            );
            headers.push(("content-type".to_owned(), ct.to_owned()));
        }
        if let Some(length) = grant.content_length {
            let _ = write!(url, "&X-Content-Length={length}");
        }
        if let Some(disposition) = grant.disposition {
            let _ = write!(
                url,
                "&X-Response-Content-Disposition={}",
                utf8_percent_encode(disposition, QUERY_ESCAPES)
            );
        }
        let signature = hex::encode(key.mac(grant).finalize().into_bytes());
        let _ = write!(url, "&X-Expires={}&X-Signature={signature}", grant.expires);
        PresignedRequest {
            method: grant.method.to_owned(),
            url,
            headers,
            expires_at: OffsetDateTime::from_unix_timestamp(grant.expires)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }
    }
}

/// When a URL presigned now for `expires_in` stops working, in whole unix
/// seconds (truncated, as S3's `X-Amz-Date` is). Wall-clock time, as S3
/// uses: the URL leaves this process, and with it any test clock.
fn expiry(expires_in: Duration) -> Result<i64, BlobError> {
    validate_expiry(expires_in)?;
    Ok((OffsetDateTime::now_utc() + expires_in).unix_timestamp())
}

/// Reads and writes objects of any bucket under one data directory.
#[derive(Debug, Clone)]
struct Objects {
    backend: LocalBackend,
}

impl Objects {
    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, BlobError> {
        validate_bucket(bucket)?;
        validate_blob_key(key)?;
        Ok(self.backend.blob_dir().join(bucket).join(key))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), BlobError> {
        let path = self.path(bucket, key)?;
        validate_content_type(content_type)?;
        let tmp_dir = self.backend.blob_dir().join(".tmp");
        let (bucket, key, content_type) =
            (bucket.to_owned(), key.to_owned(), content_type.to_owned());
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let tmp = tmp_dir.join(uuid::Uuid::new_v4().simple().to_string());
        let (staged, body_len) = (tmp.clone(), body.len() as i64);
        let parent = path.parent().map(std::path::Path::to_path_buf);
        // The bytes are written and synced off the writer, which only
        // records the metadata and renames the file into place.
        let wrote = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&tmp_dir)?;
            if let Some(parent) = parent {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = std::fs::File::create(&staged)?;
            file.write_all(&body)?;
            file.sync_all()
        })
        .await;
        match wrote {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(BlobError::Backend(
                    anyhow::Error::new(e).context("put blob"),
                ));
            }
            Err(e) => {
                return Err(BlobError::Backend(
                    anyhow::Error::new(e).context("put blob"),
                ));
            }
        }
        let staged = tmp.clone();
        let written = self
            .backend
            .write("put blob", move |tx| {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO blobs (bucket, key, content_type, length, updated_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![bucket, key, content_type, body_len, now])?;
                notify_created(tx, &bucket, &key, body_len)?;
                std::fs::rename(&staged, &path)?;
                Ok(())
            })
            .await;
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.path(bucket, key)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.backend.read_now("head blob", move |conn| {
            let meta = conn
                .prepare_cached(
                    "SELECT content_type, length FROM blobs WHERE bucket = ? AND key = ?",
                )?
                .query_row(params![bucket, key], |row| {
                    Ok(BlobMeta {
                        content_type: row.get(0)?,
                        content_length: row.get::<_, i64>(1)?.try_into().unwrap_or_default(),
                    })
                })
                .optional()?;
            Ok(meta)
        })
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<(BlobMeta, Bytes)>, BlobError> {
        let Some(mut meta) = self.head(bucket, key).await? else {
            return Ok(None);
        };
        let path = self.path(bucket, key)?;
        match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
            Ok(Ok(body)) => {
                meta.content_length = body.len() as u64;
                Ok(Some((meta, Bytes::from(body))))
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Ok(Err(e)) => Err(BlobError::Backend(
                anyhow::Error::new(e).context("read blob"),
            )),
            Err(e) => Err(BlobError::Backend(
                anyhow::Error::new(e).context("read blob"),
            )),
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let path = self.path(bucket, key)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.backend
            .write("delete blob", move |tx| {
                tx.prepare_cached("DELETE FROM blobs WHERE bucket = ? AND key = ?")?
                    .execute(params![bucket, key])?;
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                    _ => Ok(()),
                }
            })
            .await
    }
}

/// Sends the S3 event notification of a new object to every queue a
/// notification of `bucket` names for a prefix of `key`, inside the write
/// transaction that stores the object: the event is there exactly when the
/// object is. The body has the shape S3 sends to SQS (`Records[].s3`, the
/// key URL-encoded), so one worker reads both.
fn notify_created(
    tx: &rusqlite::Connection,
    bucket: &str,
    key: &str,
    size: i64,
) -> Result<(), Fail<BlobError>> {
    let queues = tx
        .prepare_cached("SELECT prefix, queue FROM bucket_notifications WHERE bucket = ?")?
        .query_map(params![bucket], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let queues: Vec<&str> = queues
        .iter()
        .filter(|(prefix, _)| key.starts_with(prefix.as_str()))
        .map(|(_, queue)| queue.as_str())
        .collect();
    if queues.is_empty() {
        return Ok(());
    }
    let time = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "local",
            "eventTime": time,
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "constellation-local",
                "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": {
                    "key": utf8_percent_encode(key, QUERY_ESCAPES).to_string(),
                    "size": size,
                    "sequencer": format!("{:016X}", OffsetDateTime::now_utc().unix_timestamp_nanos()),
                },
            },
        }],
    })
    .to_string();
    for queue in queues {
        super::queue::insert_messages::<BlobError>(tx, queue, &[body.as_str()])?;
    }
    Ok(())
}

impl LocalBackend {
    /// Replaces the event notifications of `bucket`: each object created
    /// under one of the prefixes is announced on its queue (what
    /// template.yaml's `NotificationConfiguration` does in AWS). `serve`
    /// sets them at start from the services' bucket resources.
    pub async fn set_bucket_notifications(
        &self,
        bucket: &str,
        notifications: &[(String, String)],
    ) -> Result<(), BlobError> {
        validate_bucket(bucket)?;
        let (bucket, notifications) = (bucket.to_owned(), notifications.to_vec());
        self.write("set bucket notifications", move |tx| {
            tx.prepare_cached("DELETE FROM bucket_notifications WHERE bucket = ?")?
                .execute(params![bucket])?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO bucket_notifications (bucket, prefix, queue) VALUES (?, ?, ?)",
            )?;
            for (prefix, queue) in &notifications {
                insert.execute(params![bucket, prefix, queue])?;
            }
            Ok::<_, Fail<BlobError>>(())
        })
        .await
    }
}

#[async_trait]
impl BlobStore for FileBlobStore {
    #[tracing::instrument(skip(self, body), fields(bucket = %self.bucket, len = body.len()))]
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        self.objects()
            .put(&self.bucket, key, body, content_type)
            .await
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn get(&self, key: &str) -> Result<Option<(BlobMeta, Bytes)>, BlobError> {
        self.objects().get(&self.bucket, key).await
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.objects().head(&self.bucket, key).await
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.objects().delete(&self.bucket, key).await
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        validate_bucket(&self.bucket)?;
        validate_blob_key(key)?;
        validate_content_type(content_type)?;
        let expires = expiry(expires_in)?;
        Ok(self.presign(
            self.signing_key().await?,
            &Grant {
                method: "PUT",
                bucket: &self.bucket,
                key,
                content_type: Some(content_type),
                content_length: Some(content_length),
                expires,
                disposition: None,
            },
        ))
    }

    #[tracing::instrument(skip(self, content_disposition), fields(bucket = %self.bucket))]
    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        content_disposition: Option<&str>,
    ) -> Result<PresignedRequest, BlobError> {
        validate_bucket(&self.bucket)?;
        validate_blob_key(key)?;
        if let Some(disposition) = content_disposition {
            validate_disposition(disposition)?;
        }
        let expires = expiry(expires_in)?;
        Ok(self.presign(
            self.signing_key().await?,
            &Grant {
                method: "GET",
                bucket: &self.bucket,
                key,
                content_type: None,
                content_length: None,
                expires,
                disposition: content_disposition,
            },
        ))
    }
}

impl FileBlobStore {
    fn objects(&self) -> Objects {
        Objects {
            backend: self.backend.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct RouterState {
    objects: Objects,
    signing_key: SigningKey,
}

/// The query string of a presigned URL.
#[derive(Debug, Deserialize)]
struct Signed {
    #[serde(rename = "X-Method")]
    method: String,
    #[serde(rename = "X-Content-Type")]
    content_type: Option<String>,
    #[serde(rename = "X-Content-Length")]
    content_length: Option<u64>,
    #[serde(rename = "X-Expires")]
    expires: i64,
    #[serde(rename = "X-Response-Content-Disposition")]
    disposition: Option<String>,
    #[serde(rename = "X-Signature")]
    signature: String,
}

pub(super) fn router(backend: LocalBackend, signing_key: [u8; 32]) -> axum::Router {
    let state = RouterState {
        objects: Objects { backend },
        signing_key: SigningKey(signing_key),
    };
    axum::Router::new()
        .route(
            "/_local/blobs/{bucket}/{*key}",
            put(put_object).get(get_object),
        )
        .with_state(state)
}

fn reject(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

/// Checks the signature, expiry and method; `Err` says why the request is forbidden.
fn authorize(
    state: &RouterState,
    method: &Method,
    bucket: &str,
    key: &str,
    signed: &Signed,
) -> Result<(), &'static str> {
    let grant = Grant {
        method: &signed.method,
        bucket,
        key,
        content_type: signed.content_type.as_deref(),
        content_length: signed.content_length,
        expires: signed.expires,
        disposition: signed.disposition.as_deref(),
    };
    let signature = hex::decode(&signed.signature).unwrap_or_default();
    if state
        .signing_key
        .mac(&grant)
        .verify_slice(&signature)
        .is_err()
    {
        return Err("signature does not match");
    }
    if OffsetDateTime::now_utc().unix_timestamp() >= signed.expires {
        return Err("request has expired");
    }
    if signed.method != method.as_str() {
        return Err("URL was signed for another method");
    }
    Ok(())
}

fn internal(e: &BlobError) -> Response {
    tracing::error!(error = ?e, "local blob endpoint failed");
    reject(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

#[tracing::instrument(skip_all, fields(bucket = %bucket, key = %key))]
async fn put_object(
    State(state): State<RouterState>,
    Path((bucket, key)): Path<(String, String)>,
    signed: Result<Query<Signed>, QueryRejection>,
    request: Request,
) -> Response {
    let Ok(Query(signed)) = signed else {
        return reject(StatusCode::FORBIDDEN, "missing signature parameters");
    };
    if let Err(why) = authorize(&state, request.method(), &bucket, &key, &signed) {
        return reject(StatusCode::FORBIDDEN, why);
    }
    let (Some(content_type), Some(length)) =
        (signed.content_type.as_deref(), signed.content_length)
    else {
        return reject(StatusCode::FORBIDDEN, "URL does not pin type and length");
    };
    let headers: &HeaderMap = request.headers();
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if header(header::CONTENT_TYPE) != Some(content_type) {
        return reject(
            StatusCode::FORBIDDEN,
            "content type differs from the signed one",
        );
    }
    if header(header::CONTENT_LENGTH).is_some_and(|n| n.parse() != Ok(length)) {
        return reject(
            StatusCode::FORBIDDEN,
            "content length differs from the signed one",
        );
    }
    let Ok(limit) = usize::try_from(length) else {
        return reject(StatusCode::FORBIDDEN, "content length too large");
    };
    // Reads at most `limit` bytes: a longer body fails here, before anything is stored.
    let body = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(body) if body.len() == limit => body,
        _ => {
            return reject(
                StatusCode::FORBIDDEN,
                "body length differs from the signed one",
            );
        }
    };
    match state.objects.put(&bucket, &key, body, content_type).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(BlobError::Invalid(_)) => reject(StatusCode::BAD_REQUEST, "invalid object key"),
        Err(e) => internal(&e),
    }
}

#[tracing::instrument(skip_all, fields(bucket = %bucket, key = %key))]
async fn get_object(
    State(state): State<RouterState>,
    Path((bucket, key)): Path<(String, String)>,
    signed: Result<Query<Signed>, QueryRejection>,
    method: Method,
) -> Response {
    let Ok(Query(signed)) = signed else {
        return reject(StatusCode::FORBIDDEN, "missing signature parameters");
    };
    // axum answers HEAD with the GET handler; a GET URL is good for both, as on S3.
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method
    };
    if let Err(why) = authorize(&state, &method, &bucket, &key, &signed) {
        return reject(StatusCode::FORBIDDEN, why);
    }
    match state.objects.get(&bucket, &key).await {
        Ok(Some((meta, body))) => {
            let mut response = (
                [(header::CONTENT_TYPE, meta.content_type)],
                Body::from(body),
            )
                .into_response();
            // Signed with the URL, so already checked to be a valid header value.
            if let Some(value) = signed
                .disposition
                .as_deref()
                .and_then(|d| header::HeaderValue::from_str(d).ok())
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Ok(None) => reject(StatusCode::NOT_FOUND, "no such key"),
        Err(BlobError::Invalid(_)) => reject(StatusCode::BAD_REQUEST, "invalid object key"),
        Err(e) => internal(&e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;

    /// A listener on a free local port, and its base URL.
    async fn listen() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        (listener, base_url)
    }

    /// Serves `router` on `listener` until the handle is aborted.
    fn serve(
        listener: tokio::net::TcpListener,
        router: axum::Router,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        })
    }

    async fn fx_server() -> (
        tempfile::TempDir,
        FileBlobStore,
        tokio::task::JoinHandle<()>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let (listener, base_url) = listen().await;
        let server = serve(listener, backend.blob_router([9; 32]));
        (dir, backend.blob_store("media", &base_url, [9; 32]), server)
    }

    /// A bucket from the platform reads its URL signing key when it first
    /// presigns, not when it is opened or its objects are read and written
    /// (a Lambda's cold start and a health check read no secret); racing
    /// first presigns all succeed, and their URLs are the ones the blob
    /// router, which derives the same key, accepts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_platform_bucket_reads_its_signing_key_when_it_first_presigns() {
        use crate::config::{LOCAL_BLOB_KEY_SECRET, Platform};
        let dir = tempfile::tempdir().unwrap();
        let (listener, base_url) = listen().await;
        let platform =
            Platform::local(dir.path().to_owned(), base_url, Arc::new(SystemClock)).unwrap();
        let key_exists = || async {
            platform
                .uncached_secrets()
                .get(LOCAL_BLOB_KEY_SECRET)
                .await
                .unwrap()
                .is_some()
        };

        let store = platform.blob_store("media").await.unwrap();
        store
            .put("notes.txt", Bytes::from_static(b"hi"), "text/plain")
            .await
            .unwrap();
        assert!(store.get("notes.txt").await.unwrap().is_some());
        assert!(!key_exists().await);

        let presigns = (0..8).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .presign_put(
                        &format!("up/{i}.png"),
                        "image/png",
                        4,
                        Duration::from_secs(60),
                    )
                    .await
            })
        });
        let mut urls = Vec::new();
        for presign in futures::future::join_all(presigns).await {
            urls.push(presign.unwrap().unwrap().url);
        }
        assert!(key_exists().await);

        let server = serve(
            listener,
            platform.local_blob_router().await.unwrap().unwrap(),
        );
        for url in &urls {
            assert_eq!(send_put(url, "image/png", b"1234").await, StatusCode::OK);
        }
        assert!(store.head("up/7.png").await.unwrap().is_some());
        server.abort();
    }

    /// A key source that fails fails the presign (as the source's error)
    /// and is asked again by the next one; once read, the key is kept, and
    /// it is the one URLs are signed with.
    #[tokio::test]
    async fn a_failed_key_read_fails_that_presign_and_the_next_reads_again() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let (listener, base_url) = listen().await;
        let server = serve(listener, backend.blob_router([7; 32]));
        let reads = Arc::new(AtomicUsize::new(0));
        let source: SigningKeySource = {
            let reads = reads.clone();
            Arc::new(move || {
                let first = reads.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    if first {
                        Err(BlobError::Unavailable(anyhow::anyhow!("throttled")))
                    } else {
                        Ok([7; 32])
                    }
                })
            })
        };
        let store = backend.blob_store_on_first_use("media", &base_url, source);
        let presign = || store.presign_put("a.png", "image/png", 4, Duration::from_secs(60));

        assert!(matches!(
            presign().await.unwrap_err(),
            BlobError::Unavailable(_)
        ));
        let url = presign().await.unwrap().url;
        presign().await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(send_put(&url, "image/png", b"1234").await, StatusCode::OK);
        server.abort();
    }

    async fn send_put(url: &str, content_type: &str, body: &'static [u8]) -> StatusCode {
        let response = reqwest::Client::new()
            .put(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        StatusCode::from_u16(response.status().as_u16()).unwrap()
    }

    #[tokio::test]
    async fn presigned_put_is_checked_before_anything_is_stored() {
        let (_dir, store, server) = fx_server().await;
        let key = "up loads/ü+1.png";
        let req = store
            .presign_put(key, "image/png", 4, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            req.headers,
            [("content-type".to_owned(), "image/png".to_owned())]
        );

        assert_eq!(
            send_put(&req.url, "image/png", b"12345").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send_put(&req.url, "image/png", b"123").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            send_put(&req.url, "text/html", b"1234").await,
            StatusCode::FORBIDDEN
        );
        let tampered = req.url.replace("X-Content-Length=4", "X-Content-Length=5");
        assert_eq!(
            send_put(&tampered, "image/png", b"12345").await,
            StatusCode::FORBIDDEN
        );
        let mut flipped = req.url.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            send_put(&flipped, "image/png", b"1234").await,
            StatusCode::FORBIDDEN
        );
        assert!(store.head(key).await.unwrap().is_none());

        let short = store
            .presign_put(key, "image/png", 4, Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            send_put(&short.url, "image/png", b"1234").await,
            StatusCode::FORBIDDEN
        );

        assert_eq!(
            send_put(&req.url, "image/png", b"1234").await,
            StatusCode::OK
        );
        let (meta, body) = store.get(key).await.unwrap().unwrap();
        assert_eq!(
            (meta.content_type.as_str(), body.as_ref()),
            ("image/png", b"1234".as_ref())
        );
        server.abort();
    }
}
