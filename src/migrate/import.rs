//! Import: verify, validate, write in batches, checkpoint after each.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, IsTerminal as _, Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use constellation_platform::table::{Item, MAX_BATCH_PUT, validate_item};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ServiceTable;
use super::export::write_atomically;
use super::policy::{excluded, kind_of, org_of};
use super::record::{MANIFEST, Manifest, Record, SCHEMA};

/// Where rejected records are listed, inside the import directory.
pub const REJECTS: &str = "rejects.jsonl";
/// Where the last committed batch is recorded, inside the import directory.
pub const CHECKPOINT: &str = "import.checkpoint.json";
/// Without a terminal, one progress line per this many records.
const PLAIN_PROGRESS_EVERY: u64 = 10_000;
/// How often a retryable batch failure is retried before import gives up.
const BATCH_ATTEMPTS: u32 = 5;

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
}

/// Counts of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Records read (after the checkpoint, when resuming).
    pub read: u64,
    /// Records written (or that would be, in a dry run).
    pub written: u64,
    /// Records not written because an earlier run of the import did.
    pub skipped: u64,
    /// Records rejected.
    pub rejected: u64,
}

/// What an import did, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Counts by kind.
    pub kinds: BTreeMap<String, KindCounts>,
}

impl ImportReport {
    /// Every rejected record.
    pub fn rejected(&self) -> u64 {
        self.kinds.values().map(|c| c.rejected).sum()
    }

    /// The summary table: one row per kind, then the total.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<28} {:>10} {:>10} {:>10}\n",
            "kind", "read", "written", "rejected"
        );
        let mut total = KindCounts::default();
        for (kind, c) in &self.kinds {
            out.push_str(&format!(
                "{kind:<28} {:>10} {:>10} {:>10}\n",
                c.read, c.written, c.rejected
            ));
            total.read += c.read;
            total.written += c.written;
            total.rejected += c.rejected;
        }
        out.push_str(&format!(
            "{:<28} {:>10} {:>10} {:>10}\n",
            "total", total.read, total.written, total.rejected
        ));
        out
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

/// Checks every file of `manifest` against its SHA-256 before anything is written.
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
        let mut file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut hash = Sha256::new();
        let mut lines = 0_u64;
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
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        let actual = hex::encode(hash.finalize());
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
    Ok((table, item))
}

/// Progress of one file on stderr.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    terminal: bool,
    start: Instant,
    drawn: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            start: Instant::now(),
            drawn: Instant::now(),
        }
    }

    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.start.elapsed().as_secs_f64().max(0.001)
    }

    fn record(&mut self, file: &str, n: u64) {
        if !self.enabled {
            return;
        }
        if self.terminal {
            if self.drawn.elapsed() >= Duration::from_millis(200) {
                self.drawn = Instant::now();
                eprint!("\r{file}: {n} records ({:.0}/s)   ", self.rate(n));
            }
        } else if n.is_multiple_of(PLAIN_PROGRESS_EVERY) {
            eprintln!("{file}: {n} records ({:.0}/s)", self.rate(n));
        }
    }

    fn done(&self, file: &str, n: u64) {
        if self.enabled && self.terminal {
            eprintln!("\r{file}: {n} records ({:.0}/s)   ", self.rate(n));
        }
    }
}

/// The state of one import run.
struct Run<'a> {
    dir: &'a Path,
    tables: &'a [ServiceTable],
    options: &'a ImportOptions,
    batches: usize,
}

impl Run<'_> {
    /// Writes one batch (retrying what may succeed on retry), then records
    /// the checkpoint; fails as a crash would when the test hook says so.
    async fn commit(
        &mut self,
        batch: &mut Vec<(usize, Item)>,
        file: &str,
        line: u64,
        counts: &mut KindCounts,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let written = batch.len() as u64;
        if !self.options.dry_run {
            // One file is one kind, so one service: every item has the same table.
            let table = batch.first().map(|(t, _)| *t).unwrap_or_default();
            let items: Vec<Item> = batch.drain(..).map(|(_, item)| item).collect();
            let Some(target) = self.tables.get(table) else {
                bail!("no table for {file}");
            };
            let mut attempt = 0;
            loop {
                attempt += 1;
                match target.table.put_batch(&items).await {
                    Ok(()) => break,
                    Err(e) if e.is_retryable() && attempt < BATCH_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e)
                            .context(format!("writing {file} up to line {line}")));
                    }
                }
            }
            let checkpoint = serde_json::to_vec(&Checkpoint {
                file: file.to_owned(),
                line,
            })?;
            write_atomically(&self.dir.join(CHECKPOINT), &checkpoint)?;
        } else {
            batch.clear();
        }
        counts.written += written;
        self.batches += 1;
        if self.options.stop_after_batches == Some(self.batches) {
            bail!("stopped after {} batches (test hook)", self.batches);
        }
        Ok(())
    }
}

