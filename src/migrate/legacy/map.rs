//! The legacy tables, their columns, and each row → the write it makes:
//! parsed with the API's rules, foreign keys checked against the rows
//! already accepted.

use std::collections::{HashMap, HashSet};

use std::path::{Path, PathBuf};

use constellation_auth::password::validate_legacy_hash;
use constellation_auth::store::{AccountForImport, OrgName};
use constellation_catalog::domain as catalog_rules;
use constellation_catalog::store::{ProductFields, SupplierFields};
use constellation_comms::domain::{self as comms_rules, Audience};
use constellation_comms::store::announce::AnnouncementImport;
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Email, Role};
use constellation_core::money::{Currency, Money};
use constellation_expenses::domain::{self as expense_rules, Details};
use constellation_expenses::store::{ExpenseId, ExpenseImport};
use constellation_orders::OrderImport;
use constellation_orders::domain::{Price, Status as OrderStatus};
use constellation_orders::store::{OrderId, OrderLine, Rejection, check_import};
use time::OffsetDateTime;

use super::fields::{invalid, seed, seed_hex, seed_u128, timestamp};
use super::source::{Column, Row};
use super::write::{Forget, Op};
use super::{LegacyOptions, Source, fields};

/// The legacy ids accepted so far, and what they became.
#[derive(Debug, Default)]
pub(super) struct Known {
    pub(super) orgs: HashMap<String, OrgId>,
    /// Legacy user id → its organization and account.
    pub(super) users: HashMap<String, (OrgId, AccountId)>,
    pub(super) emails: HashSet<String>,
    /// Legacy supplier id → its organization and catalog id.
    pub(super) suppliers: HashMap<String, (OrgId, String)>,
    /// Legacy product id → what an order line needs of it.
    pub(super) products: HashMap<String, KnownProduct>,
    /// SKUs taken, per organization.
    pub(super) skus: HashSet<(OrgId, String)>,
    /// `inventory.csv`, read before the products: legacy product id → its
    /// on-hand quantity and line (or why the line was refused).
    pub(super) inventory: HashMap<String, (u64, Result<i64, String>)>,
    /// `order_items.csv`, read before the orders: legacy order id → its
    /// lines, each with its line number (or why it was refused).
    pub(super) items: HashMap<String, Vec<HeldItem>>,
    /// Legacy ids of the tables nothing refers to, per table: a repeated
    /// one is refused rather than written twice or skipped unseen.
    pub(super) seen: HashSet<(&'static str, String)>,
}

/// One `order_items.csv` row, held until its order: its line, and the item
/// or why it was refused.
pub(super) type HeldItem = (u64, Result<LegacyItem, String>);

/// The key of the organization of MongoDB users without an
/// `organization_id`: empty, which no present `organization_id` can be
/// (an empty field counts as absent), so no legacy id lands there by name.
const DEFAULT_ORG: &str = "";

/// What an order line needs of an accepted product.
#[derive(Debug, Clone)]
pub(super) struct KnownProduct {
    pub(super) org: OrgId,
    pub(super) id: String,
    pub(super) sku: String,
    pub(super) currency: Currency,
}

/// One accepted `order_items.csv` row.
#[derive(Debug, Clone)]
pub(super) struct LegacyItem {
    pub(super) product: String,
    pub(super) quantity: u32,
    pub(super) unit_price: String,
}

/// A row of one table → the write it makes and what to forget if refused,
/// or why the row is rejected.
/// `Ok(None)`: the row is held until the rows it belongs to are read
/// (inventory, order lines).
pub(super) type MapRow = fn(&mut Mapper<'_>, &Row) -> Result<Option<(Op, Forget)>, String>;

/// One table of a source: its file, the columns read, and how a row maps.
pub(super) struct Table {
    /// The table (or collection) name: the kind in the report.
    pub(super) name: &'static str,
    pub(super) columns: &'static [Column],
    pub(super) map: MapRow,
}

pub(super) const fn col(
    name: &'static str,
    aliases: &'static [&'static str],
    required: bool,
) -> Column {
    Column {
        name,
        aliases,
        required,
        mongo_only: false,
    }
}

pub(super) const ORG_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("name", &["name"], true),
    col("created_at", &["created_at"], false),
];

pub(super) const USER_COLUMNS: &[Column] = &[
    col("id", &["id", "_id"], true),
    col(
        "organization_id",
        &["organization_id", "org_id", "organizationId"],
        false,
    ),
    // MongoDB's users name their organization (the first seed had no
    // organizations collection); PostgreSQL's do in organizations.csv, so
    // there a column of this name is reported as not imported.
    Column {
        mongo_only: true,
        ..col(
            "organization_name",
            &["organization_name", "organization"],
            false,
        )
    },
    col("email", &["email"], true),
    col(
        "password_hash",
        &["password_hash", "password", "passwordHash"],
        true,
    ),
    col("role", &["role"], false),
    col("created_at", &["created_at", "createdAt"], false),
];

