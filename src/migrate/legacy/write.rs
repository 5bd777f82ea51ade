//! Writing one legacy record through the service that owns it, and what
//! a refusal means: the row's fault (listed, the import goes on) or the
//! backend's (the import stops; running it again resumes).

use constellation_auth::store::{AccountForImport, AuthError, AuthStore, OrgName};
use constellation_catalog::store::{CatalogError, CatalogStore, ProductFields, SupplierFields};
use constellation_comms::store::CommsError;
use constellation_comms::store::CommsStore;
use constellation_comms::store::announce::AnnouncementImport;
use constellation_core::OrgId;
use constellation_core::import::Imported;
use constellation_expenses::store::{ExpenseError, ExpenseImport, ExpenseStore};
use constellation_orders::domain::Status as OrderStatus;
use constellation_orders::store::OrderError;
use constellation_orders::{OrderImport, OrderStore};
use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::VerifierConfig;
use constellation_web::ServiceDef;
use constellation_web::host::{Context, Resources};
use time::OffsetDateTime;

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

/// A write, ready to run, and what to forget if the service refuses it.
pub(super) enum Op {
    /// Already run (what is left of a written row).
    Done,
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
pub(super) enum Forget {
    Nothing,
    Org(String),
    /// A user: its legacy id and its email.
    User(String, String),
    Supplier(String),
    Product(String),
}

/// Why a write did not happen: the row's fault (listed, the import goes
/// on) or the backend's (the import stops; running it again resumes).
pub(super) enum Failure {
    Reject(String),
    Fatal(anyhow::Error),
}

pub(super) fn auth_failure(e: AuthError) -> Failure {
    match e {
        AuthError::Store(_) | AuthError::Hash(_) | AuthError::Contention => {
            Failure::Fatal(anyhow::Error::new(e))
        }
        AuthError::EmailTaken => Failure::Reject("email: already has an account".to_owned()),
        other => Failure::Reject(other.to_string()),
    }
}

pub(super) fn expense_failure(e: ExpenseError) -> Failure {
    match e {
        ExpenseError::Store(_) | ExpenseError::Blob(_) | ExpenseError::Contention => {
            Failure::Fatal(anyhow::Error::new(e))
        }
        other => Failure::Reject(other.to_string()),
    }
}

pub(super) fn catalog_failure(e: CatalogError) -> Failure {
    match e {
        CatalogError::Store(_) | CatalogError::Contention => Failure::Fatal(anyhow::Error::new(e)),
        other => Failure::Reject(other.to_string()),
    }
}

pub(super) fn order_failure(e: OrderError) -> Failure {
    match e {
        OrderError::Store(_) | OrderError::Contention => Failure::Fatal(anyhow::Error::new(e)),
        other => Failure::Reject(other.to_string()),
    }
}

pub(super) fn comms_failure(e: CommsError) -> Failure {
    match e {
        CommsError::Store(_) | CommsError::Blob(_) | CommsError::Contention(_) => {
            Failure::Fatal(anyhow::Error::new(e))
        }
        other => Failure::Reject(other.to_string()),
    }
}

impl Op {
    pub(super) async fn run(self, stores: &Stores) -> Result<Imported, Failure> {
        match self {
            Self::Done => Err(Failure::Fatal(anyhow::anyhow!("a row was written twice"))),
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
            Self::Order { org, import } => {
                if import.status == OrderStatus::Confirmed {
                    // A confirmed order holds its units in catalog, as a live
                    // one does, so that shipping or cancelling it moves stock.
                    // First: no stock for it refuses the order, and nothing
                    // is written.
                    let lines: Vec<(String, u32)> = import
                        .lines
                        .iter()
                        .map(|l| (l.product_id.clone(), l.quantity))
                        .collect();
                    stores
                        .catalog
                        .import_reservation(&org, import.id.as_str(), &lines, import.updated_at)
                        .await
                        .map_err(catalog_failure)?;
                }
                stores
                    .orders
                    .import_order(&org, import)
                    .await
                    .map_err(order_failure)
            }
            Self::Announcement { org, import } => stores
                .comms
                .import_announcement(&org, import)
                .await
                .map_err(comms_failure),
        }
    }
}
