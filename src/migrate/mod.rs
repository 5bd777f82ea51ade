//! `constellation export` and `constellation import`: every service's table
//! as JSON Lines, one file per kind of record, and back.
//!
//! The format (schema 1) is plain enough to read, diff and check by hand:
//! a directory with `manifest.json` and one `<service>.<kind>.jsonl` per
//! kind, where the kind is the item's partition-key prefix before the first
//! `#`, lower-cased (`kv.ns`, `auth.org`, `comms.ann`). Each line is one
//! item with its keys, index keys, version, expiry, attributes and binary
//! payload, with object keys in a fixed order and the lines sorted by
//! `(pk, sk)`, so the same data always exports to the same bytes, whatever
//! order the backend scanned it in. See [`record`] for one line and
//! [`policy`] for what is never exported and where an item's organization is.
//!
//! Sorting is an external merge sort of bounded runs ([`export::ExportOptions::chunk_lines`]),
//! so memory stays flat however big a table is. Import verifies every
//! file's SHA-256 before it writes anything, writes in `put_batch`es of
//! [`MAX_BATCH_PUT`](constellation_platform::table::MAX_BATCH_PUT), and
//! checkpoints after each batch (several are in flight at once, completed
//! in order); since a batch put is idempotent, resuming after a crash
//! re-writes at most those in flight and duplicates nothing.
//!
//! With `--with-media`, the bytes of ready media travel too, as files under
//! `media/` listed in the manifest ([`media`]). [`Progress`] reports on
//! stderr how far a long step is.

pub mod check;
pub mod export;
pub mod import;
pub mod legacy;
pub mod media;
pub mod policy;
pub mod progress;
pub mod record;

use std::sync::Arc;

use anyhow::Context as _;
use constellation_platform::blob::BlobStore;
use constellation_platform::config::Platform;
use constellation_platform::table::Table;
use constellation_web::ServiceDef;
use constellation_web::host::{ResourceKind, Resources};

pub use export::{ExportOptions, export};
pub use import::{ImportOptions, ImportReport, KindCounts, Rejects, import};
pub use progress::Progress;
pub use record::{MANIFEST, Manifest, ManifestFile, MediaFile, SCHEMA};

/// One service's table, as export reads it and import writes it.
#[derive(Debug, Clone)]
pub struct ServiceTable {
    /// The service's name (`kv`): the first part of every kind it owns.
    pub service: &'static str,
    /// Its table on the chosen backend.
    pub table: Arc<dyn Table>,
}

/// The variables naming a service's table and the secret its cursors are
/// sealed with, if it has a table.
pub fn table_vars(service: &ServiceDef) -> Option<(&'static str, &'static str)> {
    let table = service
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::Table)?;
    let secret = service
        .resources
        .iter()
        .find(|r| r.kind == ResourceKind::GeneratedSecret)?;
    Some((table.var, secret.var))
}

/// The table of every service in `services` that has one, named as the
/// environment (or the defaults) say, as `run` and `comms resync` do.
pub async fn open_tables(
    platform: &Platform,
    services: &[&'static ServiceDef],
) -> anyhow::Result<Vec<ServiceTable>> {
    let mut tables = Vec::new();
    for service in services {
        let Some((table_var, secret_var)) = table_vars(service) else {
            continue;
        };
        let resources = Resources::from_env(service.resources, platform.kind())?;
        let table = platform
            .table(resources.get(table_var)?, resources.get(secret_var)?)
            .await
            .with_context(|| format!("opening {}'s table", service.name))?;
        tables.push(ServiceTable {
            service: service.name,
            table,
        });
    }
    Ok(tables)
}

/// The media service's bucket, named as the environment (or the default)
/// says: where `--with-media` reads media objects from and import writes
/// them to.
pub async fn open_media_bucket(platform: &Platform) -> anyhow::Result<Arc<dyn BlobStore>> {
    let service = &constellation_media::SERVICE;
    let resources = Resources::from_env(service.resources, platform.kind())?;
    platform
        .blob_store(resources.get(constellation_media::config::BUCKET_VAR)?)
        .await
        .context("opening the media bucket")
}
