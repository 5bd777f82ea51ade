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

use std::path::{Path, PathBuf};

use anyhow::bail;
use constellation_auth::password::validate_legacy_hash;
use constellation_auth::store::{AccountForImport, AuthError, AuthStore, OrgName};
use constellation_catalog::domain as catalog_rules;
use constellation_catalog::store::{CatalogError, CatalogStore, ProductFields, SupplierFields};
use constellation_comms::domain::{self as comms_rules, Audience};
use constellation_comms::store::CommsError;
use constellation_comms::store::CommsStore;
use constellation_comms::store::announce::AnnouncementImport;
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Role};
use constellation_core::import::Imported;
use constellation_core::money::{Currency, Money};
use constellation_expenses::domain::{self as expense_rules, Details};
use constellation_expenses::store::{ExpenseError, ExpenseId, ExpenseImport, ExpenseStore};
use constellation_orders::domain::{Price, Status as OrderStatus};
use constellation_orders::store::{OrderError, OrderId, OrderLine, Rejection};
use constellation_orders::{OrderImport, OrderStore};
use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::VerifierConfig;
use constellation_web::ServiceDef;
use constellation_web::host::{Context, Resources};
use futures::StreamExt as _;
use time::OffsetDateTime;

use self::fields::{invalid, seed, seed_hex, seed_u128, timestamp};
use self::source::{Column, CsvRows, MongoRows, Row, Rows};
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

/// The stores a legacy import writes through.
#[derive(Debug)]
pub struct Stores {
    /// Organizations and accounts.
    pub auth: AuthStore,
    /// Expenses.
    pub expenses: ExpenseStore,
    /// Suppliers and products.
    pub catalog: CatalogStore,
    /// Orders.
    pub orders: OrderStore,
    /// Announcements.
    pub comms: CommsStore,
}

