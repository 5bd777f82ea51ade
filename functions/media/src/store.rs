//! The media rules over the Table, BlobStore and outbox ports.
//!
//! Layout: one item per media, `pk = MEDIA#<org>`, `sk = <id>`, so a
//! request reaches only its own organization's media. Bytes move through
//! the bucket under keys built from organization and id only
//! ([`constellation_core::media`]): the client's upload lands under
//! `uploads/`; the checked, metadata-free copy and its thumbnail are
//! written under `media/` and `thumbnails/`, suffixed with the first 16
//! digits of their SHA-256, so two deliveries racing on one upload can never
//! leave the record naming bytes it did not check.
//!
//! A record is `pending` from the upload request (it expires after 24 h if
//! nothing arrives), then `ready` or `rejected` when the worker has checked
//! the bytes, or `deleted` (kept for a day so that a late upload's event
//! finds it and removes the object). Every change past `pending` commits its
//! `media.*` event through the outbox.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use constellation_core::OrgId;
use constellation_core::auth::{Principal, Role};
use constellation_core::media::{
    MediaChanged, MediaId, MediaOwner, MediaRequested, OwnerDeleted, Purpose, UploadSpec,
    UploadType, events, stored_key, thumbnail_key, upload_key,
};
use constellation_platform::blob::{BlobError, BlobStore, attachment};
use constellation_platform::outbox::Outbox;
use constellation_platform::table::{Condition, Item, ItemKey, Write};
use constellation_platform::{Clock, DomainEvent, StoreError, Table};
use constellation_web::uploads::{UploadView, presign_upload};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::inspect::{Accepted, Rejection};

/// How long a pending record waits for its upload.
pub const PENDING_TTL: time::Duration = time::Duration::hours(24);
/// How long a deleted record is remembered (for late upload events).
pub const DELETED_TTL: time::Duration = time::Duration::hours(24);
/// How long a download URL works.
pub const DOWNLOAD_URL_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The thumbnails' media type.
pub const THUMBNAIL_TYPE: &str = "image/jpeg";

/// Where a media record is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the bytes, or for the worker.
    Pending,
    /// Checked; downloadable.
    Ready,
    /// Failed a check; its bytes are gone.
    Rejected,
    /// Deleted (invisible to clients).
    Deleted,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ready => "ready",
            Self::Rejected => "rejected",
            Self::Deleted => "deleted",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "ready" => Self::Ready,
            "rejected" => Self::Rejected,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

/// One media record.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    /// Its id.
    pub id: MediaId,
    /// Its organization.
    pub org: OrgId,
    /// The account that asked for the upload.
    pub uploader: String,
    /// What it is for.
    pub purpose: Purpose,
    /// The declared type.
    pub content_type: UploadType,
    /// The declared size in bytes.
    pub size: u64,
    /// The client's file name.
    pub filename: String,
    /// Where it is in its life.
    pub status: Status,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// Image width in pixels (upright).
    pub width: Option<u32>,
    /// Image height in pixels (upright).
    pub height: Option<u32>,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: Option<String>,
    /// Size of the thumbnail, when there is one.
    pub thumbnail_size: Option<u64>,
    /// The record of another service it belongs to.
    pub owner: Option<MediaOwner>,
    /// When the upload was requested.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    version: u64,
}

impl Media {
    /// The key of the stored (checked) bytes, once ready.
    pub fn stored_key(&self) -> Option<String> {
        self.sha256.as_deref().map(|sha| {
            format!(
                "{}/{}",
                stored_key(&self.org, &self.id),
                &sha[..16.min(sha.len())]
            )
        })
    }

    /// The key of the thumbnail, once ready (images only).
    pub fn thumbnail_key(&self) -> Option<String> {
        self.thumbnail_size?;
        self.sha256.as_deref().map(|sha| {
            format!(
                "{}/{}",
                thumbnail_key(&self.org, &self.id),
                &sha[..16.min(sha.len())]
            )
        })
    }

