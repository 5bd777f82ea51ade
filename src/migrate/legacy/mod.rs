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
pub mod source;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use constellation_auth::password::validate_legacy_hash;
use constellation_auth::store::{AccountForImport, AuthError, AuthStore, OrgName};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Role};
use constellation_core::import::Imported;
use constellation_expenses::domain::{self as expense_rules, Details};
use constellation_expenses::store::{ExpenseError, ExpenseId, ExpenseImport, ExpenseStore};
use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::VerifierConfig;
use constellation_web::ServiceDef;
use constellation_web::host::{Context, Resources};
use futures::StreamExt as _;
use time::OffsetDateTime;

use self::fields::{invalid, seed, seed_hex, seed_u128, timestamp};
use self::source::{Column, CsvRows, MongoRows, Row, Rows};
use super::import::{ImportReport, KindCounts, REJECTS};

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

/// The stores a legacy import writes through.
#[derive(Debug)]
pub struct Stores {
    /// Organizations and accounts.
    pub auth: AuthStore,
    /// Expenses.
    pub expenses: ExpenseStore,
}

impl Stores {
    /// Every store, built from the context `context` gives each service.
    pub async fn build(
        context: impl Fn(&'static ServiceDef) -> anyhow::Result<Context>,
    ) -> anyhow::Result<Self> {
        let auth = constellation_auth::build_store(&context(&constellation_auth::SERVICE)?).await?;
        let (expenses, _) =
            constellation_expenses::store(&context(&constellation_expenses::SERVICE)?).await?;
        Ok(Self { auth, expenses })
    }

    /// Every store, on `platform`, with the resources the environment (or
    /// the local defaults) names, as `serve` and `run` find them.
    pub async fn open(platform: &Platform) -> anyhow::Result<Self> {
        Self::build(|service| {
            Ok(Context::new(
                platform.clone(),
                Resources::from_env(service.resources, platform.kind())?,
                MetricsSink::discard(),
                VerifierConfig::from_env()?,
            ))
        })
        .await
    }
}

/// How many writes of one file run at once.
const CONCURRENCY: usize = 8;
/// How many rows are validated before their writes run.
const CHUNK: usize = 64;

/// A write, ready to run, and what to forget if the service refuses it.
enum Op {
    Org {
        org: OrgId,
        name: OrgName,
        created_at: OffsetDateTime,
    },
    Account {
        org: OrgId,
        import: AccountForImport,
    },
    Expense {
        org: OrgId,
        import: ExpenseImport,
    },
}

/// What a refused write takes back from [`Known`], so nothing that refers
/// to it imports.
#[derive(Debug, Clone)]
enum Forget {
    Nothing,
    Org(String),
    User(String),
}

/// Why a write did not happen: the row's fault (listed, the import goes
/// on) or the backend's (the import stops; running it again resumes).
enum Failure {
    Reject(String),
    Fatal(anyhow::Error),
}

fn auth_failure(e: AuthError) -> Failure {
    match e {
        AuthError::Store(_) | AuthError::Hash(_) | AuthError::Contention => {
            Failure::Fatal(anyhow::Error::new(e))
        }
        AuthError::EmailTaken => Failure::Reject("email: already has an account".to_owned()),
        other => Failure::Reject(other.to_string()),
    }
}

fn expense_failure(e: ExpenseError) -> Failure {
    match e {
        ExpenseError::Store(_) | ExpenseError::Blob(_) | ExpenseError::Contention => {
            Failure::Fatal(anyhow::Error::new(e))
        }
        other => Failure::Reject(other.to_string()),
    }
}

impl Op {
    async fn run(self, stores: &Stores) -> Result<Imported, Failure> {
        match self {
            Self::Org {
                org,
                name,
                created_at,
            } => stores
                .auth
                .import_org(&org, &name, created_at)
                .await
                .map_err(auth_failure),
            Self::Account { org, import } => stores
                .auth
                .import_account(&org, import)
                .await
                .map_err(auth_failure),
            Self::Expense { org, import } => stores
                .expenses
                .import_expense(&org, import)
                .await
                .map_err(expense_failure),
        }
    }
}

/// The legacy ids accepted so far, and what they became.
#[derive(Debug, Default)]
struct Known {
    orgs: HashMap<String, OrgId>,
    /// Legacy user id → its organization and account.
    users: HashMap<String, (OrgId, AccountId)>,
    emails: HashSet<String>,
}

/// A row of one table → the write it makes and what to forget if refused,
/// or why the row is rejected.
type MapRow = fn(&mut Mapper<'_>, &Row) -> Result<(Op, Forget), String>;

/// One table of a source: its file, the columns read, and how a row maps.
struct Table {
    /// The table (or collection) name: the kind in the report.
    name: &'static str,
    columns: &'static [Column],
    map: MapRow,
}

const fn col(name: &'static str, aliases: &'static [&'static str], required: bool) -> Column {
    Column {
        name,
        aliases,
        required,
    }
}

const ORG_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("name", &["name"], true),
    col("created_at", &["created_at"], false),
];

const USER_COLUMNS: &[Column] = &[
    col("id", &["id", "_id"], true),
    col(
        "organization_id",
        &["organization_id", "org_id", "organizationId"],
        false,
    ),
    col(
        "organization_name",
        &["organization_name", "organization"],
        false,
    ),
    col("email", &["email"], true),
    col(
        "password_hash",
        &["password_hash", "password", "passwordHash"],
        true,
    ),
    col("role", &["role"], false),
    col("created_at", &["created_at", "createdAt"], false),
];

const EXPENSE_COLUMNS: &[Column] = &[
    col("id", &["id", "_id"], true),
    col("user_id", &["user_id", "userId", "submitter_id"], true),
    col("amount", &["amount"], true),
    col("currency", &["currency"], true),
    col("category", &["category"], true),
    col("merchant", &["merchant"], true),
    col("description", &["description"], false),
    col("incurred_on", &["incurred_on", "date", "incurredOn"], true),
    col("status", &["status"], false),
    col("created_at", &["created_at", "createdAt"], false),
    col("updated_at", &["updated_at", "updatedAt"], false),
];

/// The tables of each source, in the order they are read.
fn tables(source: Source) -> Vec<Table> {
    let mut tables = Vec::new();
    if source == Source::PostgresCsv {
        tables.push(Table {
            name: "organizations",
            columns: ORG_COLUMNS,
            map: |m, r| m.organization(r),
        });
    }
    tables.push(Table {
        name: "users",
        columns: USER_COLUMNS,
        map: |m, r| m.user(r),
    });
    tables.push(Table {
        name: "expenses",
        columns: EXPENSE_COLUMNS,
        map: |m, r| m.expense(r),
    });
    tables
}

/// The file of `table` in `dir`, if the source has one.
fn file_of(source: Source, dir: &Path, table: &str) -> Option<PathBuf> {
    let names: &[&str] = match source {
        Source::PostgresCsv => &["csv"],
        Source::Mongo => &["json", "jsonl"],
    };
    names
        .iter()
        .map(|ext| dir.join(format!("{table}.{ext}")))
        .find(|p| p.is_file())
}

/// Maps rows to writes, with what was accepted so far.
struct Mapper<'a> {
    source: Source,
    known: &'a mut Known,
    options: &'a LegacyOptions,
}

impl Mapper<'_> {
    fn created_at(row: &Row) -> Result<OffsetDateTime, String> {
        match row.get("created_at") {
            Some(raw) => timestamp("created_at", raw),
            None => Ok(OffsetDateTime::UNIX_EPOCH),
        }
    }