impl Stores {
    /// Every store, built from the context `context` gives each service.
    pub async fn build(
        context: impl Fn(&'static ServiceDef) -> anyhow::Result<Context>,
    ) -> anyhow::Result<Self> {
        let auth = constellation_auth::build_store(&context(&constellation_auth::SERVICE)?).await?;
        let (expenses, _) =
            constellation_expenses::store(&context(&constellation_expenses::SERVICE)?).await?;
        let (catalog, _) =
            constellation_catalog::store(&context(&constellation_catalog::SERVICE)?)?;
        let (orders, _) = constellation_orders::store(&context(&constellation_orders::SERVICE)?)?;
        let (comms, _) =
            constellation_comms::store(&context(&constellation_comms::SERVICE)?).await?;
        Ok(Self {
            auth,
            expenses,
            catalog,
            orders,
            comms,
        })
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
    Supplier {
        org: OrgId,
        id: String,
        fields: SupplierFields,
        created_at: OffsetDateTime,
        updated_at: OffsetDateTime,
    },
    Product {
        org: OrgId,
        id: String,
        fields: ProductFields,
        on_hand: i64,
        created_at: OffsetDateTime,
        updated_at: OffsetDateTime,
    },
    Order {
        org: OrgId,
        import: OrderImport,
    },
    Announcement {
        org: OrgId,
        import: AnnouncementImport,
    },
}

/// What a refused write takes back from [`Known`], so nothing that refers
/// to it imports.
#[derive(Debug, Clone)]
enum Forget {
    Nothing,
    Org(String),
    User(String),
    Supplier(String),
    Product(String),
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

fn catalog_failure(e: CatalogError) -> Failure {
    match e {
        CatalogError::Store(_) | CatalogError::Contention => Failure::Fatal(anyhow::Error::new(e)),
        other => Failure::Reject(other.to_string()),
    }
}

fn order_failure(e: OrderError) -> Failure {
    match e {
        OrderError::Store(_) | OrderError::Contention => Failure::Fatal(anyhow::Error::new(e)),
        other => Failure::Reject(other.to_string()),
    }
}

fn comms_failure(e: CommsError) -> Failure {
    match e {
        CommsError::Store(_) | CommsError::Blob(_) | CommsError::Contention(_) => {
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
            Self::Supplier {
                org,
                id,
                fields,
                created_at,
                updated_at,
            } => stores
                .catalog
                .import_supplier(&org, &id, fields, created_at, updated_at)
                .await
                .map_err(catalog_failure),
            Self::Product {
                org,
                id,
                fields,
                on_hand,
                created_at,
                updated_at,
            } => stores
                .catalog
                .import_product(&org, &id, fields, on_hand, created_at, updated_at)
                .await
                .map_err(catalog_failure),
            Self::Order { org, import } => stores
                .orders
                .import_order(&org, import)
                .await
                .map_err(order_failure),
            Self::Announcement { org, import } => stores
                .comms
                .import_announcement(&org, import)
                .await
                .map_err(comms_failure),
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
    /// Legacy supplier id → its organization and catalog id.
    suppliers: HashMap<String, (OrgId, String)>,
    /// Legacy product id → what an order line needs of it.
    products: HashMap<String, KnownProduct>,
    /// SKUs taken, per organization.
    skus: HashSet<(OrgId, String)>,
    /// `inventory.csv`, read before the products: legacy product id → its
    /// on-hand quantity and line (or why the line was refused).
    inventory: HashMap<String, (u64, Result<i64, String>)>,
    /// `order_items.csv`, read before the orders: legacy order id → its
    /// lines, each with its line number (or why it was refused).
    items: HashMap<String, Vec<(u64, Result<LegacyItem, String>)>>,
}

/// What an order line needs of an accepted product.
#[derive(Debug, Clone)]
struct KnownProduct {
    org: OrgId,
    id: String,
    sku: String,
    currency: Currency,
}

/// One accepted `order_items.csv` row.
#[derive(Debug, Clone)]
struct LegacyItem {
    product: String,
    quantity: u32,
    unit_price: String,
}

/// A row of one table → the write it makes and what to forget if refused,
/// or why the row is rejected.
/// `Ok(None)`: the row is held until the rows it belongs to are read
/// (inventory, order lines).
type MapRow = fn(&mut Mapper<'_>, &Row) -> Result<Option<(Op, Forget)>, String>;

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

const SUPPLIER_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("organization_id", &["organization_id", "org_id"], true),
    col("name", &["name"], true),
    col("email", &["email"], true),
    col("phone", &["phone"], true),
    col("lead_time_days", &["lead_time_days"], false),
    col("created_at", &["created_at"], false),
    col("updated_at", &["updated_at"], false),
];

const INVENTORY_COLUMNS: &[Column] = &[
    col("product_id", &["product_id"], true),
    col(
        "quantity",
        &["quantity", "on_hand", "quantity_on_hand"],
        true,
    ),
];

const PRODUCT_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("organization_id", &["organization_id", "org_id"], true),
    col("sku", &["sku"], true),
    col("name", &["name"], true),
    col("description", &["description"], false),
    col("price", &["price", "unit_price"], true),
    col("currency", &["currency"], true),
    col("supplier_id", &["supplier_id"], false),
    col("reorder_level", &["reorder_level"], false),
    col("active", &["active", "is_active"], false),
    col("created_at", &["created_at"], false),
    col("updated_at", &["updated_at"], false),
];

const ORDER_ITEM_COLUMNS: &[Column] = &[
    col("order_id", &["order_id"], true),
    col("product_id", &["product_id"], true),
    col("quantity", &["quantity"], true),
    col("unit_price", &["unit_price", "price"], true),
];

const ORDER_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("user_id", &["user_id", "placed_by"], true),
    col("status", &["status"], true),
    col("note", &["note", "notes"], false),
    col("rejection_reason", &["rejection_reason"], false),
    col("created_at", &["created_at"], false),
    col("updated_at", &["updated_at"], false),
];

const ANNOUNCEMENT_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("author_id", &["author_id", "user_id", "created_by"], true),
    col("title", &["title"], true),
    col("body", &["body", "content"], true),
    col("audience", &["audience"], false),
    col("published_at", &["published_at"], false),
    col("created_at", &["created_at"], false),
];

/// The tables of each source, in the order they are read.
fn tables(source: Source) -> Vec<Table> {
    let mut tables = Vec::new();
    if source == Source::PostgresCsv {
        tables.push(Table {
            name: "organizations",
            columns: ORG_COLUMNS,
            map: |m, r| m.organization(r).map(Some),
        });
    }
    tables.push(Table {
        name: "users",
        columns: USER_COLUMNS,
        map: |m, r| m.user(r).map(Some),
    });
    if source == Source::PostgresCsv {
        tables.push(Table {
            name: "suppliers",
            columns: SUPPLIER_COLUMNS,
            map: |m, r| m.supplier(r),
        });
        tables.push(Table {
            name: "inventory",
            columns: INVENTORY_COLUMNS,
            map: |m, r| m.inventory(r),
        });
        tables.push(Table {
            name: "products",
            columns: PRODUCT_COLUMNS,
            map: |m, r| m.product(r),
        });
        tables.push(Table {
            name: "order_items",
            columns: ORDER_ITEM_COLUMNS,
            map: |m, r| m.order_item(r),
        });
        tables.push(Table {
            name: "orders",
            columns: ORDER_COLUMNS,
            map: |m, r| m.order(r),
        });
    }
    tables.push(Table {
        name: "expenses",
        columns: EXPENSE_COLUMNS,
        map: |m, r| m.expense(r).map(Some),
    });
    if source == Source::PostgresCsv {
        tables.push(Table {
            name: "announcements",
            columns: ANNOUNCEMENT_COLUMNS,
            map: |m, r| m.announcement(r),
        });
    }
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
    /// The held rows (their lines) the last mapped row took with it.
    held: Vec<u64>,
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

    fn times(row: &Row) -> Result<(OffsetDateTime, OffsetDateTime), String> {
        let created_at = Self::created_at(row)?;
        let updated_at = match row.get("updated_at") {
            Some(raw) => timestamp("updated_at", raw)?,
            None => created_at,
        };
        if updated_at < created_at {
            return Err("updated_at: is before created_at".to_owned());
        }
        Ok((created_at, updated_at))
    }

    fn org_of_row(&self, row: &Row) -> Result<OrgId, String> {
        let legacy = row.require("organization_id")?;
        self.known
            .orgs
            .get(legacy)
            .cloned()
            .ok_or_else(|| format!("organization_id: no organization {legacy}"))
    }

    /// The organization and account of the user `field` names.
    fn user_of(&self, row: &Row, field: &'static str) -> Result<(OrgId, AccountId), String> {
        let legacy = row.require(field)?;
        self.known
            .users
            .get(legacy)
            .cloned()
            .ok_or_else(|| format!("{field}: no user {legacy}"))
    }

    fn supplier(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let legacy = row.require("id")?.to_owned();
        if self.known.suppliers.contains_key(&legacy) {
            return Err(format!("id: supplier {legacy} appears twice"));
        }
        let org = self.org_of_row(row)?;
        let fields = SupplierFields {
            name: catalog_rules::name("name", row.require("name")?).map_err(invalid)?,
            email: Email::parse(row.require("email")?).map_err(invalid)?,
            phone: catalog_rules::phone(row.require("phone")?).map_err(invalid)?,
            lead_time_days: catalog_rules::lead_time(
                fields::integer(
                    "lead_time_days",
                    row.get("lead_time_days").unwrap_or("0"),
                    0,
                    i64::MAX,
                )?
                .unsigned_abs(),
            )
            .map_err(invalid)?,
        };
        let (created_at, updated_at) = Self::times(row)?;
        let id = constellation_catalog::store::import_id(
            created_at,
            seed_u128(self.source.tag(), "suppliers", &legacy),
        );
        self.known
            .suppliers
            .insert(legacy.clone(), (org.clone(), id.clone()));
        Ok(Some((
            Op::Supplier {
                org,
                id,
                fields,
                created_at,
                updated_at,
            },
            Forget::Supplier(legacy),
        )))
    }

    fn inventory(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let product = row.require("product_id")?.to_owned();
        if self.known.inventory.contains_key(&product) {
            return Err(format!(
                "product_id: product {product} has two inventory rows"
            ));
        }
        let quantity =
            fields::integer("quantity", row.require("quantity")?, 0, i64::from(i32::MAX))?;
        self.known
            .inventory
            .insert(product, (row.line, Ok(quantity)));
        Ok(None)
    }

    fn product(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let legacy = row.require("id")?.to_owned();
        if self.known.products.contains_key(&legacy) {
            return Err(format!("id: product {legacy} appears twice"));
        }
        let org = self.org_of_row(row)?;
        let currency = Currency::parse("currency", row.require("currency")?).map_err(invalid)?;
        let price = Money::parse("price", row.require("price")?, currency).map_err(invalid)?;
        let sku = catalog_rules::sku(row.require("sku")?).map_err(invalid)?;
        let supplier_id = match row.get("supplier_id") {
            None => None,
            Some(legacy_supplier) => match self.known.suppliers.get(legacy_supplier) {
                Some((supplier_org, id)) if *supplier_org == org => Some(id.clone()),
                Some(_) => {
                    return Err(format!(
                        "supplier_id: supplier {legacy_supplier} belongs to another organization"
                    ));
                }
                None => return Err(format!("supplier_id: no supplier {legacy_supplier}")),
            },
        };
        let fields = ProductFields {
            sku: sku.clone(),
            name: catalog_rules::name("name", row.require("name")?).map_err(invalid)?,
            description: catalog_rules::text(
                "description",
                row.get("description").unwrap_or_default(),
                0,
                catalog_rules::MAX_DESCRIPTION_CHARS,
            )
            .map_err(invalid)?,
            price,
            supplier_id,
            reorder_level: catalog_rules::reorder_level(fields::integer(
                "reorder_level",
                row.get("reorder_level").unwrap_or("0"),
                i64::MIN,
                i64::MAX,
            )?)
            .map_err(invalid)?,
            active: match row.get("active") {
                Some(raw) => fields::boolean("active", raw)?,
                None => true,
            },
        };
        if self.known.skus.contains(&(org.clone(), sku.clone())) {
            return Err("sku: another product of this import has it".to_owned());
        }
        let (created_at, updated_at) = Self::times(row)?;
        let on_hand = match self.known.inventory.remove(&legacy) {
            Some((line, quantity)) => {
                self.held = vec![line];
                quantity?
            }
            None => 0,
        };
        let id = constellation_catalog::store::import_id(
            created_at,
            seed_u128(self.source.tag(), "products", &legacy),
        );
        self.known.skus.insert((org.clone(), sku.clone()));
        self.known.products.insert(
            legacy.clone(),
            KnownProduct {
                org: org.clone(),
                id: id.clone(),
                sku,
                currency,
            },
        );
        Ok(Some((
            Op::Product {
                org,
                id,
                fields,
                on_hand,
                created_at,
                updated_at,
            },
            Forget::Product(legacy),
        )))
    }

    fn order_item(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let order = row.require("order_id")?.to_owned();
        let item = (|| {
            Ok(LegacyItem {
                product: row.require("product_id")?.to_owned(),
                quantity: u32::try_from(fields::integer(
                    "quantity",
                    row.require("quantity")?,
                    1,
                    i64::from(u32::MAX),
                )?)
                .map_err(|_| "quantity: too large".to_owned())?,
                unit_price: row.require("unit_price")?.to_owned(),
            })
        })();
        let refused = item.as_ref().err().cloned();
        self.known
            .items
            .entry(order)
            .or_default()
            .push((row.line, item));
        // A refused line is listed at once; its order is refused with it.
        match refused {
            Some(reason) => Err(reason),
            None => Ok(None),
        }
    }

    fn order(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let legacy = row.require("id")?;
        let items = self.known.items.get(legacy).cloned().unwrap_or_default();
        let (org, placed_by) = self.user_of(row, "user_id")?;
        let status = OrderStatus::parse("status", row.require("status")?)
            .map_err(|e| format!("{}: {}", e.field, e.reason))?;
        if items.is_empty() {
            return Err(format!("id: order {legacy} has no order_items"));
        }
        let mut lines = Vec::with_capacity(items.len());
        for (line, item) in items.iter().cloned() {
            let item = item.map_err(|_| format!("order_items.csv line {line} was rejected"))?;
            let product = self
                .known
                .products
                .get(&item.product)
                .filter(|p| p.org == org)
                .ok_or_else(|| {
                    format!(
                        "order_items.csv line {line}: product_id: no product {} in the order's organization",
                        item.product
                    )
                })?;
            let unit_price = Money::parse("unit_price", &item.unit_price, product.currency)
                .map_err(|e| format!("order_items.csv line {line}: {e}"))?;
            lines.push(OrderLine {
                product_id: product.id.clone(),
                quantity: item.quantity,
                price: Some(Price {
                    sku: product.sku.clone(),
                    unit_price,
                }),
            });
        }
        let rejection = (status == OrderStatus::Rejected).then(|| Rejection {
            reason: row
                .get("rejection_reason")
                .unwrap_or("rejected in the legacy system")
                .to_owned(),
            product_id: None,
        });
        let (created_at, updated_at) = Self::times(row)?;
        let id = OrderId::for_import(created_at, seed_u128(self.source.tag(), "orders", legacy));
        self.known.items.remove(legacy);
        self.held = items.iter().map(|(line, _)| *line).collect();
        Ok(Some((
            Op::Order {
                org,
                import: OrderImport {
                    id,
                    placed_by: placed_by.as_str().to_owned(),
                    lines,
                    note: row.get("note").map(str::to_owned),
                    status,
                    rejection,
                    created_at,
                    updated_at,
                },
            },
            Forget::Nothing,
        )))
    }

    fn announcement(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let legacy = row.require("id")?;
        let (org, author) = self.user_of(row, "author_id")?;
        let title = comms_rules::title("title", row.require("title")?).map_err(invalid)?;
        let body = comms_rules::body("body", row.require("body")?, comms_rules::MAX_BODY_CHARS)
            .map_err(invalid)?;
        let audience = match row.get("audience").map(str::trim) {
            None | Some("all") => Audience::All,
            Some(roles) => Audience::Roles {
                roles: roles
                    .split([',', ' '])
                    .filter(|r| !r.is_empty())
                    .map(|r| Role::parse("audience", r).map_err(invalid))
                    .collect::<Result<_, _>>()?,
            },
        };
        let created_at = Self::created_at(row)?;
        let published_at = match row.get("published_at") {
            Some(raw) => timestamp("published_at", raw)?,
            None => created_at,
        };
        let id = constellation_comms::store::announce::import_id(
            created_at,
            seed_u128(self.source.tag(), "announcements", legacy),
        );
        Ok(Some((
            Op::Announcement {
                org,
                import: AnnouncementImport {
                    id,
                    author: author.as_str().to_owned(),
                    title,
                    body,
                    audience,
                    published_at,
                    created_at,
                },
            },
            Forget::Nothing,
        )))
    }

    /// Rows held for a table that is now read and were not taken: each
    /// named at its line (inventory of no product, lines of no order).
    fn leftovers(&mut self, table: &str) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        match table {
            "products" => {
                for (product, (line, held)) in self.known.inventory.drain() {
                    if held.is_ok() {
                        out.push((
                            line,
                            format!("product_id: product {product} was not imported"),
                        ));
                    }
                }
            }
            "orders" => {
                for (order, items) in self.known.items.drain() {
                    for (line, item) in items {
                        if item.is_ok() {
                            out.push((line, format!("order_id: order {order} was not imported")));
                        }
                    }
                }
            }
            _ => {}
        }
        out.sort();
        out
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
            Forget::Supplier(legacy) => {
                self.known.suppliers.remove(legacy);
            }
            Forget::Product(legacy) => {
                self.known.products.remove(legacy);
            }
        }
    }
}

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
        stores: &Stores,
        mapper: &mut Mapper<'_>,
        rejects: &mut Rejects,
    ) -> anyhow::Result<()> {
        let writes: Vec<(u64, Forget, Vec<u64>, Result<Imported, Failure>)> =
            futures::stream::iter(self.chunk.drain(..))
                .map(|p| async move { (p.line, p.forget, p.held, p.op.run(stores).await) })
                .buffered(CONCURRENCY)
                .collect()
                .await;
        let mut fatal = None;
        for (line, forget, held, result) in writes {
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
