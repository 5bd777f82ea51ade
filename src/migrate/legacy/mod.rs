//! `constellation import --from postgres-csv|mongo DIR`: legacy databases
//! into the services, through each service's own `import_*` operation.
//!
//! Every row is parsed with the rules the API applies (an email is an
//! [`Email`], an amount a [`Money`] from its decimal text, a role a
//! [`Role`]...), its foreign keys are checked against the rows already
//! accepted, and only then is it written, by the service that owns it, with
//! every index and counter that service keeps (an owner raises its
//! organization's owner count; a product claims its SKU). A row that breaks
//! a rule is listed in `DIR/rejects.jsonl` with its file, line and reason,
//! and the rest imports.
//!
//! Imported records get ids derived from the source, the table and the
//! legacy id ([`fields::seed`]), and every `import_*` writes only if the
//! record is not there yet. So an interrupted import is finished by running
//! it again (`--resume` says so, and changes nothing else): what the first
//! run wrote is counted as skipped, nothing is written twice.
//!
//! Files are read in dependency order (organizations before users, users
//! before what they own). Holding the accepted ids of organizations, users,
//! suppliers, products and orders (and the order lines until their orders
//! are read) is what memory grows with; the rows themselves stream.

pub mod fields;
mod map;
pub mod source;
mod write;

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use anyhow::bail;
use constellation_core::import::Imported;
use futures::StreamExt as _;

use self::map::{Known, Mapper, Table, file_of, tables};
use self::source::{CsvRows, MongoRows, Rows};
pub use self::write::Stores;
use self::write::{Failure, Forget, Op};
use super::Progress;
use super::import::{ImportReport, KindCounts, Rejects};

/// Where legacy data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `COPY <table> TO STDOUT WITH (FORMAT csv, HEADER)`, one `<table>.csv` each.
    PostgresCsv,
    /// `mongoexport` JSON Lines, one `<collection>.json` (or `.jsonl`) each.
    Mongo,
}

impl Source {
    /// Its name on the command line, and in the ids it derives.
    pub fn tag(self) -> &'static str {
        match self {
            Self::PostgresCsv => "postgres-csv",
            Self::Mongo => "mongo",
        }
    }
}

/// How to import.
#[derive(Debug, Clone)]
pub struct LegacyOptions {
    /// Validate and report, write nothing (rejects go to stdout).
    pub dry_run: bool,
    /// Print progress on stderr.
    pub progress: bool,
    /// MongoDB: the name of the organization users without an
    /// `organization_id` join (the first seed had one tenant).
    pub default_org_name: String,
}

impl Default for LegacyOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            progress: false,
            default_org_name: "Imported organization".to_owned(),
        }
    }
}

/// How many writes of one file run at once.
const CONCURRENCY: usize = 8;
/// How many rows are validated before their writes run.
const CHUNK: usize = 64;

/// One row in flight: validated, waiting to be written.
struct Pending {
    line: u64,
    op: Op,
    forget: Forget,
    /// Lines of the held rows it takes with it (see [`FileRun::held`]).
    held: Vec<u64>,
}

/// The table whose rows a file's records take with them: inventory for
/// products, order lines for orders.
fn held_table(table: &str) -> Option<&'static str> {
    match table {
        "products" => Some("inventory"),
        "orders" => Some("order_items"),
        _ => None,
    }
}

/// One file being imported.
struct FileRun {
    file: String,
    counts: KindCounts,
    /// The held table's file and counts: its rows are written, skipped or
    /// rejected with the records that take them.
    held: Option<(String, KindCounts)>,
    chunk: Vec<Pending>,
}

impl FileRun {
    fn new(file: String) -> Self {
        Self {
            file,
            counts: KindCounts::default(),
            held: None,
            chunk: Vec::with_capacity(CHUNK),
        }
    }

    fn reject(&mut self, rejects: &mut Rejects, line: u64, reason: &str) -> anyhow::Result<()> {
        self.counts.rejected += 1;
        rejects.write(&self.file, line, reason)
    }

    /// Counts a row as written (a dry run), with its held rows.
    fn count_written(&mut self, held: usize) {
        self.counts.written += 1;
        if let Some((_, c)) = self.held.as_mut() {
            c.written += held as u64;
        }
    }

    /// Runs the writes waiting (up to [`CONCURRENCY`] at once, results in
    /// row order) and counts them.
    async fn flush(
        &mut self,
        stores: Option<&Stores>,
        mapper: &mut Mapper<'_>,
        rejects: &mut Rejects,
    ) -> anyhow::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let Some(stores) = stores else {
            bail!("nothing to write through: this import has no stores (a dry run)");
        };
        let writes: Vec<(Pending, Result<Imported, Failure>)> =
            futures::stream::iter(self.chunk.drain(..))
                .map(|mut p| async move {
                    let op = std::mem::replace(&mut p.op, Op::Done);
                    let result = op.run(stores).await;
                    (p, result)
                })
                .buffered(CONCURRENCY)
                .collect()
                .await;
        let mut fatal = None;
        for (
            Pending {
                line, forget, held, ..
            },
            result,
        ) in writes
        {
            let n = held.len() as u64;
            match result {
                Ok(Imported::Created) => self.count_written(held.len()),
                Ok(Imported::AlreadyPresent) => {
                    self.counts.skipped += 1;
                    if let Some((_, c)) = self.held.as_mut() {
                        c.skipped += n;
                    }
                }
                Err(Failure::Reject(reason)) => {
                    mapper.forget(&forget);
                    self.reject(rejects, line, &reason)?;
                    if let Some((held_file, c)) = self.held.as_mut() {
                        c.rejected += n;
                        for held_line in held {
                            rejects.write(
                                held_file,
                                held_line,
                                &format!("its record, {} line {line}, was rejected", self.file),
                            )?;
                        }
                    }
                }
                Err(Failure::Fatal(e)) => {
                    fatal.get_or_insert(e.context(format!(
                        "{} line {line}; nothing after the rows already written was lost: \
                         run the same import again to finish it",
                        self.file
                    )));
                }
            }
        }
        fatal.map_or(Ok(()), Err)
    }
}

