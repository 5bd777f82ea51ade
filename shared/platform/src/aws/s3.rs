//! The BlobStore port over one S3 bucket.
//!
//! Presigned PUTs are signed with the content type and content length set,
//! so SigV4 lists both in `X-Amz-SignedHeaders` and S3 refuses an upload whose
//! headers differ: the client can upload only what the service agreed to.
//! [`PresignedRequest::headers`] tells the client which headers to send.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use time::OffsetDateTime;

use super::{classify, http_status};
use crate::blob::{
    BlobError, BlobMeta, BlobStore, PresignedRequest, validate_blob_key, validate_content_type,
    validate_disposition, validate_expiry,
};

const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// One S3 bucket.
#[derive(Clone, Debug)]
pub struct S3BlobStore {
    /// Its client is built on first use, not with the adapter (see
    /// [`super::AwsBackend`]): a cold start that does not use it
    /// does not set up the HTTPS connector.
    backend: super::AwsBackend,
    bucket: String,
}

impl S3BlobStore {
    fn client(&self) -> &aws_sdk_s3::Client {
        self.backend.s3()
    }

    pub(crate) fn new(backend: super::AwsBackend, bucket: &str) -> Self {
        Self {
            backend,
            bucket: bucket.to_owned(),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn fail<E>(&self, op: &str, key: &str, err: SdkError<E>) -> BlobError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (transient, err) =
            classify(err, format!("S3 {op} of {key:?} in bucket {}", self.bucket));
        if transient {
            BlobError::Unavailable(err)
        } else {
            BlobError::Backend(err)
        }
    }

    fn presigned(
        presigned: &aws_sdk_s3::presigning::PresignedRequest,
        expires_in: Duration,
    ) -> PresignedRequest {
        let headers = presigned
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect();
        PresignedRequest {
            method: presigned.method().to_owned(),
            url: presigned.uri().to_owned(),
            headers,
            expires_at: OffsetDateTime::now_utc() + expires_in,
        }
    }
}

fn meta(content_type: Option<&str>, content_length: Option<i64>) -> BlobMeta {
    BlobMeta {
        content_type: content_type.unwrap_or(DEFAULT_CONTENT_TYPE).to_owned(),
        content_length: content_length
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    #[tracing::instrument(skip(self, body), fields(bucket = %self.bucket, len = body.len()))]
    async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        validate_blob_key(key)?;
        validate_content_type(content_type)?;
        self.client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.fail("PutObject", key, e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn get(&self, key: &str) -> Result<Option<(BlobMeta, Bytes)>, BlobError> {
        validate_blob_key(key)?;
        let out = match self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err)
                if matches!(err.as_service_error(), Some(GetObjectError::NoSuchKey(_)))
                    || http_status(&err) == Some(404) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(self.fail("GetObject", key, err)),
        };
        let content_type = out.content_type().map(str::to_owned);
        let body = out.body.collect().await.map_err(|e| {
            BlobError::Unavailable(
                anyhow::Error::new(e)
                    .context(format!("reading {key:?} from bucket {}", self.bucket)),
            )
        })?;
        let bytes = body.into_bytes();
        let mut meta = meta(content_type.as_deref(), None);
        meta.content_length = bytes.len() as u64;
        Ok(Some((meta, bytes)))
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        validate_blob_key(key)?;
        match self
            .client()
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(meta(out.content_type(), out.content_length()))),
            Err(err)
                if matches!(err.as_service_error(), Some(HeadObjectError::NotFound(_)))
                    || http_status(&err) == Some(404) =>
            {
                Ok(None)
            }
            Err(err) => Err(self.fail("HeadObject", key, err)),
        }
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_blob_key(key)?;
        self.client()
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.fail("DeleteObject", key, e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self), fields(bucket = %self.bucket))]
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        expires_in: Duration,
    ) -> Result<PresignedRequest, BlobError> {
        validate_blob_key(key)?;
        validate_content_type(content_type)?;
        validate_expiry(expires_in)?;
        let length = i64::try_from(content_length)
            .map_err(|_| BlobError::Invalid("content length out of range".into()))?;
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| BlobError::Invalid(format!("presign expiry: {e}")))?;
        let presigned = self
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .presigned(config)
            .await
            .map_err(|e| self.fail("presign PutObject", key, e))?;
        let mut request = Self::presigned(&presigned, expires_in);
        for (name, value) in [
            ("content-type", content_type.to_owned()),
            ("content-length", content_length.to_string()),
        ] {
            if !request.headers.iter().any(|(n, _)| n == name) {
                request.headers.push((name.to_owned(), value));
            }
        }
        Ok(request)
    }

    #[tracing::instrument(skip(self, content_disposition), fields(bucket = %self.bucket))]
    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        content_disposition: Option<&str>,
    ) -> Result<PresignedRequest, BlobError> {
        validate_blob_key(key)?;
        validate_expiry(expires_in)?;
        if let Some(disposition) = content_disposition {
            validate_disposition(disposition)?;
        }
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| BlobError::Invalid(format!("presign expiry: {e}")))?;
        let presigned = self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_response_content_disposition(content_disposition.map(str::to_owned))
            .presigned(config)
            .await
            .map_err(|e| self.fail("presign GetObject", key, e))?;
        Ok(Self::presigned(&presigned, expires_in))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    async fn fx_store() -> S3BlobStore {
        let credentials =
            aws_sdk_s3::config::Credentials::new("AKIDTEST", "secret", None, None, "test");
        // With an endpoint, the backend's S3 client is path-style.
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .endpoint_url("http://127.0.0.1:9")
            .build();
        S3BlobStore::new(
            super::super::AwsBackend::from_sdk_config(&config),
            "media-bucket",
        )
    }

    fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
        let query = url.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    #[tokio::test]
    async fn presigned_put_signs_type_and_length_and_expires() {
        let store = fx_store().await;
        let req = store
            .presign_put("uploads/a.png", "image/png", 1234, Duration::from_secs(300))
            .await
            .unwrap();
        assert_eq!(req.method, "PUT");
        assert!(
            req.url
                .starts_with("http://127.0.0.1:9/media-bucket/uploads/a.png?"),
            "{}",
            req.url
        );
        let signed = query_param(&req.url, "X-Amz-SignedHeaders").unwrap();
        let signed: Vec<_> = signed.split("%3B").collect();
        assert!(signed.contains(&"content-length"), "{signed:?}");
        assert!(signed.contains(&"content-type"), "{signed:?}");
        assert!(signed.contains(&"host"), "{signed:?}");
        assert_eq!(query_param(&req.url, "X-Amz-Expires"), Some("300"));
        assert!(query_param(&req.url, "X-Amz-Signature").is_some());
        assert!(
            req.headers
                .contains(&("content-type".into(), "image/png".into()))
        );
        assert!(
            req.headers
                .contains(&("content-length".into(), "1234".into()))
        );
        assert!(!req.headers.iter().any(|(n, _)| n == "host"));
        let lifetime = req.expires_at - OffsetDateTime::now_utc();
        assert!(
            lifetime > time::Duration::seconds(295) && lifetime <= time::Duration::seconds(300)
        );
    }

    #[tokio::test]
    async fn presigning_checks_key_and_expiry_first() {
        let store = fx_store().await;
        let bad_key = store
            .presign_get("../x", Duration::from_secs(60), None)
            .await;
        assert!(matches!(bad_key, Err(BlobError::Invalid(_))));
        let too_long = store
            .presign_put("a", "text/plain", 1, Duration::from_secs(8 * 24 * 3600))
            .await;
        assert!(matches!(too_long, Err(BlobError::Invalid(_))));
        let get = store
            .presign_get("a/b.txt", Duration::from_secs(60), None)
            .await
            .unwrap();
        assert_eq!(get.method, "GET");
        assert_eq!(query_param(&get.url, "X-Amz-Expires"), Some("60"));
    }
}
