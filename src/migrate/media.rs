//! `export --with-media`: the bytes of ready media beside their records, and
//! their way back into a media bucket on import.
//!
//! Media's records (kind `media.media`, `pk = MEDIA#<org>`, `sk = <id>`)
//! travel like every other record; a ready one names its checked bytes
//! and, for an image, its thumbnail, under keys built from organization,
//! id and the first 16 hex digits of the bytes' SHA-256 (see
//! `constellation_media::store::Media::stored_key`). Export reads the
//! records back from its own `media.media.jsonl`, so `--org` and the
//! expiry rules apply to the bytes exactly as to the records, and writes
//! each object to `media/<object key>` inside the export directory. The
//! manifest lists every object with its size and SHA-256; import checks
//! them all before it writes anything, then uploads them before the
//! records, so a record never names bytes the target lacks.
//!
//! The BlobStore port reads and writes whole objects, so one object is in
//! memory at a time (media caps uploads at a few MiB); files are hashed
//! and checked as streams.

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use constellation_core::OrgId;
use constellation_core::media::{MediaId, stored_key, thumbnail_key};
use constellation_platform::blob::{BlobError, BlobStore, validate_blob_key};
use sha2::{Digest as _, Sha256};

use super::export::write_atomically;
use super::import::KindCounts;
use super::progress::Progress;
use super::record::{Manifest, MediaFile, Record, digest_file};

/// The directory of media objects inside an export directory.
pub const MEDIA_DIR: &str = "media";
/// The kind of media's records.
pub const MEDIA_KIND: &str = "media.media";
/// How often a briefly unavailable bucket is retried.
const ATTEMPTS: u32 = 5;

/// The object keys of one media record's bytes: the checked copy and the
/// thumbnail (images only), when the record is ready. Anything else
/// (pending, rejected, deleted) has no bytes to move.
pub(crate) fn object_keys(record: &Record) -> Vec<String> {
    let text = |name: &str| record.attrs.get(name).and_then(|v| v.as_str());
    let (Some("ready"), Some(sha)) = (text("status"), text("sha256")) else {
        return Vec::new();
    };
    let Some(org) = record
        .pk
        .strip_prefix("MEDIA#")
        .and_then(|o| OrgId::parse(o).ok())
    else {
        return Vec::new();
    };
    let Ok(id) = MediaId::parse(&record.sk) else {
        return Vec::new();
    };
    let digest = sha.get(..16).unwrap_or(sha);
    let mut keys = vec![format!("{}/{digest}", stored_key(&org, &id))];
    if record.attrs.contains_key("thumbnail_size") {
        keys.push(format!("{}/{digest}", thumbnail_key(&org, &id)));
    }
    keys
}

/// Where the object `key` lives inside the export directory `dir`:
/// `dir/media/<key>`. Refuses keys that could name a file outside it
/// (`..`, `.`, empty segments, absolute, backslashes, control characters).
pub(crate) fn local_path(dir: &Path, key: &str) -> anyhow::Result<PathBuf> {
    if key.contains('\\') || key.contains(':') || validate_blob_key(key).is_err() {
        bail!("media key `{key}` could name a file outside the export directory");
    }
    Ok(key
        .split('/')
        .fold(dir.join(MEDIA_DIR), |path, seg| path.join(seg)))
}

/// Retries `op` while the bucket says it is briefly unavailable.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, BlobError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BlobError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(BlobError::Unavailable(_)) if attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            other => return other,
        }
    }
}

/// Copies the bytes of every ready media record of `records` (the export's
/// `media.media.jsonl`) from `bucket` into `out/media/`, and returns their
/// manifest entries, sorted by key. An object the bucket has lost is left
/// out with a warning: the export then carries what the source has.
pub(crate) async fn export_media(
    bucket: &Arc<dyn BlobStore>,
    out: &Path,
    records: Option<&Path>,
    show_progress: bool,
) -> anyhow::Result<Vec<MediaFile>> {
    let media_dir = out.join(MEDIA_DIR);
    if media_dir.exists() {
        // A previous export into the same directory: start clean, so the
        // directory holds exactly what the manifest lists.
        fs::remove_dir_all(&media_dir)
            .with_context(|| format!("removing {}", media_dir.display()))?;
    }
    let Some(records) = records else {
        return Ok(Vec::new());
    };
    let reader = BufReader::new(
        File::open(records).with_context(|| format!("opening {}", records.display()))?,
    );
    let mut progress = Progress::new(show_progress, "export media", None);
    let mut files = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", records.display()))?;
        let record: Record = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}", records.display(), number + 1))?;
        for key in object_keys(&record) {
            let path = local_path(out, &key)?;
            let Some((meta, body)) = retrying(|| bucket.get(&key))
                .await
                .with_context(|| format!("reading media object {key}"))?
            else {
                tracing::warn!(%key, "a ready media record's object is missing; left out");
                eprintln!("warning: media object {key} is missing from the bucket; left out");
                continue;
            };
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            write_atomically(&path, &body)?;
            files.push(MediaFile {
                key,
                bytes: body.len() as u64,
                sha256: hex::encode(Sha256::digest(&body)),
                content_type: meta.content_type,
            });
            progress.record(files.len() as u64);
        }
    }
    progress.finish(files.len() as u64);
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(files)
}