    fn event(&self, event_type: &str, now: OffsetDateTime) -> Result<DomainEvent, StoreError> {
        let ready = self.status == Status::Ready;
        DomainEvent::new(
            event_type,
            &self.org,
            now,
            MediaChanged {
                id: self.id.to_string(),
                status: self.status.as_str().to_owned(),
                purpose: self.purpose.as_str().to_owned(),
                uploader: self.uploader.clone(),
                reason: self.reason.clone(),
                owner: self.owner.clone(),
                stored_key: ready.then(|| self.stored_key()).flatten(),
                download_name: ready.then(|| download_name(&self.filename, self.content_type)),
                content_type: ready.then(|| self.content_type.as_str().to_owned()),
            },
        )
        .map_err(|e| StoreError::Invalid(e.to_string()))
    }
}

/// Presigned URLs of a ready media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloads {
    /// The stored bytes, as an attachment named as uploaded.
    pub download_url: String,
    /// The thumbnail, if any.
    pub thumbnail_url: Option<String>,
    /// When both stop working.
    pub expires_at: OffsetDateTime,
}

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No such media in the caller's organization (or one they may not see).
    #[error("no such media")]
    NotFound,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A concurrent change kept winning; retry.
    #[error("the media is being changed concurrently; retry")]
    Contention,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bucket failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// What the worker did with one upload event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// The upload passed: the media is ready.
    Ready,
    /// The upload failed a check (its code): the media is rejected.
    Rejected(&'static str),
    /// Nothing to do: a duplicate or late event, or a deleted media.
    Unchanged,
}

/// Why processing an upload failed (the worker retries these).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The record is not there yet (its `media.requested` event is still on its way).
    #[error("no media record for this upload yet")]
    UnknownUpload,
    /// A dependency failed.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The check itself could not run.
    #[error("inspecting the upload failed: {0}")]
    Inspect(String),
}

/// The media service's rules.
#[derive(Debug, Clone)]
pub struct MediaStore {
    table: Arc<dyn Table>,
    outbox: Outbox,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    /// One image check at a time per process: a 40-megapixel decode holds
    /// 160 MB, and the check is CPU-bound anyway.
    inspecting: Arc<tokio::sync::Semaphore>,
}

fn item_key(org: &OrgId, id: &MediaId) -> ItemKey {
    ItemKey::new(format!("MEDIA#{org}"), id.as_str())
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("media record has a bad {what}"))
}

fn to_item(m: &Media) -> Item {
    let mut item = Item::new(item_key(&m.org, &m.id))
        .with("uploader", m.uploader.as_str())
        .with("purpose", m.purpose.as_str())
        .with("content_type", m.content_type.as_str())
        .with("size", m.size)
        .with("filename", m.filename.as_str())
        .with("status", m.status.as_str())
        .with("created_at", rfc3339(m.created_at))
        .with("updated_at", rfc3339(m.updated_at));
    if let Some(reason) = &m.reason {
        item = item.with("reason", reason.as_str());
    }
    if let (Some(w), Some(h)) = (m.width, m.height) {
        item = item.with("width", w).with("height", h);
    }
    if let Some(sha) = &m.sha256 {
        item = item.with("sha256", sha.as_str());
    }
    if let Some(size) = m.thumbnail_size {
        item = item.with("thumbnail_size", size);
    }
    if let Some(owner) = &m.owner {
        item = item
            .with("owner_service", owner.service.as_str())
            .with("owner_id", owner.id.as_str());
    }
    item.version = m.version;
    item
}

/// `changed` as the item that replaces `current` (conditioned on
/// `current.version`): its version is the next one.
fn next_version(changed: &Media, current: &Media) -> Item {
    let mut item = to_item(changed);
    item.version = current.version + 1;
    item
}

