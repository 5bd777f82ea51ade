//! The expense rules over the Table, BlobStore and outbox ports.
//!
//! Layout: one item per expense, `pk = EXP#<org>`, `sk = <id>`, indexed in
//! `gsi1` by submitter (`SUB#<org>#<account>`, same sort key). Ids begin
//! with their creation time in milliseconds, so both listings are newest
//! first by reading backwards. Amounts are stored as integer minor units
//! with their currency. Receipts and the history live inside the item: an
//! expense has at most [`MAX_RECEIPTS`] receipts and a handful of
//! transitions.
//!
//! Every write is optimistic (conditioned on the version read) and every
//! transition commits its `expense.*` event with it through the outbox. A
//! receipt is a media upload presigned here into the media bucket; its
//! `media.requested` event commits with the receipt's entry, and media's
//! `media.*` events keep the entry's status current.
//!
//! Imports from elsewhere are in [`import`], the check an import of an
//! export runs on each record in [`check`].

mod check;
mod import;

pub use check::check_item;
pub use import::ExpenseImport;

use std::sync::Arc;

use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::etag::{Etag, Precondition};
use constellation_core::ids::TIME_ORDERED_ID_PATTERN;
use constellation_core::media::{
    MediaChanged, MediaId, MediaOwner, MediaRequested, OwnerDeleted, Purpose, UploadSpec,
    events as media_events,
};
use constellation_core::money::{Currency, Money};
use constellation_platform::blob::{BlobError, BlobStore};
use constellation_platform::outbox::Outbox;
use constellation_platform::table::{Condition, Index, IndexKey, Item, ItemKey, Query, Write};
use constellation_platform::{Clock, DomainEvent, StoreError, Table};
use constellation_web::uploads::{UploadView, presign_upload};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use crate::domain::{Details, MAX_RECEIPTS, Status, Transition, date, format_date, needs_receipt};

/// The service that owns receipts' media (echoed back in `media.*` events).
pub const OWNER_SERVICE: &str = "expenses";
/// The most expenses a summary or an export reads (then it refuses with 400).
pub const MAX_SCAN: usize = 20_000;

constellation_core::time_ordered_id_type!(
    /// An expense id: 32 lowercase hex digits, the first 12 its creation time
    /// in milliseconds.
    ExpenseId,
    "an expense"
);

impl ExpenseId {
    fn new(now: OffsetDateTime) -> Self {
        Self::at(now, uuid::Uuid::new_v4().as_u128())
    }
}

/// The pattern of an expense id (for the OpenAPI document).
pub const EXPENSE_ID_PATTERN: &str = TIME_ORDERED_ID_PATTERN;

/// One receipt: a media upload and its status as media last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The media id.
    pub media_id: String,
    /// `pending`, `ready` or `rejected`.
    pub status: String,
}

/// One step of an expense's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The status it arrived at.
    pub status: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who (account id).
    pub by: String,
    /// Why (rejections).
    pub reason: Option<String>,
}

/// One expense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expense {
    /// Its id.
    pub id: ExpenseId,
    /// Its organization.
    pub org: OrgId,
    /// The account that filed it.
    pub submitter: String,
    /// The editable fields.
    pub details: Details,
    /// Where it is.
    pub status: Status,
    /// Its receipts.
    pub receipts: Vec<Receipt>,
    /// Every status it has had.
    pub history: Vec<HistoryEntry>,
    /// Filed.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
    /// Changes on every write.
    pub etag: Etag,
    version: u64,
}

/// A change of the editable fields (absent fields stay).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    /// New amount (with `currency`, or in the current currency).
    pub amount: Option<String>,
    /// New currency (the amount is re-read in it).
    pub currency: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New merchant.
    pub merchant: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New date.
    pub incurred_on: Option<String>,
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this submitter.
    pub submitter: Option<String>,
    /// Incurred on or after.
    pub from: Option<Date>,
    /// Incurred on or before.
    pub to: Option<Date>,
}

