//! Export: scan every table, keep what may leave, write one sorted file per kind.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use constellation_core::OrgId;
use constellation_platform::blob::BlobStore;
use constellation_platform::table::MAX_QUERY_LIMIT;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ServiceTable;
use super::media::{MEDIA_KIND, export_media};
use super::policy::{OrgOf, excluded, kind_of, org_of};
use super::progress::Progress;
use super::record::{LineKey, MANIFEST, Manifest, ManifestFile, Record, SCHEMA};

/// Where sorted runs wait to be merged, inside the output directory.
const RUNS_DIR: &str = ".export-runs";

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Only this organization's records (see [`super::policy::org_of`]).
    pub org: Option<OrgId>,
    /// The most lines held in memory before they are sorted and written
    /// out as a run (the external sort's chunk).
    pub chunk_lines: usize,
    /// Items expiring at or before this are left out.
    pub now: OffsetDateTime,
    /// Print progress on stderr (one line per table, see [`Progress`]).
    pub progress: bool,
    /// With this media bucket: also copy the bytes of every exported ready
    /// media record into `media/` (`--with-media`, see [`super::media`]).
    pub media: Option<Arc<dyn BlobStore>>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            org: None,
            chunk_lines: 50_000,
            now: OffsetDateTime::now_utc(),
            progress: false,
            media: None,
        }
    }
}

/// Lines of each kind not yet written to a run, and the runs so far.
#[derive(Debug, Default)]
struct Runs {
    dir: PathBuf,
    pending: BTreeMap<String, Vec<(String, String, String)>>,
    pending_lines: usize,
    files: BTreeMap<String, Vec<PathBuf>>,
}

impl Runs {
    fn push(&mut self, kind: String, pk: String, sk: String, line: String) {
        self.pending.entry(kind).or_default().push((pk, sk, line));
        self.pending_lines += 1;
    }

    /// Sorts every kind's pending lines and writes each as one run.
    fn flush(&mut self) -> anyhow::Result<()> {
        for (kind, mut lines) in std::mem::take(&mut self.pending) {
            lines.sort_unstable();
            let runs = self.files.entry(kind.clone()).or_default();
            let path = self.dir.join(format!("{kind}.{}.jsonl", runs.len()));
            let mut out = BufWriter::new(
                File::create(&path).with_context(|| format!("creating {}", path.display()))?,
            );
            for (_, _, line) in lines {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()
                .with_context(|| format!("writing {}", path.display()))?;
            runs.push(path);
        }
        self.pending_lines = 0;
        Ok(())
    }
}

/// One run being merged: its reader and its next line.
struct RunReader {
    lines: std::io::Lines<BufReader<File>>,
    path: PathBuf,
}

impl RunReader {
    fn next(&mut self) -> anyhow::Result<Option<(String, String, String)>> {
        let Some(line) = self.lines.next() else {
            return Ok(None);
        };
        let line = line.with_context(|| format!("reading {}", self.path.display()))?;
        let key: LineKey = serde_json::from_str(&line)
            .with_context(|| format!("a line of {}", self.path.display()))?;
        Ok(Some((key.pk, key.sk, line)))
    }
}

/// Merges sorted runs into `dest`; returns its line count and SHA-256.
fn merge(runs: &[PathBuf], dest: &Path) -> anyhow::Result<(u64, String)> {
    let mut readers = Vec::new();
    for path in runs {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        readers.push(RunReader {
            lines: BufReader::new(file).lines(),
            path: path.clone(),
        });
    }
    let mut heap = BinaryHeap::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        if let Some((pk, sk, line)) = reader.next()? {
            heap.push(Reverse((pk, sk, i, line)));
        }
    }
    let tmp = dest.with_extension("jsonl.tmp");
    let mut out =
        BufWriter::new(File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    let mut hash = Sha256::new();
    let mut count = 0_u64;
    while let Some(Reverse((_, _, i, line))) = heap.pop() {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        hash.update(line.as_bytes());
        hash.update(b"\n");
        count += 1;
        if let Some(reader) = readers.get_mut(i)
            && let Some((pk, sk, line)) = reader.next()?
        {
            heap.push(Reverse((pk, sk, i, line)));
        }
    }
    out.flush()
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(out);
    fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok((count, hex::encode(hash.finalize())))
}

/// Writes `value` to `path` through a temporary file and a rename, so a
/// reader never sees half of it.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    // A new file, never one already there (a link left in the directory is
    // removed, not followed).
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("removing {}", tmp.display())));
        }
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    std::io::Write::write_all(&mut file, contents)
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Exports every table of `tables` into `out` (created if missing) and
/// returns the manifest it wrote.
#[tracing::instrument(skip(tables, options), fields(out = %out.display()))]
pub async fn export(
    tables: &[ServiceTable],
    out: &Path,
    options: &ExportOptions,
) -> anyhow::Result<Manifest> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let runs_dir = out.join(RUNS_DIR);
    if runs_dir.exists() {
        fs::remove_dir_all(&runs_dir)
            .with_context(|| format!("removing {}", runs_dir.display()))?;
    }
    fs::create_dir_all(&runs_dir).with_context(|| format!("creating {}", runs_dir.display()))?;
    let mut runs = Runs {
        dir: runs_dir.clone(),
        ..Runs::default()
    };
    let chunk = options.chunk_lines.max(1);
    for ServiceTable { service, table } in tables {
        let mut progress = Progress::new(options.progress, &format!("export {service}"), None);
        let mut scanned = 0_u64;
        let mut cursor = None;
        loop {
            let page = table
                .scan(MAX_QUERY_LIMIT, cursor.take())
                .await
                .with_context(|| format!("scanning {service}'s table"))?;
            scanned += page.items.len() as u64;
            for item in &page.items {
                if item.is_expired(options.now)
                    || excluded(service, &item.key.pk, &item.key.sk).is_some()
                {
                    continue;
                }
                let kind = kind_of(service, &item.key.pk);
                if let Some(org) = &options.org {
                    match org_of(&kind, item) {
                        Ok(OrgOf::Org(o)) if &o == org => {}
                        _ => continue,
                    }
                }
                let line = serde_json::to_string(&Record::from_item(&kind, item))?;
                runs.push(kind, item.key.pk.clone(), item.key.sk.clone(), line);
                if runs.pending_lines >= chunk {
                    runs.flush()?;
                }
            }
            progress.record(scanned);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        progress.finish(scanned);
    }
    runs.flush()?;
    let mut files = Vec::new();
    for (kind, paths) in &runs.files {
        let name = format!("{kind}.jsonl");
        let (records, sha256) = merge(paths, &out.join(&name))?;
        files.push(ManifestFile {
            name,
            kind: kind.clone(),
            records,
            sha256,
        });
    }
    fs::remove_dir_all(&runs_dir).with_context(|| format!("removing {}", runs_dir.display()))?;
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let media = match &options.media {
        Some(bucket) => {
            let records = files
                .iter()
                .find(|f| f.kind == MEDIA_KIND)
                .map(|f| out.join(&f.name));
            export_media(bucket, out, records.as_deref(), options.progress).await?
        }
        None => Vec::new(),
    };
    let manifest = Manifest {
        schema: SCHEMA,
        exported_at: OffsetDateTime::now_utc().format(&Rfc3339)?,
        files,
        media,
    };
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    write_atomically(&out.join(MANIFEST), &json)?;
    Ok(manifest)
}