/// What the export's records say one object must be: its size, type and,
/// for the original (not a thumbnail), its SHA-256.
struct Expected {
    bytes: Option<u64>,
    content_type: String,
    sha256: Option<String>,
}

/// The objects the ready media records of `dir/media.media.jsonl` name.
/// The manifest is the exporter's word; the records are what the media
/// service will serve, so each object must be one of theirs.
fn expected_objects(dir: &Path) -> anyhow::Result<std::collections::HashMap<String, Expected>> {
    let mut expected = std::collections::HashMap::new();
    let path = dir.join(format!("{MEDIA_KIND}.jsonl"));
    let Ok(file) = File::open(&path) else {
        return Ok(expected);
    };
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let Ok(record) = serde_json::from_str::<Record>(&line) else {
            // Not a record: the import lists it as rejected; it names no object.
            continue;
        };
        let int = |name: &str| record.attrs.get(name).and_then(serde_json::Value::as_u64);
        let text = |name: &str| {
            record
                .attrs
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let keys = object_keys(&record);
        let mut keys = keys.into_iter();
        if let Some(original) = keys.next() {
            expected.insert(
                original,
                Expected {
                    bytes: int("size"),
                    content_type: text("content_type"),
                    sha256: Some(text("sha256")),
                },
            );
        }
        if let Some(thumbnail) = keys.next() {
            expected.insert(
                thumbnail,
                Expected {
                    bytes: int("thumbnail_size"),
                    content_type: constellation_media::store::THUMBNAIL_TYPE.to_owned(),
                    sha256: None,
                },
            );
        }
    }
    Ok(expected)
}

/// Checks every media object of `manifest`: one a ready media record of the
/// export names, of the size, type (and for an original, SHA-256) that
/// record says, within media's upload limit, and a file of that size and
/// SHA-256.
pub(crate) fn verify_media(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let expected = if manifest.media.is_empty() {
        std::collections::HashMap::new()
    } else {
        expected_objects(dir)?
    };
    for m in &manifest.media {
        let Some(e) = expected.get(&m.key) else {
            bail!(
                "manifest: media object {} belongs to no ready media record of this export",
                m.key
            );
        };
        if m.bytes > constellation_core::media::MAX_UPLOAD_BYTES
            || e.bytes.is_some_and(|b| b != m.bytes)
            || m.content_type != e.content_type
            || e.sha256.as_ref().is_some_and(|sha| *sha != m.sha256)
        {
            bail!(
                "manifest: media object {} is not what its record says (size, type or SHA-256)",
                m.key
            );
        }
    }
    for m in &manifest.media {
        let path = local_path(dir, &m.key)?;
        let (size, sha256) = digest_file(&path, |_| {})?;
        if size != m.bytes {
            bail!(
                "{}: {size} bytes, the manifest says {}",
                path.display(),
                m.bytes
            );
        }
        if sha256 != m.sha256 {
            bail!(
                "{}: SHA-256 mismatch (manifest says {}, the file is {sha256}); the file was changed or damaged",
                path.display(),
                m.sha256
            );
        }
    }
    Ok(())
}

/// Which media objects an import leaves alone as already uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlreadyThere {
    /// None: upload every one.
    None,
    /// Every one: a checkpoint says records were being written, which
    /// starts only once every object is uploaded.
    All,
    /// Those the bucket already holds with the same size (the key carries
    /// the bytes' digest, so the same key and size are the same bytes).
    Present,
}

