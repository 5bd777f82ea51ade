//! Fills a local data directory with many kv entries and expenses, fast,
//! for `scripts/bench --parts migrate` to export and import.
//!
//! ```sh
//! cargo run --release --example migrate_fixture -- /tmp/bench-data 100000 100000
//! ```
//! Arguments: data directory (local backend), kv entries, expenses.
//!
//! One kv entry and one expense are written through their stores' ordinary
//! code (`KvStore::put`, `ExpenseStore::create`), so the item layout is
//! exactly the services' own; they are then read back and copied under
//! fresh keys and ids with `Table::put_batch`, which is what makes 200,000
//! records take seconds rather than minutes of single writes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use constellation::migrate::{ServiceTable, open_tables};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::ids::time_ordered_id;
use constellation_core::kv::{Key, Namespace, Precondition};
use constellation_core::money::{Currency, Money};
use constellation_expenses::domain::Details;
use constellation_kv::store::EntryForPut;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::MetricsSink;
use constellation_platform::table::{IndexKey, Item, ItemKey, MAX_BATCH_PUT};
use constellation_platform::tokens::VerifierConfig;
use constellation_web::host::{Context, Resources};
use futures::StreamExt as _;
use serde_json::Value;

/// How many batches are in flight at once (the local writer commits them
/// together).
const IN_FLIGHT: usize = 16;
/// How many copies are built before they are written.
const CHUNK: usize = 10_000;

/// `template` with every occurrence of `from` in its keys and string
/// attributes replaced by `to`.
fn copy_with(template: &Item, from: &str, to: &str) -> anyhow::Result<Item> {
    let swap = |s: &str| s.replace(from, to);
    let index = |k: &Option<IndexKey>| k.as_ref().map(|k| IndexKey::new(swap(&k.pk), swap(&k.sk)));
    let attrs = serde_json::to_string(&template.attrs)?;
    let attrs: serde_json::Map<String, Value> = serde_json::from_str(&swap(&attrs))?;
    Ok(Item {
        key: ItemKey::new(swap(&template.key.pk), swap(&template.key.sk)),
        gsi1: index(&template.gsi1),
        gsi2: index(&template.gsi2),
        attrs,
        ..template.clone()
    })
}

/// Writes `items` in batches, `IN_FLIGHT` at a time.
async fn put_all(table: &ServiceTable, items: Vec<Item>) -> anyhow::Result<()> {
    let batches: Vec<Vec<Item>> = items.chunks(MAX_BATCH_PUT).map(<[Item]>::to_vec).collect();
    let mut writes = futures::stream::iter(batches.iter().map(|b| table.table.put_batch(b)))
        .buffer_unordered(IN_FLIGHT);
    while let Some(done) = writes.next().await {
        done.with_context(|| format!("writing {}'s items", table.service))?;
    }
    Ok(())
}

fn table<'a>(tables: &'a [ServiceTable], service: &str) -> anyhow::Result<&'a ServiceTable> {
    tables
        .iter()
        .find(|t| t.service == service)
        .with_context(|| format!("no {service} table"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(kv_count), Some(expense_count)) = (args.get(1), args.get(2), args.get(3))
    else {
        bail!("usage: migrate_fixture DATA_DIR KV_ENTRIES EXPENSES");
    };
    let kv_count: u64 = kv_count.parse().context("KV_ENTRIES")?;
    let expense_count: u64 = expense_count.parse().context("EXPENSES")?;
    let started = Instant::now();
    let platform = Platform::local(dir.into(), String::new(), Arc::new(SystemClock))?;
    let org = OrgId::parse("org-bench")?;
    let services = [&constellation_kv::SERVICE, &constellation_expenses::SERVICE];
    let tables = open_tables(&platform, &services).await?;

    // The templates, through the stores.
    let kv_resources =
        Resources::from_env(constellation_kv::SERVICE.resources, BackendKind::Local)?;
    let kv = constellation_kv::store(
        &platform,
        &constellation_kv::KvResources::from_resources(&kv_resources)?,
    )
    .await?;
    let ns = Namespace::parse("bench")?;
    kv.put(
        &org,
        &ns,
        &Key::parse("template")?,
        EntryForPut {
            value: Bytes::from_static(br#"{"theme":"dark","size":12,"tags":["a","b"]}"#),
            content_type: "application/json".to_owned(),
            ttl: None,
            precondition: Precondition::None,
        },
    )
    .await?;
    let kv_table = table(&tables, "kv")?;
    let kv_template = kv_table
        .table
        .get(&ItemKey::new(format!("NS#{org}#{ns}"), "template"))
        .await?
        .context("the kv template was not written")?;

    let expenses_resources = Resources::from_env(
        constellation_expenses::SERVICE.resources,
        BackendKind::Local,
    )?;
    let ctx = Context::new(
        platform.clone(),
        expenses_resources,
        MetricsSink::discard(),
        VerifierConfig::from_env()?,
    );
    let (expenses, _) = constellation_expenses::store(&ctx).await?;
    let submitter = Principal {
        account: AccountId::from_bytes([7; 16]),
        org: org.clone(),
        role: Role::Staff,
    };
    let eur = Currency::parse("currency", "EUR")?;
    let expense = expenses
        .create(
            &submitter,
            Details {
                amount: Money::parse("amount", "12.50", eur)?,
                category: "meals".to_owned(),
                merchant: "Café Zentral".to_owned(),
                description: "team lunch".to_owned(),
                incurred_on: time::macros::date!(2026 - 11 - 30),
            },
        )
        .await?;
    let expense_table = table(&tables, "expenses")?;
    let expense_template = expense_table
        .table
        .get(&ItemKey::new(format!("EXP#{org}"), expense.id.as_str()))
        .await?
        .context("the expense template was not written")?;

    // The copies, a chunk at a time.
    for start in (0..kv_count).step_by(CHUNK) {
        let items = (start..kv_count.min(start + CHUNK as u64))
            .map(|i| copy_with(&kv_template, "template", &format!("key-{i:07}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        put_all(kv_table, items).await?;
    }
    let millis = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)?;
    for start in (0..expense_count).step_by(CHUNK) {
        let items = (start..expense_count.min(start + CHUNK as u64))
            .map(|i| {
                let id = time_ordered_id(millis + i, uuid::Uuid::new_v4().as_u128());
                copy_with(&expense_template, expense.id.as_str(), &id)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        put_all(expense_table, items).await?;
    }
    println!(
        "wrote {} kv entries and {} expenses to {dir} in {:.1} s",
        kv_count + 1,
        expense_count + 1,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