/// Imports the legacy export in `dir` through `stores` (`None` only for a
/// dry run, which opens nothing it would write to). Rejected rows go
/// to `dir/rejects.jsonl` (stdout in a dry run); the caller decides whether
/// any makes the import fail ([`ImportReport::rejected`]).
#[tracing::instrument(skip(stores, options), fields(dir = %dir.display(), source = source.tag()))]
pub async fn import_legacy(
    source: Source,
    dir: &Path,
    stores: Option<&Stores>,
    options: &LegacyOptions,
) -> anyhow::Result<ImportReport> {
    if stores.is_none() && !options.dry_run {
        bail!("an import that writes needs the services' stores");
    }
    let tables = tables(source);
    let files: Vec<(&Table, PathBuf)> = tables
        .iter()
        .copied()
        .filter_map(|t| file_of(source, dir, t.name).map(|p| (t, p)))
        .collect();
    if files.is_empty() {
        bail!(
            "{}: none of the files a {} import reads ({})",
            dir.display(),
            source.tag(),
            tables.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
        );
    }
    let mut rejects = Rejects::open(dir, options.dry_run, false)?;
    let mut known = Known::default();
    let mut mapper = Mapper {
        source,
        known: &mut known,
        options,
        held: Vec::new(),
    };
    let mut report = ImportReport::default();
    let mut unread: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, path) in &files {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut rows: Box<dyn Rows> = match source {
            Source::PostgresCsv => Box::new(CsvRows::open(path, table.columns)?),
            Source::Mongo => Box::new(MongoRows::open(path, table.columns)?),
        };
        let mut run = FileRun::new(file.clone());
        if let Some(held) = held_table(table.name) {
            let counts = report.kinds.remove(held).unwrap_or_default();
            run.held = Some((format!("{held}.csv"), counts));
        }
        let mut orgs = FileRun::new(file.clone());
        let mut progress = Progress::new(options.progress, &file, None);
        while let Some(row) = rows.next_row() {
            run.counts.read += 1;
            progress.record(run.counts.read);
            let row = match row? {
                Ok(row) => row,
                Err((line, reason)) => {
                    run.reject(&mut rejects, line, &reason)?;
                    continue;
                }
            };
            if source == Source::Mongo && table.name == "users" {
                // The organizations of a MongoDB import come with their
                // first user, and are written before it.
                match mapper.mongo_org(&row) {
                    Ok(None) => {}
                    Ok(Some((op, legacy))) => {
                        orgs.counts.read += 1;
                        if options.dry_run {
                            orgs.count_written(0);
                        } else {
                            orgs.chunk.push(Pending {
                                line: row.line,
                                op,
                                forget: Forget::Org(legacy),
                                held: Vec::new(),
                            });
                            run.flush(stores, &mut mapper, &mut rejects).await?;
                            orgs.flush(stores, &mut mapper, &mut rejects).await?;
                        }
                    }
                    Err(reason) => {
                        run.reject(&mut rejects, row.line, &reason)?;
                        continue;
                    }
                }
            }
            match (table.map)(&mut mapper, &row) {
                // Held: counted with the record that takes it.
                Ok(None) => {}
                Ok(Some((op, forget))) => {
                    let held = std::mem::take(&mut mapper.held);
                    if options.dry_run {
                        run.count_written(held.len());
                    } else {
                        run.chunk.push(Pending {
                            line: row.line,
                            op,
                            forget,
                            held,
                        });
                        if run.chunk.len() >= CHUNK {
                            run.flush(stores, &mut mapper, &mut rejects).await?;
                        }
                    }
                }
                Err(reason) => {
                    mapper.held.clear();
                    run.reject(&mut rejects, row.line, &reason)?;
                }
            }
        }
        run.flush(stores, &mut mapper, &mut rejects).await?;
        progress.finish(run.counts.read);
        if let Some((held_file, mut counts)) = run.held.take() {
            // Held rows no record took: listed now, at their lines.
            for (line, reason) in mapper.leftovers(table.name) {
                counts.rejected += 1;
                rejects.write(&held_file, line, &reason)?;
            }
            if let Some(held) = held_table(table.name) {
                report.kinds.insert(held.to_owned(), counts);
            }
        }
        if orgs.counts.read > 0 {
            report.kinds.insert("organizations".to_owned(), orgs.counts);
        }
        report.kinds.insert(table.name.to_owned(), run.counts);
        let columns = rows.unread_columns();
        if !columns.is_empty() {
            unread.insert(file, columns);
        }
    }
    // Held rows of a table whose taker has no file at all.
    for (held, taker) in [("inventory", "products"), ("order_items", "orders")] {
        let leftovers = mapper.leftovers(taker);
        if leftovers.is_empty() {
            continue;
        }
        let counts = report.kinds.entry(held.to_owned()).or_default();
        for (line, reason) in leftovers {
            counts.rejected += 1;
            rejects.write(&format!("{held}.csv"), line, &reason)?;
        }
    }
    for (file, columns) in unread {
        eprintln!(
            "warning: {file}: columns not imported (no service keeps them): {}",
            columns.join(", ")
        );
    }
    Ok(report)
}
