//! Import: verify, validate, write in batches, checkpoint after each.
//!
//! [`KindCounts`], [`ImportReport`] and [`Rejects`] are shared with the
//! importers of other sources (`super::legacy`), so that every import
//! reports and lists its rejects the same way.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use constellation_platform::blob::BlobStore;
use constellation_platform::table::{Item, MAX_BATCH_PUT, StoreError, Table, validate_item};
use serde::{Deserialize, Serialize};

use super::ServiceTable;
use super::export::write_atomically;
use super::media::{AlreadyThere, import_media, verify_media};
use super::policy::{CLAIMS, excluded, kind_of, org_of};
use super::progress::Progress;
use super::record::{MANIFEST, Manifest, Record, SCHEMA, digest_file};

/// Where rejected records are listed, inside the import directory.
pub const REJECTS: &str = "rejects.jsonl";
/// Where the last committed batch is recorded, inside the import directory.
pub const CHECKPOINT: &str = "import.checkpoint.json";
/// How often a retryable batch failure is retried before import gives up.
const BATCH_ATTEMPTS: u32 = 5;
/// How many batches are written at once: the local writer commits them
/// together (one fsync), and DynamoDB takes them in parallel.
const IN_FLIGHT: usize = 8;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Validate and count, write nothing (not even rejects or a checkpoint).
    pub dry_run: bool,
    /// Start after the checkpoint a previous, interrupted import left.
    pub resume: bool,
    /// Print progress on stderr.
    pub progress: bool,
    /// Tests only: fail as a crash would, right after this many batches
    /// have been committed and checkpointed. The CLI never sets it.
    pub stop_after_batches: Option<usize>,
    /// The media bucket the export's media objects go to (required when
    /// its manifest lists any, see [`super::media`]).
    pub media: Option<Arc<dyn BlobStore>>,
}

/// Counts of one kind: `read = written + skipped + rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Records in the source (those a resumed import passes over included).
    pub read: u64,
    /// Records written (or that would be, in a dry run).
    pub written: u64,
    /// Records not written because they already were: by the run a
    /// `--resume` continues (up to its checkpoint), or found in the target.
    pub skipped: u64,
    /// Records rejected (by this run, or by the run it resumes: every
    /// line of `rejects.jsonl`).
    pub rejected: u64,
}

impl KindCounts {
    fn add(&mut self, other: &Self) {
        self.read += other.read;
        self.written += other.written;
        self.skipped += other.skipped;
        self.rejected += other.rejected;
    }
}

/// What an import did, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Counts by kind.
    pub kinds: BTreeMap<String, KindCounts>,
    /// Media objects uploaded to the media bucket, when the export had any
    /// (objects, not records: shown below the total).
    pub media: Option<KindCounts>,
}

impl ImportReport {
    /// Every rejected record.
    pub fn rejected(&self) -> u64 {
        self.kinds.values().map(|c| c.rejected).sum()
    }

    /// The summary table: one row per kind, the total, then the media
    /// objects if any. The one renderer of every importer's report.
    pub fn table(&self) -> String {
        fn row(out: &mut String, name: &str, c: &KindCounts) {
            out.push_str(&format!(
                "{name:<28} {:>10} {:>10} {:>10} {:>10}\n",
                c.read, c.written, c.skipped, c.rejected
            ));
        }
        let mut out = format!(
            "{:<28} {:>10} {:>10} {:>10} {:>10}\n",
            "kind", "read", "written", "skipped", "rejected"
        );
        let mut total = KindCounts::default();
        for (kind, c) in &self.kinds {
            row(&mut out, kind, c);
            total.add(c);
        }
        row(&mut out, "total", &total);
        if let Some(media) = &self.media {
            row(&mut out, "media objects", media);
        }
        out
    }
}

/// The list of rejected records: `rejects.jsonl` in the import directory,
/// one `{"file","line","reason"}` JSON line per record; on stdout in a
/// dry run, which writes nothing. Each line is written through at once
/// (rejects are rare), so those before a checkpoint are on disk with it.
#[derive(Debug)]
pub struct Rejects {
    out: Option<File>,
    path: PathBuf,
}