fn from_item(org: &OrgId, item: &Item) -> Result<Media, StoreError> {
    let text = |name: &str| item.str(name).ok_or_else(|| corrupt(name));
    let time = |name: &str| OffsetDateTime::parse(text(name)?, &Rfc3339).map_err(|_| corrupt(name));
    let small = |name: &str| item.int(name).and_then(|n| u32::try_from(n).ok());
    Ok(Media {
        id: MediaId::parse(&item.key.sk).map_err(|_| corrupt("id"))?,
        org: org.clone(),
        uploader: text("uploader")?.to_owned(),
        purpose: Purpose::parse("purpose", text("purpose")?).map_err(|_| corrupt("purpose"))?,
        content_type: UploadType::parse("content_type", text("content_type")?)
            .map_err(|_| corrupt("content_type"))?,
        size: item
            .int("size")
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| corrupt("size"))?,
        filename: text("filename")?.to_owned(),
        status: Status::parse(text("status")?).ok_or_else(|| corrupt("status"))?,
        reason: item.str("reason").map(str::to_owned),
        width: small("width"),
        height: small("height"),
        sha256: item.str("sha256").map(str::to_owned),
        thumbnail_size: item
            .int("thumbnail_size")
            .and_then(|n| u64::try_from(n).ok()),
        owner: match (item.str("owner_service"), item.str("owner_id")) {
            (Some(service), Some(id)) => Some(MediaOwner {
                service: service.to_owned(),
                id: id.to_owned(),
            }),
            _ => None,
        },
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        version: item.version,
    })
}

/// The name a download is saved under: the client's, ending in the
/// extension of the checked type (so a PDF named `x.html` saves as
/// `x.html.pdf` and never opens as a page).
pub fn download_name(filename: &str, content_type: UploadType) -> String {
    let ext = content_type.extension();
    let lower = filename.to_lowercase();
    let has = lower.ends_with(&format!(".{ext}"))
        || (content_type == UploadType::Jpeg && lower.ends_with(".jpeg"));
    if has {
        filename.to_owned()
    } else {
        format!("{filename}.{ext}")
    }
}

/// Whether `principal` may see and delete `media`: the uploader, and admins
/// and owners; attachments and avatars are the organization's to see.
fn may_read(principal: &Principal, media: &Media) -> bool {
    media.uploader == principal.account.as_str()
        || principal.role.allows(Role::Admin)
        || media.purpose != Purpose::Receipt
}