pub(super) const EXPENSE_COLUMNS: &[Column] = &[
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

pub(super) const SUPPLIER_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("organization_id", &["organization_id", "org_id"], true),
    col("name", &["name"], true),
    col("email", &["email"], true),
    col("phone", &["phone"], true),
    col("lead_time_days", &["lead_time_days"], false),
    col("created_at", &["created_at"], false),
    col("updated_at", &["updated_at"], false),
];

pub(super) const INVENTORY_COLUMNS: &[Column] = &[
    col("product_id", &["product_id"], true),
    col(
        "quantity",
        &["quantity", "on_hand", "quantity_on_hand"],
        true,
    ),
];

pub(super) const PRODUCT_COLUMNS: &[Column] = &[
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

pub(super) const ORDER_ITEM_COLUMNS: &[Column] = &[
    col("order_id", &["order_id"], true),
    col("product_id", &["product_id"], true),
    col("quantity", &["quantity"], true),
    col("unit_price", &["unit_price", "price"], true),
];

pub(super) const ORDER_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("user_id", &["user_id", "placed_by"], true),
    col("status", &["status"], true),
    col("note", &["note", "notes"], false),
    col("rejection_reason", &["rejection_reason"], false),
    col("created_at", &["created_at"], false),
    col("updated_at", &["updated_at"], false),
];

pub(super) const ANNOUNCEMENT_COLUMNS: &[Column] = &[
    col("id", &["id"], true),
    col("author_id", &["author_id", "user_id", "created_by"], true),
    col("title", &["title"], true),
    col("body", &["body", "content"], true),
    col("audience", &["audience"], false),
    col("published_at", &["published_at"], false),
    col("created_at", &["created_at"], false),
];

/// Every table, in the order they are read (each after what it refers
/// to); `mongo` says whether a MongoDB export has it too.
const TABLES: &[(bool, Table)] = &[
    (
        false,
        table("organizations", ORG_COLUMNS, |m, r| {
            m.organization(r).map(Some)
        }),
    ),
    (
        true,
        table("users", USER_COLUMNS, |m, r| m.user(r).map(Some)),
    ),
    (
        false,
        table("suppliers", SUPPLIER_COLUMNS, |m, r| m.supplier(r)),
    ),
    (
        false,
        table("inventory", INVENTORY_COLUMNS, |m, r| m.inventory(r)),
    ),
    (
        false,
        table("products", PRODUCT_COLUMNS, |m, r| m.product(r)),
    ),
    (
        false,
        table("order_items", ORDER_ITEM_COLUMNS, |m, r| m.order_item(r)),
    ),
    (false, table("orders", ORDER_COLUMNS, |m, r| m.order(r))),
    (
        true,
        table("expenses", EXPENSE_COLUMNS, |m, r| m.expense(r).map(Some)),
    ),
    (
        false,
        table("announcements", ANNOUNCEMENT_COLUMNS, |m, r| {
            m.announcement(r)
        }),
    ),
];

const fn table(name: &'static str, columns: &'static [Column], map: MapRow) -> Table {
    Table { name, columns, map }
}

/// The tables of `source`, in the order they are read.
pub(super) fn tables(source: Source) -> Vec<&'static Table> {
    TABLES
        .iter()
        .filter(|(mongo, _)| source == Source::PostgresCsv || *mongo)
        .map(|(_, t)| t)
        .collect()
}

/// The file of `table` in `dir`, if the source has one.
pub(super) fn file_of(source: Source, dir: &Path, table: &str) -> Option<PathBuf> {
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
pub(super) struct Mapper<'a> {
    pub(super) source: Source,
    pub(super) known: &'a mut Known,
    pub(super) options: &'a LegacyOptions,
    /// The held rows (their lines) the last mapped row took with it.
    pub(super) held: Vec<u64>,
}