/// Uploads every media object of `manifest` from `dir` into `bucket`
/// (nothing in a dry run) and counts them.
pub(crate) async fn import_media(
    bucket: &Arc<dyn BlobStore>,
    dir: &Path,
    manifest: &Manifest,
    already: AlreadyThere,
    dry_run: bool,
    show_progress: bool,
) -> anyhow::Result<KindCounts> {
    let total = manifest.media.len() as u64;
    let mut counts = KindCounts {
        read: total,
        ..KindCounts::default()
    };
    let mut progress = Progress::new(show_progress, "media", Some(total));
    for (done, m) in manifest.media.iter().enumerate() {
        let skip = match already {
            AlreadyThere::None => false,
            AlreadyThere::All => true,
            AlreadyThere::Present => retrying(|| bucket.head(&m.key))
                .await
                .with_context(|| format!("checking media object {}", m.key))?
                .is_some_and(|meta| meta.content_length == m.bytes),
        };
        if skip {
            counts.skipped += 1;
        } else {
            if !dry_run {
                let path = local_path(dir, &m.key)?;
                let body = Bytes::from(
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                );
                retrying(|| bucket.put(&m.key, body.clone(), &m.content_type))
                    .await
                    .with_context(|| format!("uploading media object {}", m.key))?;
            }
            counts.written += 1;
        }
        progress.record(done as u64 + 1);
    }
    progress.finish(total);
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(attrs: serde_json::Value) -> Record {
        let serde_json::Value::Object(attrs) = attrs else {
            panic!("attrs must be an object");
        };
        Record {
            kind: MEDIA_KIND.to_owned(),
            schema: 1,
            pk: "MEDIA#acme".to_owned(),
            sk: "ab".repeat(16),
            gsi1: None,
            gsi2: None,
            version: 3,
            expires_at: None,
            attrs,
            bytes: None,
        }
    }

    #[test]
    fn a_ready_image_moves_its_bytes_and_thumbnail() {
        let sha = "0123456789abcdef".repeat(4);
        let id = "ab".repeat(16);
        let keys = object_keys(&record(
            json!({"status": "ready", "sha256": sha, "thumbnail_size": 99}),
        ));
        assert_eq!(
            keys,
            [
                format!("media/acme/{id}/0123456789abcdef"),
                format!("thumbnails/acme/{id}/0123456789abcdef"),
            ]
        );
        let pdf = object_keys(&record(json!({"status": "ready", "sha256": sha})));
        assert_eq!(pdf.len(), 1);
        assert!(object_keys(&record(json!({"status": "pending"}))).is_empty());
        assert!(object_keys(&record(json!({"status": "deleted", "sha256": sha}))).is_empty());
    }

    #[test]
    fn a_manifest_names_only_objects_of_the_exports_ready_records() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let body = b"%PDF-1.7 a receipt";
        let sha = hex::encode(Sha256::digest(body));
        let ready = record(json!({"status": "ready", "sha256": sha, "size": body.len(),
            "content_type": "application/pdf"}));
        let line = serde_json::to_string(&ready).unwrap_or_default();
        fs::write(
            dir.path().join(format!("{MEDIA_KIND}.jsonl")),
            format!("{line}\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let key = object_keys(&ready).remove(0);
        let path = local_path(dir.path(), &key).unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir_all(path.parent().unwrap_or(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
        let entry = MediaFile {
            key: key.clone(),
            bytes: body.len() as u64,
            sha256: sha.clone(),
            content_type: "application/pdf".to_owned(),
        };
        let manifest = |media: Vec<MediaFile>| Manifest {
            schema: 1,
            exported_at: String::new(),
            files: Vec::new(),
            media,
        };
        assert!(verify_media(dir.path(), &manifest(vec![entry.clone()])).is_ok());
        // Another key (another organization's object, say), another type,
        // or bytes other than the record's: refused before any upload.
        let elsewhere = MediaFile {
            key: key.replace("media/acme/", "media/victim/"),
            ..entry.clone()
        };
        let html = MediaFile {
            content_type: "text/html".to_owned(),
            ..entry.clone()
        };
        for bad in [elsewhere, html] {
            assert!(verify_media(dir.path(), &manifest(vec![bad])).is_err());
        }
    }

    #[test]
    fn keys_that_could_leave_the_directory_are_refused() {
        let dir = Path::new("/export");
        assert_eq!(
            local_path(dir, "media/acme/x/0123").ok(),
            Some(PathBuf::from("/export/media/media/acme/x/0123"))
        );
        for bad in [
            "../etc/passwd",
            "media/../../x",
            "/etc/passwd",
            "media\\..\\x",
            "media//x",
            "media/./x",
            "C:/x",
            "",
        ] {
            assert!(local_path(dir, bad).is_err(), "{bad:?} was accepted");
        }
    }
}