impl MediaStore {
    /// The store over its ports.
    pub fn new(
        table: Arc<dyn Table>,
        outbox: Outbox,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            table,
            outbox,
            blobs,
            clock,
            inspecting: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// The bucket.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The outbox (relayed by the `media-outbox` schedule).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn pending(
        &self,
        org: &OrgId,
        id: MediaId,
        uploader: &str,
        spec: &UploadSpec,
        owner: Option<MediaOwner>,
    ) -> (Media, Item) {
        let now = self.clock.now();
        let media = Media {
            id,
            org: org.clone(),
            uploader: uploader.to_owned(),
            purpose: spec.purpose,
            content_type: spec.content_type,
            size: spec.size,
            filename: spec.filename.as_str().to_owned(),
            status: Status::Pending,
            reason: None,
            width: None,
            height: None,
            sha256: None,
            thumbnail_size: None,
            owner,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let mut item = to_item(&media);
        item.expires_at = Some(now + PENDING_TTL);
        (media, item)
    }

    /// Records a pending upload of `spec` by `principal` and presigns its PUT.
    #[tracing::instrument(skip_all, fields(org = %principal.org))]
    pub async fn create_upload(
        &self,
        principal: &Principal,
        spec: &UploadSpec,
    ) -> Result<UploadView, MediaError> {
        let id = MediaId::from_bytes(uuid::Uuid::new_v4().into_bytes());
        let view = presign_upload(self.blobs.as_ref(), &principal.org, &id, spec).await?;
        let (_, item) = self.pending(&principal.org, id, principal.account.as_str(), spec, None);
        self.table.put(&item, Condition::NotExists).await?;
        Ok(view)
    }

    /// Records an upload another service presigned (`media.requested`);
    /// a repeated event changes nothing.
    #[tracing::instrument(skip_all, fields(org = %org))]
    pub async fn register(&self, org: &OrgId, request: &MediaRequested) -> Result<(), StoreError> {
        let id = MediaId::parse(&request.id).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let spec = UploadSpec::parse(
            &request.purpose,
            &request.content_type,
            request.size,
            &request.filename,
        )
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (_, item) = self.pending(org, id, &request.uploader, &spec, request.owner.clone());
        match self.table.put(&item, Condition::NotExists).await {
            Err(StoreError::ConditionFailed { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn find(&self, org: &OrgId, id: &MediaId) -> Result<Option<Media>, StoreError> {
        match self.table.get(&item_key(org, id)).await? {
            Some(item) => Ok(Some(from_item(org, &item)?)),
            None => Ok(None),
        }
    }

    /// The media `id` as `principal` may see it.
    pub async fn get(&self, principal: &Principal, id: &MediaId) -> Result<Media, MediaError> {
        match self.find(&principal.org, id).await? {
            Some(m) if m.status != Status::Deleted && may_read(principal, &m) => Ok(m),
            _ => Err(MediaError::NotFound),
        }
    }

    /// Presigned download URLs of a ready media.
    pub async fn downloads(&self, media: &Media) -> Result<Option<Downloads>, MediaError> {
        let (Status::Ready, Some(key)) = (media.status, media.stored_key()) else {
            return Ok(None);
        };
        let expires_at = self.clock.now() + DOWNLOAD_URL_LIFETIME;
        let disposition = attachment(&download_name(&media.filename, media.content_type));
        let download = self
            .blobs
            .presign_get(&key, DOWNLOAD_URL_LIFETIME, Some(&disposition))
            .await?;
        let thumbnail = match media.thumbnail_key() {
            Some(key) => Some(
                self.blobs
                    .presign_get(&key, DOWNLOAD_URL_LIFETIME, None)
                    .await?
                    .url,
            ),
            None => None,
        };
        Ok(Some(Downloads {
            download_url: download.url,
            thumbnail_url: thumbnail,
            expires_at: download.expires_at.min(expires_at),
        }))
    }

    /// Deletes media `id` (its uploader, or an admin or owner): its bytes
    /// first, then the record, which answers 404 from then on.
    #[tracing::instrument(skip_all, fields(org = %principal.org, id = %id))]
    pub async fn delete(&self, principal: &Principal, id: &MediaId) -> Result<(), MediaError> {
        for _ in 0..5 {
            let media = self.get(principal, id).await?;
            if media.uploader != principal.account.as_str() && !principal.role.allows(Role::Admin) {
                return Err(MediaError::Forbidden(
                    "only its uploader or an admin may delete media",
                ));
            }
            match self.mark_deleted(&media).await {
                Ok(()) => return Ok(()),
                // The worker finished it meanwhile: delete what it wrote too.
                Err(MediaError::Store(StoreError::ConditionFailed { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(MediaError::Contention)
    }

    /// Deletes each media of `gone.media` in `org` that `gone.owner` owns
    /// (others are left alone: an event cannot delete what its sender does
    /// not own). Deleting what is already gone changes nothing.
    #[tracing::instrument(skip_all, fields(org = %org, owner = %gone.owner.id))]
    pub async fn delete_owned(&self, org: &OrgId, gone: &OwnerDeleted) -> Result<(), MediaError> {
        for raw in gone.media.iter().take(100) {
            let Ok(id) = MediaId::parse(raw) else {
                continue;
            };
            for _ in 0..5 {
                let Some(media) = self.find(org, &id).await? else {
                    break;
                };
                if media.status == Status::Deleted || media.owner.as_ref() != Some(&gone.owner) {
                    break;
                }
                match self.mark_deleted(&media).await {
                    Err(MediaError::Store(StoreError::ConditionFailed { .. })) => continue,
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `media`'s bytes, then records it deleted (with its event),
    /// conditioned on the version read.
    async fn mark_deleted(&self, media: &Media) -> Result<(), MediaError> {
        self.remove_bytes(media).await?;
        let now = self.clock.now();
        let mut deleted = media.clone();
        deleted.status = Status::Deleted;
        deleted.updated_at = now;
        let mut item = next_version(&deleted, media);
        item.expires_at = Some(now + DELETED_TTL);
        let event = deleted.event(events::DELETED, now)?;
        self.outbox
            .commit(
                vec![Write::Put {
                    item,
                    condition: Condition::VersionEquals(media.version),
                }],
                &[event],
            )
            .await?;
        Ok(())
    }

    async fn remove_bytes(&self, media: &Media) -> Result<(), BlobError> {
        self.blobs
            .delete(&upload_key(&media.org, &media.id))
            .await?;
        for key in [media.stored_key(), media.thumbnail_key()]
            .into_iter()
            .flatten()
        {
            self.blobs.delete(&key).await?;
        }
        Ok(())
    }

    /// Checks the upload of media `id` of `org` and makes the media ready
    /// or rejected; safe to run for a duplicate or late event, and for two
    /// deliveries at once.
    #[tracing::instrument(skip(self), fields(org = %org, id = %id))]
    pub async fn process_upload(
        &self,
        org: &OrgId,
        id: &MediaId,
    ) -> Result<Processed, ProcessError> {
        let upload = upload_key(org, id);
        let Some(media) = self.find(org, id).await.map_err(MediaError::from)? else {
            return Err(ProcessError::UnknownUpload);
        };
        if media.status != Status::Pending {
            // A duplicate, or the same URL used again after the check (or
            // after a delete): the media stays as it is; the new bytes go.
            self.blobs.delete(&upload).await.map_err(MediaError::from)?;
            return Ok(Processed::Unchanged);
        }
        let Some(meta) = self.blobs.head(&upload).await.map_err(MediaError::from)? else {
            return Ok(Processed::Unchanged);
        };
        let verdict = if meta.content_length != media.size {
            // Never read more than was agreed.
            Err(Rejection::SizeMismatch {
                declared: media.size,
                actual: meta.content_length,
            })
        } else {
            let Some((_, bytes)) = self.blobs.get(&upload).await.map_err(MediaError::from)? else {
                return Ok(Processed::Unchanged);
            };
            self.inspect(&media, bytes).await?
        };
        let outcome = match verdict {
            Ok(accepted) => self.accept(media, accepted).await?,
            Err(rejection) => self.reject(media, &rejection).await?,
        };
        self.blobs.delete(&upload).await.map_err(MediaError::from)?;
        Ok(outcome)
    }

    async fn inspect(
        &self,
        media: &Media,
        bytes: Bytes,
    ) -> Result<Result<Accepted, Rejection>, ProcessError> {
        let _permit = self
            .inspecting
            .acquire()
            .await
            .map_err(|e| ProcessError::Inspect(e.to_string()))?;
        let (declared, size) = (media.content_type.as_str(), media.size);
        tokio::task::spawn_blocking(move || crate::inspect::inspect(declared, size, &bytes))
            .await
            .map_err(|e| ProcessError::Inspect(e.to_string()))
    }

    async fn accept(&self, media: Media, accepted: Accepted) -> Result<Processed, ProcessError> {
        let now = self.clock.now();
        let mut ready = media.clone();
        ready.status = Status::Ready;
        ready.width = accepted.width;
        ready.height = accepted.height;
        ready.sha256 = Some(accepted.sha256.clone());
        ready.thumbnail_size = accepted.thumbnail.as_ref().map(|t| t.len() as u64);
        ready.updated_at = now;
        let (Some(stored), thumbnail) = (ready.stored_key(), ready.thumbnail_key()) else {
            return Err(ProcessError::Inspect("no digest".into()));
        };
        self.blobs
            .put(&stored, Bytes::from(accepted.body), accepted.content_type)
            .await
            .map_err(MediaError::from)?;
        if let (Some(key), Some(bytes)) = (&thumbnail, accepted.thumbnail) {
            self.blobs
                .put(key, Bytes::from(bytes), THUMBNAIL_TYPE)
                .await
                .map_err(MediaError::from)?;
        }
        let event = ready.event(events::READY, now).map_err(MediaError::from)?;
        let committed = self
            .outbox
            .commit(
                vec![Write::Put {
                    item: next_version(&ready, &media),
                    condition: Condition::VersionEquals(media.version),
                }],
                &[event],
            )
            .await;
        match committed {
            Ok(()) => Ok(Processed::Ready),
            Err(StoreError::ConditionFailed { .. }) => {
                // Deleted meanwhile, or another delivery finished first: keep
                // what the record names, remove what only we wrote.
                let now_named = self
                    .find(&media.org, &media.id)
                    .await
                    .map_err(MediaError::from)?
                    .filter(|m| m.status == Status::Ready)
                    .and_then(|m| m.sha256);
                if now_named != ready.sha256 {
                    for key in [Some(stored), thumbnail].into_iter().flatten() {
                        self.blobs.delete(&key).await.map_err(MediaError::from)?;
                    }
                }
                Ok(Processed::Unchanged)
            }
            Err(e) => Err(MediaError::from(e).into()),
        }
    }

    async fn reject(&self, media: Media, rejection: &Rejection) -> Result<Processed, ProcessError> {
        let now = self.clock.now();
        let mut rejected = media.clone();
        rejected.status = Status::Rejected;
        rejected.reason = Some(rejection.code().to_owned());
        rejected.updated_at = now;
        let event = rejected
            .event(events::REJECTED, now)
            .map_err(MediaError::from)?;
        let committed = self
            .outbox
            .commit(
                vec![Write::Put {
                    item: next_version(&rejected, &media),
                    condition: Condition::VersionEquals(media.version),
                }],
                &[event],
            )
            .await;
        match committed {
            Ok(()) => {
                tracing::info!(reason = rejection.code(), detail = %rejection, "upload rejected");
                Ok(Processed::Rejected(rejection.code()))
            }
            Err(StoreError::ConditionFailed { .. }) => Ok(Processed::Unchanged),
            Err(e) => Err(MediaError::from(e).into()),
        }
    }
}

/// Whether `item` is a media record this build can serve (the check an
/// import of an export runs on each record): `MEDIA#<org>` / id with the
/// attributes the API writes, a declared size within
/// [`constellation_core::media::MAX_UPLOAD_BYTES`], and a filename as an
/// upload request may name one.
pub fn check_item(item: &Item) -> Result<(), String> {
    let org = item
        .key
        .pk
        .strip_prefix("MEDIA#")
        .ok_or_else(|| format!("`{}` is not a media record", item.key.pk))?;
    let org = OrgId::parse(org).map_err(|e| constellation_platform::observe::error_chain(&e))?;
    let media =
        from_item(&org, item).map_err(|e| constellation_platform::observe::error_chain(&e))?;
    if !(1..=constellation_core::media::MAX_UPLOAD_BYTES).contains(&media.size) {
        return Err(format!(
            "size: must be 1 to {} bytes",
            constellation_core::media::MAX_UPLOAD_BYTES
        ));
    }
    if media.filename.chars().count() > constellation_core::media::MAX_FILENAME_CHARS
        || media.filename.chars().any(char::is_control)
    {
        return Err("filename: too long or has control characters".to_owned());
    }
    Ok(())
}
