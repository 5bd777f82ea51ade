//! Expenses imported from elsewhere (a legacy database), under the
//! importer's ids.

use constellation_core::import::Imported;

use super::*;

/// An expense from elsewhere (a legacy database), as
/// [`ExpenseStore::import_expense`] stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpenseImport {
    /// Its id, chosen by the importer ([`ExpenseId::at`]).
    pub id: ExpenseId,
    /// The account that filed it: an account id (32 lowercase hex digits)
    /// of the organization (the importer makes sure it exists).
    pub submitter: String,
    /// The editable fields.
    pub details: Details,
    /// Where it is.
    pub status: Status,
    /// When it was filed.
    pub created_at: OffsetDateTime,
    /// When it last changed (its final status's time).
    pub updated_at: OffsetDateTime,
}

impl ExpenseStore {
    /// Stores an expense imported from elsewhere, as the operator: nothing
    /// is published (historic data must start no review and notify nobody)
    /// and it has no receipts (legacy receipts are not migrated).
    ///
    /// The fields are checked by the API's rules (text lengths, no control
    /// characters; `Money` is valid by construction) except those relative
    /// to now: `incurred_on` may be older than [`crate::domain::MAX_AGE_DAYS`]
    /// days, since historic data is. `updated_at` must not be before
    /// `created_at`.
    ///
    /// The history is what is known: `draft` at `created_at`, then, for any
    /// other status, that status at `updated_at`; both are credited to the
    /// submitter, the only account the legacy record names (no reason is
    /// recorded for a rejection). An expense already stored under `id`
    /// answers [`Imported::AlreadyPresent`] and is left as it is.
    pub async fn import_expense(
        &self,
        org: &OrgId,
        expense: ExpenseImport,
    ) -> Result<Imported, ExpenseError> {
        use crate::domain::{MAX_CATEGORY_CHARS, MAX_DESCRIPTION_CHARS, MAX_MERCHANT_CHARS, text};
        let ExpenseImport {
            id,
            submitter,
            details,
            status,
            created_at,
            updated_at,
        } = expense;
        let details = Details {
            amount: details.amount,
            category: text("category", &details.category, 1, MAX_CATEGORY_CHARS)?,
            merchant: text("merchant", &details.merchant, 1, MAX_MERCHANT_CHARS)?,
            description: text(
                "description",
                &details.description,
                0,
                MAX_DESCRIPTION_CHARS,
            )?,
            incurred_on: details.incurred_on,
        };
        let submitter = account_id("submitter", &submitter)?;
        if updated_at < created_at {
            return Err(constellation_core::ValidationError::new(
                "updated_at",
                "must not be before created_at",
            )
            .into());
        }
        if self.find(org, id.as_str()).await?.is_some() {
            return Ok(Imported::AlreadyPresent);
        }
        let entry = |status: Status, at: OffsetDateTime| HistoryEntry {
            status: status.as_str().to_owned(),
            at: rfc3339(at),
            by: submitter.as_str().to_owned(),
            reason: None,
        };
        let mut history = vec![entry(Status::Draft, created_at)];
        if status != Status::Draft {
            history.push(entry(status, updated_at));
        }
        let expense = Expense {
            id,
            org: org.clone(),
            submitter: submitter.as_str().to_owned(),
            details,
            status,
            receipts: Vec::new(),
            history,
            created_at,
            updated_at,
            etag: new_etag(),
            version: 1,
        };
        match self
            .table
            .put(&to_item(&expense), Condition::NotExists)
            .await
        {
            Ok(()) => Ok(Imported::Created),
            // A concurrent import of the same record won (or something
            // else took the id and went again: too much change to judge).
            Err(StoreError::ConditionFailed { .. }) => {
                match self.find(org, expense.id.as_str()).await? {
                    Some(_) => Ok(Imported::AlreadyPresent),
                    None => Err(ExpenseError::Contention),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
