//! The media worker: one queue carries the bucket's object-created events
//! (S3 sends them straight to SQS; locally the blob store sends the same
//! body) and `media.requested` events from the bus (an EventBridge
//! envelope). Each record is one or the other.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use constellation_core::OrgId;
use constellation_core::media::{MediaRequested, OwnerDeleted, events, parse_upload_key};
use constellation_platform::DomainEvent;
use constellation_platform::worker::{RecordError, RecordHandler};
use serde::Deserialize;

use crate::store::{MediaError, MediaStore, ProcessError, Processed};

/// The worker's record handler.
#[derive(Debug, Clone)]
pub struct MediaWorker(pub Arc<MediaStore>);

/// An S3 event notification, as much of it as the worker reads.
#[derive(Debug, Deserialize)]
struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
    /// `s3:TestEvent` when a notification is configured.
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Debug, Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    object: S3Object,
}

#[derive(Debug, Deserialize)]
struct S3Object {
    key: String,
}

/// An object key as S3 notifications write it: URL-encoded, spaces as `+`.
fn decode_key(raw: &str) -> Option<String> {
    let plus_as_space = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

fn classify(e: ProcessError) -> RecordError {
    match e {
        ProcessError::Media(MediaError::Store(e)) if !e.is_retryable() => RecordError::permanent(e),
        e => RecordError::retryable(e),
    }
}

impl MediaWorker {
    async fn object_created(&self, key: &str) -> Result<(), RecordError> {
        let Some((org, id)) = parse_upload_key(key) else {
            // Only `uploads/` notifies us; anything else there is not ours.
            tracing::warn!(key, "object event for a key that is not an upload; ignored");
            return Ok(());
        };
        match self.0.process_upload(&org, &id).await.map_err(classify)? {
            Processed::Ready => tracing::info!(%org, %id, "media ready"),
            Processed::Rejected(reason) => tracing::info!(%org, %id, reason, "media rejected"),
            Processed::Unchanged => {
                tracing::info!(%org, %id, "duplicate or late upload event; nothing changed")
            }
        }
        Ok(())
    }

    async fn domain_event(&self, event: DomainEvent) -> Result<(), RecordError> {
        let org = OrgId::parse(&event.org).map_err(RecordError::permanent)?;
        if event.event_type == events::EXPENSE_DELETED {
            let gone: OwnerDeleted =
                serde_json::from_value(event.data).map_err(RecordError::permanent)?;
            return self
                .0
                .delete_owned(&org, &gone)
                .await
                .map_err(|e| classify(ProcessError::Media(e)));
        }
        if event.event_type != events::REQUESTED {
            tracing::warn!(event_type = %event.event_type, "event not for media; ignored");
            return Ok(());
        }
        let request: MediaRequested =
            serde_json::from_value(event.data).map_err(RecordError::permanent)?;
        self.0.register(&org, &request).await.map_err(|e| {
            if e.is_retryable() {
                RecordError::retryable(e)
            } else {
                RecordError::permanent(e)
            }
        })
    }
}

#[async_trait]
impl RecordHandler for MediaWorker {
    async fn handle(&self, record: &SqsMessage) -> Result<(), RecordError> {
        let body = record.body.as_deref().unwrap_or_default();
        if let Ok(notification) = serde_json::from_str::<S3Notification>(body)
            && (notification.event.is_some() || !notification.records.is_empty())
        {
            if notification.event.is_some() {
                // S3's test event when the notification was configured.
                return Ok(());
            }
            for r in notification.records {
                if !r.event_name.starts_with("ObjectCreated") {
                    continue;
                }
                let key = decode_key(&r.s3.object.key).ok_or_else(|| {
                    RecordError::permanent(anyhow::anyhow!("object key is not URL-encoded UTF-8"))
                })?;
                self.object_created(&key).await?;
            }
            return Ok(());
        }
        let event = DomainEvent::from_queue_body(body).map_err(RecordError::permanent)?;
        self.domain_event(event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_as_s3_encodes_them() {
        assert_eq!(
            decode_key("uploads/a+b%2Bc").as_deref(),
            Some("uploads/a b+c")
        );
        assert_eq!(decode_key("uploads/%C3%BC").as_deref(), Some("uploads/ü"));
        assert_eq!(decode_key("uploads/%FF"), None);
    }
}