    fn organization(&mut self, row: &Row) -> Result<(Op, Forget), String> {
        let legacy = row.require("id")?.to_owned();
        if self.known.orgs.contains_key(&legacy) {
            return Err(format!("id: organization {legacy} appears twice"));
        }
        let name = OrgName::parse(row.require("name")?).map_err(|e| {
            // The API's field is `organization`; the column is `name`.
            format!("name: {}", e.reason)
        })?;
        let created_at = Self::created_at(row)?;
        let org = OrgId::parse(&seed_hex(self.source.tag(), "organizations", &legacy))
            .map_err(invalid)?;
        self.known.orgs.insert(legacy.clone(), org.clone());
        Ok((
            Op::Org {
                org,
                name,
                created_at,
            },
            Forget::Org(legacy),
        ))
    }

    /// The organization of a MongoDB user: its `organization_id`, or the
    /// default one; made (once) the first time it is seen.
    fn mongo_org(&mut self, row: &Row) -> Result<Option<(Op, String)>, String> {
        let legacy = row.get("organization_id").unwrap_or("default").to_owned();
        if self.known.orgs.contains_key(&legacy) {
            return Ok(None);
        }
        let name = row
            .get("organization_name")
            .unwrap_or(&self.options.default_org_name);
        let name = OrgName::parse(name).map_err(|e| format!("organization_name: {}", e.reason))?;
        let org = OrgId::parse(&seed_hex(self.source.tag(), "organizations", &legacy))
            .map_err(invalid)?;
        self.known.orgs.insert(legacy.clone(), org.clone());
        Ok(Some((
            Op::Org {
                org,
                name,
                created_at: Self::created_at(row)?,
            },
            legacy,
        )))
    }