/// On resume: keeps only the rejects up to the checkpoint (file number
/// `at`, line `line`), since the lines after it are read again.
fn keep_rejects_before(
    dir: &Path,
    manifest: &Manifest,
    at: usize,
    line: u64,
) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Listed {
        file: String,
        line: u64,
    }
    let path = dir.join(REJECTS);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let mut kept = String::new();
    for entry in text.lines() {
        let keep = serde_json::from_str::<Listed>(entry).is_ok_and(|l| {
            match manifest.files.iter().position(|f| f.name == l.file) {
                Some(i) => i < at || (i == at && l.line <= line),
                None => false,
            }
        });
        if keep {
            kept.push_str(entry);
            kept.push('\n');
        }
    }
    write_atomically(&path, kept.as_bytes())
}

/// Imports the export in `dir` into `tables`. Rejected records are listed
/// in `dir/rejects.jsonl` (on stdout in a dry run); the caller decides
/// whether any makes the import fail ([`ImportReport::rejected`]).
#[tracing::instrument(skip(tables, options), fields(dir = %dir.display()))]
pub async fn import(
    tables: &[ServiceTable],
    dir: &Path,
    options: &ImportOptions,
) -> anyhow::Result<ImportReport> {
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

    if let (Some((at, line)), false) = (skip_to, options.dry_run) {
        keep_rejects_before(dir, &manifest, at, line)?;
    }
    let mut rejects = if options.dry_run {
        None
    } else {
        let path = dir.join(REJECTS);
        Some(
            OpenOptions::new()
                .create(true)
                .write(true)
                .append(options.resume)
                .truncate(!options.resume)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?,
        )
    };

    let mut run = Run {
        dir,
        tables,
        options,
        batches: 0,
    };
    let mut report = ImportReport::default();
    for (index, f) in manifest.files.iter().enumerate() {
        let skip_through = match skip_to {
            Some((at, _)) if index < at => continue,
            Some((at, line)) if index == at => line,
            _ => 0,
        };
        let mut counts = report.kinds.get(&f.kind).copied().unwrap_or_default();
        let path = dir.join(&f.name);
        let reader = BufReader::new(
            File::open(&path).with_context(|| format!("opening {}", path.display()))?,
        );
        let mut progress = Progress::new(options.progress);
        let mut batch = Vec::with_capacity(MAX_BATCH_PUT);
        let mut number = 0_u64;
        for line in reader.lines() {
            number += 1;
            let line = line.with_context(|| format!("reading {} line {number}", f.name))?;
            if number <= skip_through {
                continue;
            }
            counts.read += 1;
            progress.record(&f.name, counts.read);
            match validate(&line, &f.kind, tables) {
                Ok(entry) => {
                    batch.push(entry);
                    if batch.len() == MAX_BATCH_PUT {
                        let done = run.commit(&mut batch, &f.name, number, &mut counts).await;
                        report.kinds.insert(f.kind.clone(), counts);
                        done?;
                    }
                }
                Err(reason) => {
                    counts.rejected += 1;
                    let reject = serde_json::to_string(&Reject {
                        file: &f.name,
                        line: number,
                        reason: &reason,
                    })?;
                    match rejects.as_mut() {
                        Some(out) => writeln!(out, "{reject}")
                            .with_context(|| format!("writing {}", dir.join(REJECTS).display()))?,
                        None => println!("{reject}"),
                    }
                }
            }
        }
        let done = run.commit(&mut batch, &f.name, number, &mut counts).await;
        report.kinds.insert(f.kind.clone(), counts);
        done?;
        progress.done(&f.name, counts.read);
    }
    if let Some(out) = rejects.as_mut() {
        out.flush()?;
    }
    if !options.dry_run && checkpoint_path.exists() {
        // Everything is written: a later import starts from the beginning.
        fs::remove_file(&checkpoint_path)
            .with_context(|| format!("removing {}", checkpoint_path.display()))?;
    }
    Ok(report)
}
