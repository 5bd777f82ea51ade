//! One line of an export file, and the manifest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use constellation_platform::table::{IndexKey, Item, ItemKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The version of the format this build writes and reads.
pub const SCHEMA: u32 = 1;
/// The manifest's file name inside an export directory.
pub const MANIFEST: &str = "manifest.json";

/// One item as a line of JSON. Fields serialize in this order, and
/// [`Record::from_item`] sorts every object's keys, so equal items give
/// equal bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// `<service>.<kind>`.
    pub kind: String,
    /// [`SCHEMA`].
    pub schema: u32,
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
    /// `[pk, sk]` in `gsi1`.
    pub gsi1: Option<[String; 2]>,
    /// `[pk, sk]` in `gsi2`.
    pub gsi2: Option<[String; 2]>,
    /// The item's version.
    pub version: u64,
    /// Expiry in Unix seconds.
    pub expires_at: Option<i64>,
    /// Attributes.
    pub attrs: Map<String, Value>,
    /// The binary payload, base64 (standard alphabet, padded).
    pub bytes: Option<String>,
}

fn index(key: &Option<IndexKey>) -> Option<[String; 2]> {
    key.as_ref().map(|k| [k.pk.clone(), k.sk.clone()])
}

/// `value` with every object's keys in sorted order.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(canonical_map(map)),
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn canonical_map(map: &Map<String, Value>) -> Map<String, Value> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
        .into_iter()
        .map(|(k, v)| (k.clone(), canonical(v)))
        .collect()
}

impl Record {
    /// The record of `item`, of `kind`.
    pub fn from_item(kind: &str, item: &Item) -> Self {
        Self {
            kind: kind.to_owned(),
            schema: SCHEMA,
            pk: item.key.pk.clone(),
            sk: item.key.sk.clone(),
            gsi1: index(&item.gsi1),
            gsi2: index(&item.gsi2),
            version: item.version,
            expires_at: item.expires_at.map(OffsetDateTime::unix_timestamp),
            attrs: canonical_map(&item.attrs),
            bytes: item.bytes.as_ref().map(|b| STANDARD.encode(b)),
        }
    }

    /// The item this record describes.
    pub fn to_item(&self) -> Result<Item, String> {
        let expires_at = self
            .expires_at
            .map(OffsetDateTime::from_unix_timestamp)
            .transpose()
            .map_err(|e| format!("expires_at: {e}"))?;
        let bytes = self
            .bytes
            .as_deref()
            .map(|b| STANDARD.decode(b).map(Bytes::from))
            .transpose()
            .map_err(|e| format!("bytes: {e}"))?;
        Ok(Item {
            key: ItemKey::new(&self.pk, &self.sk),
            gsi1: self.gsi1.as_ref().map(|[p, s]| IndexKey::new(p, s)),
            gsi2: self.gsi2.as_ref().map(|[p, s]| IndexKey::new(p, s)),
            version: self.version,
            expires_at,
            attrs: self.attrs.clone(),
            bytes,
        })
    }
}

/// The sort key of a line: its `(pk, sk)`.
#[derive(Debug, Deserialize)]
pub(crate) struct LineKey {
    pub pk: String,
    pub sk: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`SCHEMA`].
    pub schema: u32,
    /// When the export ran (RFC 3339).
    pub exported_at: String,
    /// Every file, sorted by name.
    pub files: Vec<ManifestFile>,
    /// With `--with-media`: every media object, sorted by key. Absent from
    /// the JSON when there is none, so an export without media keeps the
    /// bytes it had before this field existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaFile>,
}

/// One file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name, relative to the directory.
    pub name: String,
    /// The kind of every record in it.
    pub kind: String,
    /// How many records (lines).
    pub records: u64,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
}

/// One media object of an export, stored at `media/<key>` inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFile {
    /// Its object key in the media bucket (and its path under `media/`).
    pub key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, lower-case hex.
    pub sha256: String,
    /// The content type it is stored (and served) with.
    pub content_type: String,
}

/// Size and SHA-256 (lower-case hex) of the file at `path`, read as a
/// stream; `each` sees every chunk on the way (to count lines, say).
pub(crate) fn digest_file(
    path: &std::path::Path,
    mut each: impl FnMut(&[u8]),
) -> anyhow::Result<(u64, String)> {
    use anyhow::Context as _;
    use sha2::{Digest as _, Sha256};
    use std::io::Read as _;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut size = 0_u64;
    let mut buf = vec![0_u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hash.update(chunk);
        each(chunk);
        size += n as u64;
    }
    Ok((size, hex::encode(hash.finalize())))
}