    fn user(&mut self, row: &Row) -> Result<(Op, Forget), String> {
        let legacy = row.require("id")?.to_owned();
        if self.known.users.contains_key(&legacy) {
            return Err(format!("id: user {legacy} appears twice"));
        }
        let org_key = match self.source {
            Source::PostgresCsv => row.require("organization_id")?,
            Source::Mongo => row.get("organization_id").unwrap_or("default"),
        };
        let org = self
            .known
            .orgs
            .get(org_key)
            .cloned()
            .ok_or_else(|| format!("organization_id: no organization {org_key}"))?;
        let email = Email::parse(row.require("email")?).map_err(invalid)?;
        if !self.known.emails.insert(email.as_str().to_owned()) {
            return Err("email: another user of this import has it".to_owned());
        }
        let password_hash = validate_legacy_hash(row.require("password_hash")?)
            .map_err(|e| format!("password_hash: {}", e.reason))?;
        let role = match row.get("role").unwrap_or("member") {
            // The seeds' plain users are our members.
            "user" => Role::Member,
            other => Role::parse("role", other).map_err(invalid)?,
        };
        let created_at = Self::created_at(row)?;
        let id = AccountId::from_bytes(seed(self.source.tag(), "users", &legacy));
        self.known
            .users
            .insert(legacy.clone(), (org.clone(), id.clone()));
        Ok((
            Op::Account {
                org,
                import: AccountForImport {
                    id,
                    email,
                    role,
                    password_hash,
                    created_at,
                },
            },
            Forget::User(legacy),
        ))
    }

    fn expense(&mut self, row: &Row) -> Result<(Op, Forget), String> {
        let legacy = row.require("id")?;
        let user = row.require("user_id")?;
        let (org, submitter) = self
            .known
            .users
            .get(user)
            .cloned()
            .ok_or_else(|| format!("user_id: no user {user}"))?;
        let amount = expense_rules::money(row.require("amount")?, row.require("currency")?)
            .map_err(invalid)?;
        let text = |field: &'static str, min, max| {
            expense_rules::text(field, row.get(field).unwrap_or_default(), min, max)
                .map_err(invalid)
        };
        let details = Details {
            amount,
            category: text("category", 1, expense_rules::MAX_CATEGORY_CHARS)?,
            merchant: text("merchant", 1, expense_rules::MAX_MERCHANT_CHARS)?,
            description: text("description", 0, expense_rules::MAX_DESCRIPTION_CHARS)?,
            incurred_on: fields::day("incurred_on", row.require("incurred_on")?)?,
        };
        let status = expense_rules::Status::parse("status", row.get("status").unwrap_or("draft"))
            .map_err(invalid)?;
        let created_at = match row.get("created_at") {
            Some(raw) => timestamp("created_at", raw)?,
            None => details.incurred_on.midnight().assume_utc(),
        };
        let updated_at = match row.get("updated_at") {
            Some(raw) => timestamp("updated_at", raw)?,
            None => created_at,
        };
        if updated_at < created_at {
            return Err("updated_at: is before created_at".to_owned());
        }
        let id =
            ExpenseId::for_import(created_at, seed_u128(self.source.tag(), "expenses", legacy));
        Ok((
            Op::Expense {
                org,
                import: ExpenseImport {
                    id,
                    submitter: submitter.as_str().to_owned(),
                    details,
                    status,
                    created_at,
                    updated_at,
                },
            },
            Forget::Nothing,
        ))
    }

    fn forget(&mut self, what: &Forget) {
        match what {
            Forget::Nothing => {}
            Forget::Org(legacy) => {
                self.known.orgs.remove(legacy);
            }
            Forget::User(legacy) => {
                self.known.users.remove(legacy);
            }
        }
    }
}

/// `rejects.jsonl`, or stdout in a dry run.
struct Rejects {
    out: Option<BufWriter<File>>,
    path: PathBuf,
}

impl Rejects {
    fn write(&mut self, file: &str, line: u64, reason: &str) -> anyhow::Result<()> {
        let entry = serde_json::json!({"file": file, "line": line, "reason": reason});
        match self.out.as_mut() {
            Some(out) => {
                writeln!(out, "{entry}").with_context(|| format!("writing {}", self.path.display()))
            }
            None => {
                println!("{entry}");
                Ok(())
            }
        }
    }
}

/// One file's rows in flight: validated, waiting to be written.
struct Pending {
    line: u64,
    op: Op,
    forget: Forget,
}