impl Filter {
    fn admits(&self, e: &Expense) -> bool {
        self.status.is_none_or(|s| s == e.status)
            && self
                .category
                .as_deref()
                .is_none_or(|c| c == e.details.category)
            && self.from.is_none_or(|d| e.details.incurred_on >= d)
            && self.to.is_none_or(|d| e.details.incurred_on <= d)
    }
}

/// How a summary groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// By category.
    Category,
    /// By submitter.
    Submitter,
    /// By month of `incurred_on` (`YYYY-MM`).
    Month,
    /// By status.
    Status,
}

/// One group of a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group's key.
    pub key: String,
    /// Its currency (one group per key and currency).
    pub currency: Currency,
    /// How many expenses.
    pub count: u64,
    /// Their exact total in minor units.
    pub total_minor: i128,
}

/// Why an expense operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExpenseError {
    /// No such expense that the caller may see.
    #[error("no such expense")]
    NotFound,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Not possible from the current status.
    #[error("cannot {action} an expense that is {}", current.as_str())]
    InvalidTransition {
        /// What was asked.
        action: &'static str,
        /// Where the expense is.
        current: Status,
    },
    /// 75 or more major units and no ready receipt.
    #[error("an expense of 75 or more needs at least one ready receipt before it is submitted")]
    ReceiptRequired,
    /// `If-Match` with a tag is required here.
    #[error("send If-Match with the ETag you read (not *)")]
    PreconditionRequired,
    /// `If-Match` did not match.
    #[error("the expense changed since you read it")]
    PreconditionFailed,
    /// Too much concurrent change.
    #[error("the expense is being changed concurrently; retry")]
    Contention,
    /// An input is invalid.
    #[error(transparent)]
    Invalid(#[from] constellation_core::ValidationError),
    /// The request is too large to answer (summary, export).
    #[error("{0}")]
    TooLarge(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bucket failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// The expense service's rules.
#[derive(Debug, Clone)]
pub struct ExpenseStore {
    table: Arc<dyn Table>,
    outbox: Outbox,
    media_bucket: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("expense record has a bad {what}"))
}

fn new_etag() -> Etag {
    Etag::from_bytes(uuid::Uuid::new_v4().into_bytes())
}

fn item_key(org: &OrgId, id: &str) -> ItemKey {
    ItemKey::new(format!("EXP#{org}"), id)
}

fn by_submitter(org: &OrgId, submitter: &str) -> String {
    format!("SUB#{org}#{submitter}")
}

fn to_item(e: &Expense) -> Item {
    let mut item = Item::new(item_key(&e.org, e.id.as_str()))
        .with("submitter", e.submitter.as_str())
        .with("amount", e.details.amount.minor())
        .with("currency", e.details.amount.currency().code())
        .with("category", e.details.category.as_str())
        .with("merchant", e.details.merchant.as_str())
        .with("description", e.details.description.as_str())
        .with("incurred_on", format_date(e.details.incurred_on))
        .with("status", e.status.as_str())
        .with(
            "receipts",
            serde_json::to_value(&e.receipts).unwrap_or_default(),
        )
        .with(
            "history",
            serde_json::to_value(&e.history).unwrap_or_default(),
        )
        .with("etag", e.etag.as_str())
        .with("created_at", rfc3339(e.created_at))
        .with("updated_at", rfc3339(e.updated_at));
    item.gsi1 = Some(IndexKey::new(
        by_submitter(&e.org, &e.submitter),
        e.id.as_str(),
    ));
    item.version = e.version;
    item
}

fn from_item(org: &OrgId, item: &Item) -> Result<Expense, StoreError> {
    decode(org, item).map_err(corrupt)
}

/// The expense `item` holds, or the name of the first attribute that is
/// not as this service writes it.
fn decode(org: &OrgId, item: &Item) -> Result<Expense, &'static str> {
    let text = |name: &'static str| item.str(name).ok_or(name);
    let time = |name: &'static str| OffsetDateTime::parse(text(name)?, &Rfc3339).map_err(|_| name);
    let currency = Currency::parse("currency", text("currency")?).map_err(|_| "currency")?;
    let amount = item
        .int("amount")
        .and_then(|m| Money::from_minor(m, currency))
        .ok_or("amount")?;
    let json = |name: &'static str| item.attrs.get(name).cloned().ok_or(name);
    Ok(Expense {
        id: ExpenseId::parse(&item.key.sk).map_err(|_| "id")?,
        org: org.clone(),
        submitter: text("submitter")?.to_owned(),
        details: Details {
            amount,
            category: text("category")?.to_owned(),
            merchant: text("merchant")?.to_owned(),
            description: text("description")?.to_owned(),
            incurred_on: date("incurred_on", text("incurred_on")?).map_err(|_| "incurred_on")?,
        },
        status: Status::parse("status", text("status")?).map_err(|_| "status")?,
        receipts: serde_json::from_value(json("receipts")?).map_err(|_| "receipts")?,
        history: serde_json::from_value(json("history")?).map_err(|_| "history")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        etag: Etag::parse(text("etag")?).map_err(|_| "etag")?,
        version: item.version,
    })
}