impl Rejects {
    /// Opens `dir/rejects.jsonl`, emptied unless `append` (a resumed run
    /// keeps the earlier run's list); in a `dry_run`, stdout.
    pub fn open(dir: &Path, dry_run: bool, append: bool) -> anyhow::Result<Self> {
        let path = dir.join(REJECTS);
        let out = if dry_run {
            None
        } else {
            // The directory may come from someone else: never write
            // through a link it planted where the list goes.
            refuse_link(&path)?;
            Some(
                OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(&path)
                    .with_context(|| format!("opening {}", path.display()))?,
            )
        };
        Ok(Self { out, path })
    }

    /// Lists line `line` (from 1) of `file` as rejected because of `reason`.
    pub fn write(&mut self, file: &str, line: u64, reason: &str) -> anyhow::Result<()> {
        let mut entry = serde_json::to_string(&Reject { file, line, reason })?;
        entry.push('\n');
        match self.out.as_mut() {
            Some(out) => out
                .write_all(entry.as_bytes())
                .with_context(|| format!("writing {}", self.path.display())),
            None => {
                print!("{entry}");
                Ok(())
            }
        }
    }
}

/// `entry` when it is not a claim (an email, a SKU) that the target already
/// holds for another record: writing it would give one email two accounts,
/// or leave a product without its SKU. Whether it is an error to read the
/// target is the import's concern, not the record's: a failed read passes
/// and the write that follows meets the same backend.
async fn claim_is_free(
    kind: &str,
    entry: (usize, Item),
    tables: &[ServiceTable],
) -> Result<(usize, Item), String> {
    let Some((_, owner)) = CLAIMS.iter().find(|(k, _)| *k == kind) else {
        return Ok(entry);
    };
    let Some(target) = tables.get(entry.0) else {
        return Ok(entry);
    };
    if let Ok(Some(held)) = target.table.get(&entry.1.key).await
        && held.str(owner) != entry.1.str(owner)
    {
        return Err(format!(
            "`{}` is already claimed in the target by another record ({owner} {})",
            entry.1.key.pk,
            held.str(owner).unwrap_or("?")
        ));
    }
    Ok(entry)
}

/// Fails when `path` is a symbolic link (to a file the operator may write,
/// which writing the import's output through it would clobber).
pub(crate) fn refuse_link(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => bail!(
            "{} is a symbolic link; remove it (the import writes its own file there)",
            path.display()
        ),
        _ => Ok(()),
    }
}

/// The last committed batch: everything up to `line` of `file` is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    file: String,
    line: u64,
}

#[derive(Debug, Serialize)]
struct Reject<'a> {
    file: &'a str,
    line: u64,
    reason: &'a str,
}

/// Checks every file of `manifest` against its SHA-256.
fn verify(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for f in &manifest.files {
        if f.name.contains(['/', '\\']) || f.name.starts_with('.') {
            bail!("manifest names a file outside the directory: `{}`", f.name);
        }
        if f.name != format!("{}.jsonl", f.kind) {
            bail!(
                "manifest: file `{}` should be named after its kind `{}`",
                f.name,
                f.kind
            );
        }
        let path = dir.join(&f.name);
        let mut lines = 0_u64;
        let (_, actual) = digest_file(&path, |chunk| {
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        })?;
        if actual != f.sha256 {
            bail!(
                "{}: SHA-256 mismatch (manifest says {}, the file is {actual}); the file was changed or damaged",
                f.name,
                f.sha256
            );
        }
        if lines != f.records {
            bail!(
                "{}: {lines} lines, the manifest says {} records",
                f.name,
                f.records
            );
        }
    }
    Ok(())
}

/// The item of one line of `file_kind`'s file, and the table it goes to,
/// or why it is rejected.
fn validate(line: &str, file_kind: &str, tables: &[ServiceTable]) -> Result<(usize, Item), String> {
    let record: Record = serde_json::from_str(line).map_err(|e| format!("not a record: {e}"))?;
    if record.schema != SCHEMA {
        return Err(format!(
            "schema {}, this build reads {SCHEMA}",
            record.schema
        ));
    }
    if record.kind != file_kind {
        return Err(format!(
            "kind `{}` in the file of `{file_kind}`",
            record.kind
        ));
    }
    let service = record.kind.split('.').next().unwrap_or_default();
    let table = tables
        .iter()
        .position(|t| t.service == service)
        .ok_or_else(|| format!("unknown kind `{}`", record.kind))?;
    if record.pk.is_empty() || record.sk.is_empty() {
        return Err("empty pk or sk".to_owned());
    }
    if kind_of(service, &record.pk) != record.kind {
        return Err(format!(
            "pk `{}` is not of kind `{}`",
            record.pk, record.kind
        ));
    }
    if let Some(why) = excluded(service, &record.pk, &record.sk) {
        return Err(format!("never imported: {why}"));
    }
    let item = record.to_item()?;
    validate_item(&item).map_err(|e| e.to_string())?;
    org_of(&record.kind, &item)?;
    // The service's own rules, as its API applies them.
    super::check::check(service, &item)?;
    Ok((table, item))
}