impl Mapper<'_> {
    pub(super) fn created_at(row: &Row) -> Result<OffsetDateTime, String> {
        match row.get("created_at") {
            Some(raw) => timestamp("created_at", raw),
            None => Ok(OffsetDateTime::UNIX_EPOCH),
        }
    }

    pub(super) fn organization(&mut self, row: &Row) -> Result<(Op, Forget), String> {
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
    pub(super) fn mongo_org(&mut self, row: &Row) -> Result<Option<(Op, String)>, String> {
        let legacy = row.get("organization_id").unwrap_or(DEFAULT_ORG).to_owned();
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

    pub(super) fn user(&mut self, row: &Row) -> Result<(Op, Forget), String> {
        let legacy = row.require("id")?.to_owned();
        if self.known.users.contains_key(&legacy) {
            return Err(format!("id: user {legacy} appears twice"));
        }
        let org_key = match self.source {
            Source::PostgresCsv => row.require("organization_id")?,
            Source::Mongo => row.get("organization_id").unwrap_or(DEFAULT_ORG),
        };
        let org = self
            .known
            .orgs
            .get(org_key)
            .cloned()
            .ok_or_else(|| format!("organization_id: no organization {org_key}"))?;
        let email = Email::parse(row.require("email")?).map_err(invalid)?;
        if self.known.emails.contains(email.as_str()) {
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
        self.known.emails.insert(email.as_str().to_owned());
        self.known
            .users
            .insert(legacy.clone(), (org.clone(), id.clone()));
        let claimed = email.as_str().to_owned();
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
            Forget::User(legacy, claimed),
        ))
    }

    pub(super) fn expense(&mut self, row: &Row) -> Result<(Op, Forget), String> {
        let legacy = row.require("id")?;
        if !self.known.seen.insert(("expenses", legacy.to_owned())) {
            return Err(format!("id: expense {legacy} appears twice"));
        }
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
        let id = ExpenseId::at(created_at, seed_u128(self.source.tag(), "expenses", legacy));
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

    pub(super) fn times(row: &Row) -> Result<(OffsetDateTime, OffsetDateTime), String> {
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

    pub(super) fn org_of_row(&self, row: &Row) -> Result<OrgId, String> {
        let legacy = row.require("organization_id")?;
        self.known
            .orgs
            .get(legacy)
            .cloned()
            .ok_or_else(|| format!("organization_id: no organization {legacy}"))
    }

    /// The organization and account of the user `field` names.
    pub(super) fn user_of(
        &self,
        row: &Row,
        field: &'static str,
    ) -> Result<(OrgId, AccountId), String> {
        let legacy = row.require(field)?;
        self.known
            .users
            .get(legacy)
            .cloned()
            .ok_or_else(|| format!("{field}: no user {legacy}"))
    }

    pub(super) fn supplier(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
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

    pub(super) fn inventory(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let product = row.require("product_id")?.to_owned();
        if self.known.inventory.contains_key(&product) {
            return Err(format!(
                "product_id: product {product} has two inventory rows"
            ));
        }
        // Kept even when refused, so that its product is refused with it
        // rather than imported with no stock.
        let quantity =
            fields::integer("quantity", row.require("quantity")?, 0, i64::from(i32::MAX));
        self.known
            .inventory
            .insert(product, (row.line, quantity.clone()));
        quantity.map(|_| None)
    }

    pub(super) fn product(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
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
        let on_hand = match self.known.inventory.get(&legacy) {
            Some((line, Err(_))) => {
                return Err(format!(
                    "inventory.csv line {line}, its stock, was rejected"
                ));
            }
            Some((line, Ok(quantity))) => {
                self.held = vec![*line];
                *quantity
            }
            None => 0,
        };
        self.known.inventory.remove(&legacy);
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

    pub(super) fn order_item(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
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

    pub(super) fn order(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let legacy = row.require("id")?;
        if !self.known.seen.insert(("orders", legacy.to_owned())) {
            return Err(format!("id: order {legacy} appears twice"));
        }
        let items = self.known.items.get(legacy).cloned().unwrap_or_default();
        let (org, placed_by) = self.user_of(row, "user_id")?;
        let status = OrderStatus::parse("status", row.require("status")?)
            .map_err(|e| format!("{}: {}", e.field, e.reason))?;
        if status == OrderStatus::Pending {
            // As the orders service refuses it (catalog would never answer).
            return Err(
                "status: a pending order cannot be imported; finish it in the legacy system"
                    .to_owned(),
            );
        }
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
        let id = OrderId::at(created_at, seed_u128(self.source.tag(), "orders", legacy));
        let import = OrderImport {
            id,
            placed_by: placed_by.as_str().to_owned(),
            lines,
            note: row.get("note").map(str::to_owned),
            status,
            rejection,
            created_at,
            updated_at,
        };
        // Every rule the orders service applies, before anything is
        // written (a confirmed order's reservation goes first).
        check_import(&org, &import).map_err(|e| e.to_string())?;
        // Taken only now: the lines of a refused order stay held, and are
        // listed as such at the end.
        self.known.items.remove(legacy);
        self.held = items.iter().map(|(line, _)| *line).collect();
        Ok(Some((Op::Order { org, import }, Forget::Nothing)))
    }

    pub(super) fn announcement(&mut self, row: &Row) -> Result<Option<(Op, Forget)>, String> {
        let legacy = row.require("id")?;
        if !self.known.seen.insert(("announcements", legacy.to_owned())) {
            return Err(format!("id: announcement {legacy} appears twice"));
        }
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
    pub(super) fn leftovers(&mut self, table: &str) -> Vec<(u64, String)> {
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

    pub(super) fn forget(&mut self, what: &Forget) {
        match what {
            Forget::Nothing => {}
            Forget::Org(legacy) => {
                self.known.orgs.remove(legacy);
            }
            Forget::User(legacy, email) => {
                self.known.users.remove(legacy);
                self.known.emails.remove(email);
            }
            Forget::Supplier(legacy) => {
                self.known.suppliers.remove(legacy);
            }
            Forget::Product(legacy) => {
                if let Some(p) = self.known.products.remove(legacy) {
                    self.known.skus.remove(&(p.org, p.sku));
                }
            }
        }
    }
}