/// Runs `chunk`'s writes (up to [`CONCURRENCY`] at once, results in row
/// order) and counts them.
async fn flush(
    chunk: &mut Vec<Pending>,
    file: &str,
    stores: &Stores,
    mapper: &mut Mapper<'_>,
    rejects: &mut Rejects,
    counts: &mut KindCounts,
) -> anyhow::Result<()> {
    let writes: Vec<(u64, Forget, Result<Imported, Failure>)> =
        futures::stream::iter(chunk.drain(..))
            .map(|p| async move { (p.line, p.forget, p.op.run(stores).await) })
            .buffered(CONCURRENCY)
            .collect()
            .await;
    let mut fatal = None;
    for (line, forget, result) in writes {
        match result {
            Ok(Imported::Created) => counts.written += 1,
            Ok(Imported::AlreadyPresent) => counts.skipped += 1,
            Err(Failure::Reject(reason)) => {
                counts.rejected += 1;
                mapper.forget(&forget);
                rejects.write(file, line, &reason)?;
            }
            Err(Failure::Fatal(e)) => {
                fatal.get_or_insert(e.context(format!(
                    "{file} line {line}; nothing after the rows already written was lost: \
                     run the same import again to finish it"
                )));
            }
        }
    }
    fatal.map_or(Ok(()), Err)
}

/// Imports the legacy export in `dir` through `stores`. Rejected rows go
/// to `dir/rejects.jsonl` (stdout in a dry run); the caller decides whether
/// any makes the import fail ([`ImportReport::rejected`]).
#[tracing::instrument(skip(stores, options), fields(dir = %dir.display(), source = source.tag()))]
pub async fn import_legacy(
    source: Source,
    dir: &Path,
    stores: &Stores,
    options: &LegacyOptions,
) -> anyhow::Result<ImportReport> {
    let tables = tables(source);
    let files: Vec<(&Table, PathBuf)> = tables
        .iter()
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
    let rejects_path = dir.join(REJECTS);
    let mut rejects = Rejects {
        out: if options.dry_run {
            None
        } else {
            Some(BufWriter::new(File::create(&rejects_path).with_context(
                || format!("creating {}", rejects_path.display()),
            )?))
        },
        path: rejects_path,
    };
    let mut known = Known::default();
    let mut mapper = Mapper {
        source,
        known: &mut known,
        options,
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
        let mut counts = KindCounts::default();
        let mut orgs = KindCounts::default();
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(row) = rows.next_row() {
            counts.read += 1;
            let row = match row? {
                Ok(row) => row,
                Err((line, reason)) => {
                    counts.rejected += 1;
                    rejects.write(&file, line, &reason)?;
                    continue;
                }
            };
            if source == Source::Mongo && table.name == "users" {
                // The organizations of a MongoDB import come with their
                // first user, and are written before it.
                match mapper.mongo_org(&row) {
                    Ok(None) => {}
                    Ok(Some((op, legacy))) => {
                        orgs.read += 1;
                        let mut one = vec![Pending {
                            line: row.line,
                            op,
                            forget: Forget::Org(legacy),
                        }];
                        if !options.dry_run {
                            flush(
                                &mut chunk,
                                &file,
                                stores,
                                &mut mapper,
                                &mut rejects,
                                &mut counts,
                            )
                            .await?;
                            flush(
                                &mut one,
                                &file,
                                stores,
                                &mut mapper,
                                &mut rejects,
                                &mut orgs,
                            )
                            .await?;
                        } else {
                            orgs.written += 1;
                        }
                    }
                    Err(reason) => {
                        counts.rejected += 1;
                        rejects.write(&file, row.line, &reason)?;
                        continue;
                    }
                }
            }
            match (table.map)(&mut mapper, &row) {
                Ok((op, forget)) => {
                    if options.dry_run {
                        counts.written += 1;
                    } else {
                        chunk.push(Pending {
                            line: row.line,
                            op,
                            forget,
                        });
                        if chunk.len() >= CHUNK {
                            flush(
                                &mut chunk,
                                &file,
                                stores,
                                &mut mapper,
                                &mut rejects,
                                &mut counts,
                            )
                            .await?;
                        }
                    }
                }
                Err(reason) => {
                    counts.rejected += 1;
                    rejects.write(&file, row.line, &reason)?;
                }
            }
            if options.progress && counts.read.is_multiple_of(10_000) {
                eprintln!("{file}: {} rows", counts.read);
            }
        }
        flush(
            &mut chunk,
            &file,
            stores,
            &mut mapper,
            &mut rejects,
            &mut counts,
        )
        .await?;
        if orgs.read > 0 {
            report.kinds.insert("organizations".to_owned(), orgs);
        }
        report.kinds.insert(table.name.to_owned(), counts);
        let columns = rows.unread_columns();
        if !columns.is_empty() {
            unread.insert(file, columns);
        }
    }
    if let Some(out) = rejects.out.as_mut() {
        out.flush()
            .with_context(|| format!("writing {}", rejects.path.display()))?;
    }
    for (file, columns) in unread {
        eprintln!(
            "warning: {file}: columns not imported (no service keeps them): {}",
            columns.join(", ")
        );
    }
    Ok(report)
}