/// A batch on its way to its table: the task writing it, and the
/// checkpoint its completion makes true.
#[derive(Debug)]
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    line: u64,
    records: u64,
}

/// Writes one batch, retrying what may succeed on retry.
async fn put_with_retries(table: Arc<dyn Table>, items: Vec<Item>) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match table.put_batch(&items).await {
            Err(e) if e.is_retryable() && attempt < BATCH_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            other => return other,
        }
    }
}

/// The state of one import run: up to [`IN_FLIGHT`] batches of one file
/// are written at once, and they complete in order, so the checkpoint
/// after a batch still means every line up to it is written.
struct Run<'a> {
    dir: &'a Path,
    tables: &'a [ServiceTable],
    options: &'a ImportOptions,
    batches: usize,
    in_flight: VecDeque<InFlight>,
}

impl Run<'_> {
    /// Sends one batch (lines up to `line` of `file`) to its table, first
    /// waiting for the oldest one when [`IN_FLIGHT`] are on their way.
    async fn submit(
        &mut self,
        batch: &mut Vec<(usize, Item)>,
        file: &str,
        line: u64,
        counts: &mut KindCounts,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let records = batch.len() as u64;
        if self.options.dry_run {
            batch.clear();
            return self.committed(records, counts).await;
        }
        if self.in_flight.len() >= IN_FLIGHT {
            self.complete_oldest(file, counts).await?;
        }
        // One file is one kind, so one service: every item has the same table.
        let table = batch.first().map(|(t, _)| *t).unwrap_or_default();
        let items: Vec<Item> = batch.drain(..).map(|(_, item)| item).collect();
        let Some(target) = self.tables.get(table) else {
            bail!("no table for {file}");
        };
        let task = tokio::spawn(put_with_retries(target.table.clone(), items));
        self.in_flight.push_back(InFlight {
            task,
            line,
            records,
        });
        Ok(())
    }

    /// Waits for the oldest batch in flight, then records its checkpoint
    /// (every batch before it has completed too).
    async fn complete_oldest(&mut self, file: &str, counts: &mut KindCounts) -> anyhow::Result<()> {
        let Some(oldest) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let written = match oldest.task.await {
            Ok(written) => written.map_err(|e| {
                anyhow::Error::new(e).context(format!("writing {file} up to line {}", oldest.line))
            }),
            Err(e) => {
                Err(anyhow::Error::new(e)
                    .context(format!("writing {file} up to line {}", oldest.line)))
            }
        };
        if let Err(e) = written {
            self.abandon().await;
            return Err(e);
        }
        let checkpoint = serde_json::to_vec(&Checkpoint {
            file: file.to_owned(),
            line: oldest.line,
        })?;
        write_atomically(&self.dir.join(CHECKPOINT), &checkpoint)?;
        self.committed(oldest.records, counts).await
    }

    /// Waits for every batch in flight (at the end of `file`).
    async fn drain(&mut self, file: &str, counts: &mut KindCounts) -> anyhow::Result<()> {
        while !self.in_flight.is_empty() {
            self.complete_oldest(file, counts).await?;
        }
        Ok(())
    }

    /// Counts a committed batch; fails as a crash would when the test hook
    /// says so.
    async fn committed(&mut self, records: u64, counts: &mut KindCounts) -> anyhow::Result<()> {
        counts.written += records;
        self.batches += 1;
        if self.options.stop_after_batches == Some(self.batches) {
            self.abandon().await;
            bail!("stopped after {} batches (test hook)", self.batches);
        }
        Ok(())
    }

    /// After a failure: lets the batches still in flight finish, whatever
    /// their outcome (the checkpoint stays before them), so that nothing
    /// writes once import has returned.
    async fn abandon(&mut self) {
        for batch in self.in_flight.drain(..) {
            let _ = batch.task.await;
        }
    }
}