/// `raw` as an account id, or an error naming `field` (imports name
/// accounts by their id as text, as the store keeps them).
fn account_id(
    field: &'static str,
    raw: &str,
) -> Result<AccountId, constellation_core::ValidationError> {
    AccountId::parse(raw).map_err(|_| {
        constellation_core::ValidationError::new(
            field,
            "must be an account id: 32 lowercase hex digits",
        )
    })
}

fn is_admin(p: &Principal) -> bool {
    p.role.allows(Role::Admin)
}

/// Whether `p` may see `e`: its submitter, or an admin or owner.
fn visible(p: &Principal, e: &Expense) -> bool {
    e.submitter == p.account.as_str() || is_admin(p)
}

impl ExpenseStore {
    /// The store over its ports; `media_bucket` is where receipts are uploaded.
    pub fn new(
        table: Arc<dyn Table>,
        outbox: Outbox,
        media_bucket: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            table,
            outbox,
            media_bucket,
            clock,
        }
    }

    /// The outbox (relayed by the `expenses-outbox` schedule).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn entry(&self, status: Status, by: &str, reason: Option<String>) -> HistoryEntry {
        HistoryEntry {
            status: status.as_str().to_owned(),
            at: rfc3339(self.clock.now()),
            by: by.to_owned(),
            reason,
        }
    }

    /// Files a draft expense for `p`.
    pub async fn create(&self, p: &Principal, details: Details) -> Result<Expense, ExpenseError> {
        let now = self.clock.now();
        let expense = Expense {
            id: ExpenseId::new(now),
            org: p.org.clone(),
            submitter: p.account.as_str().to_owned(),
            details,
            status: Status::Draft,
            receipts: Vec::new(),
            history: vec![self.entry(Status::Draft, p.account.as_str(), None)],
            created_at: now,
            updated_at: now,
            etag: new_etag(),
            version: 1,
        };
        self.table
            .put(&to_item(&expense), Condition::NotExists)
            .await?;
        Ok(expense)
    }

    async fn find(&self, org: &OrgId, id: &str) -> Result<Option<Expense>, StoreError> {
        match self.table.get(&item_key(org, id)).await? {
            Some(item) => Ok(Some(from_item(org, &item)?)),
            None => Ok(None),
        }
    }

    /// The expense `id`, if `p` may see it.
    pub async fn get(&self, p: &Principal, id: &ExpenseId) -> Result<Expense, ExpenseError> {
        match self.find(&p.org, id.as_str()).await? {
            Some(e) if visible(p, &e) => Ok(e),
            _ => Err(ExpenseError::NotFound),
        }
    }

    /// One page as [`ExpenseStore::list`] answers it, and how many
    /// expenses were read for it (what a scan's cost is counted in).
    pub async fn read_page(
        &self,
        p: &Principal,
        mut filter: Filter,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Expense>, Option<String>, usize), ExpenseError> {
        if !is_admin(p) {
            match filter.submitter.as_deref() {
                Some(s) if s != p.account.as_str() => {
                    return Err(ExpenseError::Forbidden(
                        "members see only their own expenses",
                    ));
                }
                _ => filter.submitter = Some(p.account.as_str().to_owned()),
            }
        }
        let mut query = match &filter.submitter {
            Some(s) => {
                let mut q = Query::partition(by_submitter(&p.org, s));
                q.index = Some(Index::Gsi1);
                q
            }
            None => Query::partition(format!("EXP#{}", p.org)),
        };
        query.descending = true;
        query.limit = limit;
        query.cursor = cursor;
        let page = self.table.query(&query).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let e = from_item(&p.org, item)?;
            if filter.admits(&e) {
                items.push(e);
            }
        }
        Ok((items, page.next_cursor, page.items.len()))
    }

    /// One page of the expenses `p` may see that `filter` admits, newest
    /// first. A page may hold fewer than `limit` items (the filter runs over
    /// each page read); follow `next_cursor` to the end.
    pub async fn list(
        &self,
        p: &Principal,
        filter: Filter,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Expense>, Option<String>), ExpenseError> {
        let (items, next, _) = self.read_page(p, filter, limit, cursor).await?;
        Ok((items, next))
    }

    /// Every expense `p` may see that `filter` admits, page by page, handing
    /// each page to `each` (summaries and exports); refuses past [`MAX_SCAN`].
    pub async fn scan<F>(
        &self,
        p: &Principal,
        filter: Filter,
        mut each: F,
    ) -> Result<(), ExpenseError>
    where
        F: FnMut(Vec<Expense>) -> Result<(), ExpenseError>,
    {
        let mut cursor = None;
        let mut seen = 0_usize;
        loop {
            let (items, next, read) = self.read_page(p, filter.clone(), 500, cursor).await?;
            seen += read;
            if seen > MAX_SCAN {
                return Err(ExpenseError::TooLarge(format!(
                    "this would read more than {MAX_SCAN} expenses; narrow from and to"
                )));
            }
            each(items)?;
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// Totals of the expenses `p` may see incurred within `filter`'s dates,
    /// one group per key and currency, sorted by key then currency.
    pub async fn summary(
        &self,
        p: &Principal,
        filter: Filter,
        group_by: GroupBy,
    ) -> Result<Vec<Group>, ExpenseError> {
        let mut groups: std::collections::BTreeMap<(String, &'static str), Group> =
            std::collections::BTreeMap::new();
        self.scan(p, filter, |page| {
            for e in page {
                let key = match group_by {
                    GroupBy::Category => e.details.category.clone(),
                    GroupBy::Submitter => e.submitter.clone(),
                    GroupBy::Month => format_date(e.details.incurred_on)[..7].to_owned(),
                    GroupBy::Status => e.status.as_str().to_owned(),
                };
                let currency = e.details.amount.currency();
                let g = groups
                    .entry((key.clone(), currency.code()))
                    .or_insert_with(|| Group {
                        key,
                        currency,
                        count: 0,
                        total_minor: 0,
                    });
                g.count += 1;
                g.total_minor += i128::from(e.details.amount.minor());
            }
            Ok(())
        })
        .await?;
        Ok(groups.into_values().collect())
    }

    /// Reads `id` for a change by `p`: visible, and `If-Match` when given
    /// (or required) admits it.
    async fn for_change(
        &self,
        p: &Principal,
        id: &ExpenseId,
        precondition: &Precondition,
    ) -> Result<Expense, ExpenseError> {
        let e = self.get(p, id).await?;
        if !precondition.admits(Some(&e.etag)) {
            return Err(ExpenseError::PreconditionFailed);
        }
        Ok(e)
    }

    /// Writes `changed` over `current` with `events`; a lost race is
    /// [`StoreError::ConditionFailed`] for the caller to retry.
    async fn replace(
        &self,
        current: &Expense,
        mut changed: Expense,
        events: &[DomainEvent],
    ) -> Result<Expense, StoreError> {
        changed.version = current.version + 1;
        changed.etag = new_etag();
        changed.updated_at = self.clock.now();
        self.outbox
            .commit(
                vec![Write::Put {
                    item: to_item(&changed),
                    condition: Condition::VersionEquals(current.version),
                }],
                events,
            )
            .await?;
        Ok(changed)
    }

    fn event(&self, event_type: &str, e: &Expense, by: &str) -> Result<DomainEvent, StoreError> {
        DomainEvent::new(
            event_type,
            &e.org,
            self.clock.now(),
            serde_json::json!({
                "id": e.id.as_str(),
                "submitter": e.submitter,
                "by": by,
                "status": e.status.as_str(),
                "amount": e.details.amount.amount_string(),
                "currency": e.details.amount.currency().code(),
                "category": e.details.category,
            }),
        )
        .map_err(|err| StoreError::Invalid(err.to_string()))
    }

    /// Edits a draft or rejected expense (its submitter, with `If-Match`);
    /// a rejected one returns to draft.
    pub async fn patch(
        &self,
        p: &Principal,
        id: &ExpenseId,
        precondition: &Precondition,
        patch: &Patch,
    ) -> Result<Expense, ExpenseError> {
        // `*` would match whatever is there now: no protection against a
        // lost update, so an edit needs the tag the client read.
        if matches!(precondition, Precondition::None | Precondition::Exists) {
            return Err(ExpenseError::PreconditionRequired);
        }
        let current = self.for_change(p, id, precondition).await?;
        Transition::Edit
            .authorize(p, &current.submitter)
            .map_err(ExpenseError::Forbidden)?;
        if !matches!(current.status, Status::Draft | Status::Rejected) {
            return Err(ExpenseError::InvalidTransition {
                action: "edit",
                current: current.status,
            });
        }
        if *patch == Patch::default() {
            // Nothing to change: the expense as it is, with its ETag.
            return Ok(current);
        }
        let mut changed = current.clone();
        changed.details = apply(&current.details, patch, self.clock.now())?;
        if current.status == Status::Rejected {
            changed.status = Status::Draft;
            changed
                .history
                .push(self.entry(Status::Draft, p.account.as_str(), None));
        }
        match self.replace(&current, changed, &[]).await {
            Ok(e) => Ok(e),
            // If-Match named the version we read; someone wrote since.
            Err(StoreError::ConditionFailed { .. }) => Err(ExpenseError::PreconditionFailed),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a draft (its submitter; `If-Match` honoured when sent).
    pub async fn delete(
        &self,
        p: &Principal,
        id: &ExpenseId,
        precondition: &Precondition,
    ) -> Result<(), ExpenseError> {
        let current = self.for_change(p, id, precondition).await?;
        if current.submitter != p.account.as_str() {
            return Err(ExpenseError::Forbidden(
                "only the submitter may delete an expense",
            ));
        }
        if current.status != Status::Draft {
            return Err(ExpenseError::InvalidTransition {
                action: "delete",
                current: current.status,
            });
        }
        // Its receipts go with it: media deletes what this event lists.
        let deleted = DomainEvent::new(
            media_events::EXPENSE_DELETED,
            &p.org,
            self.clock.now(),
            OwnerDeleted {
                owner: MediaOwner {
                    service: OWNER_SERVICE.to_owned(),
                    id: id.as_str().to_owned(),
                },
                media: current
                    .receipts
                    .iter()
                    .map(|r| r.media_id.clone())
                    .collect(),
            },
        )
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let write = Write::Delete {
            key: item_key(&p.org, id.as_str()),
            condition: Condition::VersionEquals(current.version),
        };
        match self.outbox.commit(vec![write], &[deleted]).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { .. })
                if matches!(precondition, Precondition::Matches(_)) =>
            {
                Err(ExpenseError::PreconditionFailed)
            }
            Err(StoreError::ConditionFailed { .. }) => Err(ExpenseError::Contention),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves `id` along `transition` for `p`, appending to its history and
    /// publishing the transition's event in the same commit.
    pub async fn transition(
        &self,
        p: &Principal,
        id: &ExpenseId,
        transition: Transition,
        reason: Option<String>,
        precondition: &Precondition,
    ) -> Result<Expense, ExpenseError> {
        let action = match transition {
            Transition::Submit => "submit",
            Transition::Approve => "approve",
            Transition::Reject => "reject",
            Transition::Reimburse => "reimburse",
            Transition::Edit => "edit",
        };
        if matches!(
            transition,
            Transition::Approve | Transition::Reject | Transition::Reimburse
        ) && !is_admin(p)
        {
            // The same answer whatever the id: nothing about it leaks.
            return Err(ExpenseError::Forbidden(
                "only an admin or owner may do this",
            ));
        }
        for _ in 0..5 {
            let current = self.for_change(p, id, precondition).await?;
            transition
                .authorize(p, &current.submitter)
                .map_err(ExpenseError::Forbidden)?;
            let (from, to) = transition.edge();
            if current.status != from {
                return Err(ExpenseError::InvalidTransition {
                    action,
                    current: current.status,
                });
            }
            if transition == Transition::Submit
                && needs_receipt(&current.details.amount)
                && !current.receipts.iter().any(|r| r.status == "ready")
            {
                return Err(ExpenseError::ReceiptRequired);
            }
            let mut changed = current.clone();
            changed.status = to;
            changed
                .history
                .push(self.entry(to, p.account.as_str(), reason.clone()));
            let events = match transition.event_type() {
                Some(t) => vec![self.event(t, &changed, p.account.as_str())?],
                None => Vec::new(),
            };
            match self.replace(&current, changed, &events).await {
                Ok(e) => return Ok(e),
                Err(StoreError::ConditionFailed { .. }) => {
                    if matches!(precondition, Precondition::Matches(_)) {
                        return Err(ExpenseError::PreconditionFailed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ExpenseError::Contention)
    }

    /// Adds a receipt upload to a draft or rejected expense (its
    /// submitter): presigns the PUT into the media bucket and commits the
    /// receipt's entry with the `media.requested` event media tracks it by.
    pub async fn add_receipt(
        &self,
        p: &Principal,
        id: &ExpenseId,
        content_type: &str,
        size: u64,
        filename: &str,
    ) -> Result<UploadView, ExpenseError> {
        let spec = UploadSpec::parse(Purpose::Receipt.as_str(), content_type, size, filename)?;
        for _ in 0..5 {
            let current = self.get(p, id).await?;
            if current.submitter != p.account.as_str() {
                return Err(ExpenseError::Forbidden("only the submitter adds receipts"));
            }
            if !matches!(current.status, Status::Draft | Status::Rejected) {
                return Err(ExpenseError::InvalidTransition {
                    action: "add a receipt to",
                    current: current.status,
                });
            }
            if current.receipts.len() >= MAX_RECEIPTS {
                return Err(ExpenseError::Invalid(
                    constellation_core::ValidationError::new(
                        "receipts",
                        format!("an expense holds at most {MAX_RECEIPTS} receipts"),
                    ),
                ));
            }
            let media_id = MediaId::from_bytes(uuid::Uuid::new_v4().into_bytes());
            let view = presign_upload(self.media_bucket.as_ref(), &p.org, &media_id, &spec).await?;
            let requested = DomainEvent::new(
                media_events::REQUESTED,
                &p.org,
                self.clock.now(),
                MediaRequested {
                    id: media_id.to_string(),
                    uploader: p.account.as_str().to_owned(),
                    purpose: spec.purpose.as_str().to_owned(),
                    content_type: spec.content_type.as_str().to_owned(),
                    size: spec.size,
                    filename: spec.filename.as_str().to_owned(),
                    owner: Some(MediaOwner {
                        service: OWNER_SERVICE.to_owned(),
                        id: id.as_str().to_owned(),
                    }),
                },
            )
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let mut changed = current.clone();
            changed.receipts.push(Receipt {
                media_id: media_id.to_string(),
                status: "pending".to_owned(),
            });
            match self.replace(&current, changed, &[requested]).await {
                Ok(_) => return Ok(view),
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ExpenseError::Contention)
    }

    /// Applies a `media.*` event to the receipt it names (events of other
    /// owners, and of receipts no longer listed, change nothing). Setting a
    /// status is idempotent, so redeliveries are harmless.
    pub async fn apply_media(
        &self,
        org: &OrgId,
        event_type: &str,
        change: &MediaChanged,
    ) -> Result<(), StoreError> {
        let Some(owner) = change.owner.as_ref().filter(|o| o.service == OWNER_SERVICE) else {
            return Ok(());
        };
        for _ in 0..5 {
            let Some(current) = self.find(org, &owner.id).await? else {
                return Ok(());
            };
            let mut changed = current.clone();
            if event_type == media_events::DELETED
                && matches!(current.status, Status::Draft | Status::Rejected)
            {
                changed.receipts.retain(|r| r.media_id != change.id);
            } else {
                // Once submitted, a receipt stays listed; a deleted one says so.
                for r in changed
                    .receipts
                    .iter_mut()
                    .filter(|r| r.media_id == change.id)
                {
                    r.status = change.status.clone();
                }
            }
            if changed.receipts == current.receipts {
                return Ok(());
            }
            match self.replace(&current, changed, &[]).await {
                Ok(_) => return Ok(()),
                Err(StoreError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(anyhow::anyhow!(
            "expense {} kept changing while its receipt was updated",
            owner.id
        )))
    }
}

/// The details after `patch`, every field validated again.
fn apply(current: &Details, patch: &Patch, now: OffsetDateTime) -> Result<Details, ExpenseError> {
    use crate::domain::{MAX_CATEGORY_CHARS, MAX_DESCRIPTION_CHARS, MAX_MERCHANT_CHARS, text};
    let currency = match &patch.currency {
        Some(c) => Currency::parse("currency", c)?,
        None => current.amount.currency(),
    };
    let amount = match &patch.amount {
        Some(a) => Money::parse("amount", a, currency)?,
        None if currency != current.amount.currency() => Money::parse(
            "currency",
            &trimmed(&current.amount.amount_string()),
            currency,
        )
        .map_err(|_| {
            constellation_core::ValidationError::new(
                "currency",
                "the current amount has more decimals than this currency allows; send amount too",
            )
        })?,
        None => current.amount,
    };
    Ok(Details {
        amount,
        category: match &patch.category {
            Some(c) => text("category", c, 1, MAX_CATEGORY_CHARS)?,
            None => current.category.clone(),
        },
        merchant: match &patch.merchant {
            Some(m) => text("merchant", m, 1, MAX_MERCHANT_CHARS)?,
            None => current.merchant.clone(),
        },
        description: match &patch.description {
            Some(d) => text("description", d, 0, MAX_DESCRIPTION_CHARS)?,
            None => current.description.clone(),
        },
        incurred_on: match &patch.incurred_on {
            Some(d) => crate::domain::incurred_on(d, now)?,
            None => current.incurred_on,
        },
    })
}

/// A decimal without trailing fractional zeros (`5.50` → `5.5`, `5.00` → `5`).
fn trimmed(amount: &str) -> String {
    if amount.contains('.') {
        amount
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        amount.to_owned()
    }
}

#[cfg(test)]
mod tests;