/// On resume: the rejects the earlier run listed up to the checkpoint (file
/// number `at`, line `line`), counted by file, and that list as text; the
/// rejects after it are dropped, since those lines are read again.
fn rejects_before(
    dir: &Path,
    manifest: &Manifest,
    at: usize,
    line: u64,
) -> (String, BTreeMap<String, u64>) {
    #[derive(Deserialize)]
    struct Listed {
        file: String,
        line: u64,
    }
    let mut kept = String::new();
    let mut counts = BTreeMap::new();
    let Ok(text) = fs::read_to_string(dir.join(REJECTS)) else {
        return (kept, counts);
    };
    for entry in text.lines() {
        let Ok(listed) = serde_json::from_str::<Listed>(entry) else {
            continue;
        };
        let keep = match manifest.files.iter().position(|f| f.name == listed.file) {
            Some(i) => i < at || (i == at && listed.line <= line),
            None => false,
        };
        if keep {
            kept.push_str(entry);
            kept.push('\n');
            *counts.entry(listed.file).or_default() += 1;
        }
    }
    (kept, counts)
}

/// Reads and checks `dir/manifest.json`, then every file it lists (sizes
/// and SHA-256), before anything is written.
fn read_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    let manifest_path = dir.join(MANIFEST);
    let manifest: Manifest = serde_json::from_slice(
        &fs::read(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?,
    )
    .with_context(|| format!("parsing {}", manifest_path.display()))?;
    if manifest.schema != SCHEMA {
        bail!(
            "{}: schema {}, this build reads {SCHEMA}",
            manifest_path.display(),
            manifest.schema
        );
    }
    verify(dir, &manifest)?;
    verify_media(dir, &manifest)?;
    Ok(manifest)
}

/// Imports the export in `dir` into `tables` (and its media objects into
/// [`ImportOptions::media`], before the records). Rejected records are
/// listed in `dir/rejects.jsonl` (on stdout in a dry run); the caller
/// decides whether any makes the import fail ([`ImportReport::rejected`]).
#[tracing::instrument(skip(tables, options), fields(dir = %dir.display()))]
pub async fn import(
    tables: &[ServiceTable],
    dir: &Path,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
    let manifest = read_manifest(dir)?;
    let bucket = match (&options.media, manifest.media.is_empty()) {
        (_, true) => None,
        (Some(bucket), false) => Some(bucket),
        (None, false) => bail!(
            "the export carries {} media objects and no media bucket was given",
            manifest.media.len()
        ),
    };

    let checkpoint_path = dir.join(CHECKPOINT);
    let checkpoint: Option<Checkpoint> = if options.resume && checkpoint_path.exists() {
        Some(
            serde_json::from_slice(&fs::read(&checkpoint_path)?)
                .with_context(|| format!("parsing {}", checkpoint_path.display()))?,
        )
    } else {
        None
    };
    let skip_to = match &checkpoint {
        Some(c) => Some((
            manifest
                .files
                .iter()
                .position(|f| f.name == c.file)
                .with_context(|| {
                    format!("the checkpoint names `{}`, not in the manifest", c.file)
                })?,
            c.line,
        )),
        None => None,
    };

    let earlier_rejects = match skip_to {
        Some((at, line)) => {
            let (kept, counts) = rejects_before(dir, &manifest, at, line);
            if !options.dry_run {
                write_atomically(&dir.join(REJECTS), kept.as_bytes())?;
            }
            counts
        }
        None => BTreeMap::new(),
    };
    let mut rejects = Rejects::open(dir, options.dry_run, options.resume)?;

    let mut report = ImportReport::default();
    if let Some(bucket) = bucket {
        // Every object goes up before the first record: a checkpoint
        // means they all are.
        let already = match (options.resume, skip_to) {
            (false, _) => AlreadyThere::None,
            (true, Some(_)) => AlreadyThere::All,
            (true, None) => AlreadyThere::Present,
        };
        report.media = Some(
            import_media(
                bucket,
                dir,
                &manifest,
                already,
                options.dry_run,
                options.progress,
            )
            .await?,
        );
    }

    let mut run = Run {
        dir,
        tables,
        options,
        batches: 0,
        in_flight: VecDeque::new(),
    };
    for (index, f) in manifest.files.iter().enumerate() {
        let mut counts = report.kinds.get(&f.kind).copied().unwrap_or_default();
        let earlier = earlier_rejects.get(&f.name).copied().unwrap_or_default();
        let skip_through = match skip_to {
            Some((at, _)) if index < at => {
                counts.read += f.records;
                counts.rejected += earlier;
                counts.skipped += f.records.saturating_sub(earlier);
                report.kinds.insert(f.kind.clone(), counts);
                continue;
            }
            Some((at, line)) if index == at => {
                counts.rejected += earlier;
                counts.skipped += line.saturating_sub(earlier);
                line
            }
            _ => 0,
        };
        let path = dir.join(&f.name);
        let reader = BufReader::new(
            File::open(&path).with_context(|| format!("opening {}", path.display()))?,
        );
        let mut progress = Progress::new(options.progress, &f.name, Some(f.records));
        let mut batch = Vec::with_capacity(MAX_BATCH_PUT);
        let mut number = 0_u64;
        for line in reader.lines() {
            number += 1;
            counts.read += 1;
            let line = line.with_context(|| format!("reading {} line {number}", f.name))?;
            if number <= skip_through {
                continue;
            }
            progress.record(number);
            let checked = match validate(&line, &f.kind, tables) {
                Ok(entry) => claim_is_free(&f.kind, entry, tables).await,
                Err(reason) => Err(reason),
            };
            match checked {
                Ok(entry) => {
                    batch.push(entry);
                    if batch.len() == MAX_BATCH_PUT {
                        let done = run.submit(&mut batch, &f.name, number, &mut counts).await;
                        report.kinds.insert(f.kind.clone(), counts);
                        done?;
                    }
                }
                Err(reason) => {
                    counts.rejected += 1;
                    rejects.write(&f.name, number, &reason)?;
                }
            }
        }
        let mut done = run.submit(&mut batch, &f.name, number, &mut counts).await;
        if done.is_ok() {
            done = run.drain(&f.name, &mut counts).await;
        }
        report.kinds.insert(f.kind.clone(), counts);
        done?;
        progress.finish(number);
    }
    if !options.dry_run && checkpoint_path.exists() {
        // Everything is written: a later import starts from the beginning.
        fs::remove_file(&checkpoint_path)
            .with_context(|| format!("removing {}", checkpoint_path.display()))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rejects_are_never_written_through_a_link_planted_in_the_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, "keep me").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&victim, dir.path().join(REJECTS))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Rejects::open(dir.path(), false, false).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap_or_default(), "keep me");
        // The checkpoint's temporary file: a link there is replaced, not followed.
        std::os::unix::fs::symlink(&victim, dir.path().join("import.checkpoint.tmp"))
            .unwrap_or_else(|e| panic!("{e}"));
        super::super::export::write_atomically(&dir.path().join(CHECKPOINT), b"{}")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fs::read_to_string(&victim).unwrap_or_default(), "keep me");
    }

    use super::*;

    #[test]
    fn the_table_shows_skipped_a_total_and_media_objects() {
        let mut report = ImportReport::default();
        let kv = KindCounts {
            read: 63,
            written: 11,
            skipped: 50,
            rejected: 2,
        };
        let org = KindCounts {
            read: 1,
            written: 1,
            ..KindCounts::default()
        };
        report.kinds.insert("kv.ns".to_owned(), kv);
        report.kinds.insert("auth.org".to_owned(), org);
        report.media = Some(KindCounts {
            read: 3,
            written: 1,
            skipped: 2,
            rejected: 0,
        });
        let table = report.table();
        let words: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(words.len(), 5, "{table}");
        assert_eq!(words[0], ["kind", "read", "written", "skipped", "rejected"]);
        assert_eq!(words[1], ["auth.org", "1", "1", "0", "0"]);
        assert_eq!(words[2], ["kv.ns", "63", "11", "50", "2"]);
        assert_eq!(words[3], ["total", "64", "12", "50", "2"]);
        assert_eq!(words[4], ["media", "objects", "3", "1", "2", "0"]);
        assert_eq!(report.rejected(), 2);
    }
}
