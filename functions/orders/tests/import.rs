//! Importing orders from a legacy database on both backends, with catalog
//! running beside orders: what is stored reads back through the API as it
//! was, nothing is published, a re-run writes nothing, bad fields are
//! named, concurrent imports of one order write it once, and imported
//! confirmed orders, their stock reserved in catalog by
//! `import_reservation`, are cancelled or shipped through the API and the
//! workers as live orders are: cancelling releases, shipping takes the
//! units off `on_hand`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_catalog::store::stock::Outcome;
use constellation_catalog::store::{ProductFields, import_id};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::import::Imported;
use constellation_core::money::{Currency, Money};
use constellation_orders::domain::{Price, Status};
use constellation_orders::store::{OrderError, OrderId, OrderLine, Rejection};
use constellation_orders::{OrderImport, OrderStore};
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::items::{NEVER_EXPORTED, check_every_item};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    an_imported_order_reads_back_as_it_was_and_a_rerun_writes_nothing,
    bad_imports_name_the_field_and_store_nothing,
    concurrent_imports_of_one_order_write_it_once,
    imported_confirmed_orders_hold_their_stock_until_cancelled_or_shipped,
    every_stored_item_passes_the_import_check,
}

const ORG: &str = "org-imp";
const CREATED: OffsetDateTime = datetime!(2021-03-04 10:11:12.131 UTC);
const UPDATED: OffsetDateTime = datetime!(2021-03-09 16:00 UTC);

type OrdersApp = TestApp<TestServices>;

async fn spawn(env: TestPlatform) -> OrdersApp {
    let services = TestServices::start(
        &env,
        &[
            &constellation_orders::SERVICE,
            &constellation_catalog::SERVICE,
        ],
    )
    .await
    .unwrap();
    let router = services.router();
    TestApp::new(env, router, services)
}

fn store(app: &OrdersApp) -> OrderStore {
    constellation_orders::store(app.service.context("orders"))
        .unwrap()
        .0
}

fn org() -> &'static OrgId {
    static ORG_ID: std::sync::LazyLock<OrgId> =
        std::sync::LazyLock::new(|| OrgId::parse(ORG).unwrap());
    &ORG_ID
}

fn placer() -> AccountId {
    AccountId::from_bytes([9; 16])
}

fn token_of(app: &OrdersApp, account: AccountId, role: Role) -> String {
    app.service.tokens.token_for(&Principal {
        account,
        org: org().clone(),
        role,
    })
}

fn eur(amount: &str) -> Money {
    Money::parse("amount", amount, Currency::parse("c", "EUR").unwrap()).unwrap()
}

fn line(product: &str, quantity: u32, price: Option<(&str, Money)>) -> OrderLine {
    OrderLine {
        product_id: product.to_owned(),
        quantity,
        price: price.map(|(sku, unit_price)| Price {
            sku: sku.to_owned(),
            unit_price,
        }),
    }
}

fn fx_order(seed: u128, status: Status, lines: Vec<OrderLine>) -> OrderImport {
    OrderImport {
        id: OrderId::at(CREATED, seed),
        placed_by: placer().as_str().to_owned(),
        lines,
        note: Some("  leave at the back door ".to_owned()),
        status,
        rejection: None,
        created_at: CREATED,
        updated_at: UPDATED,
    }
}

fn fx_shipped(seed: u128) -> OrderImport {
    fx_order(
        seed,
        Status::Shipped,
        vec![
            line("prod-a", 3, Some(("SKU-A", eur("2.50")))),
            line("prod-b", 1, Some(("SKU-B", eur("1")))),
        ],
    )
}

async fn get(app: &OrdersApp, token: &str, id: &OrderId) -> Value {
    let r = app
        .get(&format!("/v1/orders/{}", id.as_str()))
        .bearer(token)
        .await;
    r.assert_status(StatusCode::OK);
    r.json()
}

async fn an_imported_order_reads_back_as_it_was_and_a_rerun_writes_nothing(app: OrdersApp) {
    let store = store(&app);
    let fx = fx_shipped(1);
    assert!(
        fx.id.as_str().starts_with("0177fcb84a83"),
        "{}",
        fx.id.as_str()
    );
    assert_eq!(
        store.import_order(org(), fx.clone()).await.unwrap(),
        Imported::Created
    );
    let me = token_of(&app, placer(), Role::Member);
    let v = get(&app, &me, &fx.id).await;
    assert_eq!(v["status"], "shipped");
    assert_eq!(v["placed_by"], placer().as_str());
    assert_eq!(v["note"], "leave at the back door");
    assert_eq!(v["total"], json!({"amount": "8.50", "currency": "EUR"}));
    assert_eq!(v["lines"][0]["sku"], "SKU-A");
    assert_eq!(v["lines"][0]["quantity"], 3);
    assert_eq!(
        v["lines"][1]["unit_price"],
        json!({"amount": "1.00", "currency": "EUR"})
    );
    assert_eq!(v["created_at"], "2021-03-04T10:11:12.131Z");
    assert_eq!(v["updated_at"], "2021-03-09T16:00:00Z");
    let list = app.get("/v1/orders").bearer(&me).await.json();
    assert_eq!(list["items"][0]["id"], fx.id.as_str());
    // Nothing was published: catalog's worker has nothing to do.
    assert_eq!(app.service.pump().await.unwrap(), 0);

    let mut again = fx.clone();
    again.note = Some("changed".to_owned());
    assert_eq!(
        store.import_order(org(), again).await.unwrap(),
        Imported::AlreadyPresent
    );
    assert_eq!(get(&app, &me, &fx.id).await, v);
}

async fn bad_imports_name_the_field_and_store_nothing(app: OrdersApp) {
    let store = store(&app);
    let mut cases: Vec<(&str, OrderImport)> = Vec::new();
    let mut fx = fx_shipped(10);
    fx.status = Status::Pending;
    cases.push(("status", fx));
    cases.push(("lines", fx_order(11, Status::Shipped, Vec::new())));
    let mut fx = fx_shipped(12);
    fx.lines[1].quantity = 0;
    cases.push(("lines[1].quantity", fx));
    let mut fx = fx_shipped(13);
    fx.lines[1].price = Some(Price {
        sku: "SKU-B".to_owned(),
        unit_price: Money::parse("a", "1", Currency::parse("c", "USD").unwrap()).unwrap(),
    });
    cases.push(("lines[1].price.unit_price", fx));
    let mut fx = fx_shipped(14);
    fx.status = Status::Confirmed;
    fx.lines[0].price = None;
    cases.push(("lines[0].price", fx));
    let mut fx = fx_shipped(15);
    fx.status = Status::Rejected;
    cases.push(("rejection", fx));
    let mut fx = fx_shipped(16);
    fx.rejection = Some(Rejection {
        reason: "insufficient-stock".to_owned(),
        product_id: None,
    });
    cases.push(("rejection", fx));
    let mut fx = fx_shipped(17);
    fx.note = Some("x".repeat(501));
    cases.push(("note", fx));
    let mut fx = fx_shipped(20);
    fx.placed_by = "ABC".to_owned();
    cases.push(("placed_by", fx));
    let mut fx = fx_shipped(18);
    fx.updated_at = CREATED - time::Duration::seconds(1);
    cases.push(("updated_at", fx));
    let staff = token_of(&app, placer(), Role::Staff);
    for (field, fx) in cases {
        let id = fx.id.clone();
        match store.import_order(org(), fx).await {
            Err(OrderError::Invalid(e)) => assert_eq!(e.field, field),
            other => panic!("{field}: {other:?}"),
        }
        app.get(&format!("/v1/orders/{}", id.as_str()))
            .bearer(&staff)
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
    // A rejected order with its reason, unpriced, is fine.
    let mut fx = fx_order(19, Status::Rejected, vec![line("prod-a", 2, None)]);
    fx.rejection = Some(Rejection {
        reason: "insufficient-stock".to_owned(),
        product_id: Some("prod-a".to_owned()),
    });
    assert_eq!(
        store.import_order(org(), fx.clone()).await.unwrap(),
        Imported::Created
    );
    let v = get(&app, &staff, &fx.id).await;
    assert_eq!(v["reason"], "insufficient-stock");
    assert_eq!(v["rejected_product_id"], "prod-a");
    assert_eq!(v["total"], Value::Null);
}

async fn concurrent_imports_of_one_order_write_it_once(app: OrdersApp) {
    let store = store(&app);
    let fx = fx_shipped(30);
    let (a, b) = tokio::join!(
        store.import_order(org(), fx.clone()),
        store.import_order(org(), fx.clone())
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| o.created());
    assert_eq!(outcomes, [Imported::AlreadyPresent, Imported::Created]);
}

async fn stock(app: &OrdersApp, staff: &str, product: &str) -> Value {
    let r = app
        .get(&format!("/v1/catalog/products/{product}/stock"))
        .bearer(staff)
        .await;
    r.assert_status(StatusCode::OK);
    r.json()
}

async fn imported_confirmed_orders_hold_their_stock_until_cancelled_or_shipped(app: OrdersApp) {
    let orders = store(&app);
    let catalog = constellation_catalog::store(app.service.context("catalog"))
        .unwrap()
        .0;
    let staff = token_of(&app, AccountId::from_bytes([1; 16]), Role::Staff);
    let me = token_of(&app, placer(), Role::Member);
    // A product with 10 units on hand, as the legacy database counted them.
    let product = import_id(CREATED, 40);
    let fields = ProductFields {
        sku: "HAM-1".to_owned(),
        name: "Hammer".to_owned(),
        description: String::new(),
        price: eur("2.50"),
        supplier_id: None,
        reorder_level: 0,
        active: true,
    };
    catalog
        .import_product(org(), &product, fields, 10, CREATED, UPDATED)
        .await
        .unwrap();

    // Two imported confirmed orders hold 3 and 2 of them.
    let priced = |n| vec![line(&product, n, Some(("HAM-1", eur("2.50"))))];
    let cancel = fx_order(41, Status::Confirmed, priced(3));
    let ship = fx_order(42, Status::Confirmed, priced(2));
    for fx in [&cancel, &ship] {
        orders.import_order(org(), fx.clone()).await.unwrap();
        let lines: Vec<(String, u32)> = fx
            .lines
            .iter()
            .map(|l| (l.product_id.clone(), l.quantity))
            .collect();
        let r = catalog
            .import_reservation(org(), fx.id.as_str(), &lines, fx.updated_at)
            .await;
        assert_eq!(r.unwrap(), Imported::Created);
    }
    assert_eq!(
        stock(&app, &staff, &product).await,
        json!({"on_hand": 10, "reserved": 5, "available": 5})
    );
    // Nothing was published.
    assert_eq!(app.service.pump().await.unwrap(), 0);

    // Cancelling one releases its 3.
    let r = app
        .post(&format!("/v1/orders/{}/cancel", cancel.id.as_str()))
        .bearer(&me)
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["status"], "cancelled");
    assert!(app.service.pump().await.unwrap() >= 1);
    assert_eq!(
        stock(&app, &staff, &product).await,
        json!({"on_hand": 10, "reserved": 2, "available": 8})
    );
    // Shipping the other takes its 2 out of the warehouse.
    let r = app
        .post(&format!("/v1/orders/{}/ship", ship.id.as_str()))
        .bearer(&staff)
        .await;
    r.assert_status(StatusCode::OK);
    assert_eq!(r.json()["status"], "shipped");
    assert!(app.service.pump().await.unwrap() >= 1);
    let settled = json!({"on_hand": 8, "reserved": 0, "available": 8});
    assert_eq!(stock(&app, &staff, &product).await, settled);
    assert_eq!(get(&app, &me, &cancel.id).await["status"], "cancelled");
    assert_eq!(get(&app, &me, &ship.id).await["status"], "shipped");
    // A redelivery changes nothing, nor does importing a reservation again.
    assert_eq!(
        catalog
            .settle(org(), cancel.id.as_str(), false)
            .await
            .unwrap(),
        Outcome::Unchanged
    );
    assert_eq!(
        catalog.settle(org(), ship.id.as_str(), true).await.unwrap(),
        Outcome::Unchanged
    );
    let again = catalog
        .import_reservation(org(), ship.id.as_str(), &[(product.clone(), 2)], UPDATED)
        .await;
    assert_eq!(again.unwrap(), Imported::AlreadyPresent);
    assert_eq!(stock(&app, &staff, &product).await, settled);
    // The movements add up to the levels: import 10, reserved 3 and 2,
    // released 3, shipped 2.
    let movements = app
        .get(&format!("/v1/catalog/products/{product}/stock/movements"))
        .bearer(&staff)
        .await
        .json();
    let items = movements["items"].as_array().unwrap();
    let mut reasons: Vec<&str> = items
        .iter()
        .map(|m| m["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        ["import", "released", "reserved", "reserved", "shipped"]
    );
    let sum = |field: &str| {
        items
            .iter()
            .map(|m| m[field].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!((sum("on_hand_delta"), sum("reserved_delta")), (8, 0));

    // A live order placed afterwards reserves from what is left.
    let r = app
        .post("/v1/orders")
        .bearer(&me)
        .header("idempotency-key", &uuid::Uuid::new_v4().to_string())
        .json(&json!({"lines": [{"product_id": product, "quantity": 3}]}))
        .await;
    r.assert_status(StatusCode::ACCEPTED);
    let live = OrderId::parse(r.json()["id"].as_str().unwrap()).unwrap();
    app.service.pump().await.unwrap();
    assert_eq!(get(&app, &me, &live).await["status"], "confirmed");
    assert_eq!(
        stock(&app, &staff, &product).await,
        json!({"on_hand": 8, "reserved": 3, "available": 5})
    );
}

/// Orders in every status, placed through the API and moved along the
/// saga by both workers, and imported: every item of the orders table
/// passes `check_item` (what `constellation import` runs on an export), and
/// so does every item catalog wrote for them.
async fn every_stored_item_passes_the_import_check(app: OrdersApp) {
    let (orders, table) = constellation_orders::store(app.service.context("orders")).unwrap();
    let (catalog, catalog_table) =
        constellation_catalog::store(app.service.context("catalog")).unwrap();
    let staff = token_of(&app, AccountId::from_bytes([1; 16]), Role::Staff);
    let me = token_of(&app, placer(), Role::Member);
    let product = import_id(CREATED, 60);
    let fields = ProductFields {
        sku: "NAIL-1".to_owned(),
        name: "Nail".to_owned(),
        description: String::new(),
        price: eur("0.10"),
        supplier_id: None,
        reorder_level: 0,
        active: true,
    };
    catalog
        .import_product(org(), &product, fields, 10, CREATED, UPDATED)
        .await
        .unwrap();
    let place = |quantity: u32, note: &'static str| {
        let app = &app;
        let me = me.clone();
        let product = product.clone();
        async move {
            let r = app
                .post("/v1/orders")
                .bearer(&me)
                .header("idempotency-key", &uuid::Uuid::new_v4().to_string())
                .json(&json!({"lines": [{"product_id": product, "quantity": quantity}], "note": note}))
                .await;
            r.assert_status(StatusCode::ACCEPTED);
            r.json()["id"].as_str().unwrap().to_owned()
        }
    };
    let shipped = place(2, " fragile ").await;
    let cancelled = place(1, "").await;
    let _rejected = place(50, "too many").await;
    app.service.pump().await.unwrap();
    app.post(&format!("/v1/orders/{shipped}/ship"))
        .bearer(&staff)
        .await
        .assert_status(StatusCode::OK);
    app.post(&format!("/v1/orders/{cancelled}/cancel"))
        .bearer(&me)
        .await
        .assert_status(StatusCode::OK);
    let _confirmed = place(3, "").await;
    app.service.pump().await.unwrap();
    let _pending = place(1, "").await;
    let mut rejected = fx_order(61, Status::Rejected, vec![line(&product, 4, None)]);
    rejected.rejection = Some(Rejection {
        reason: "insufficient-stock".to_owned(),
        product_id: Some(product.clone()),
    });
    orders.import_order(org(), rejected).await.unwrap();
    orders.import_order(org(), fx_shipped(62)).await.unwrap();

    let statuses = check_every_item(
        table.as_ref(),
        NEVER_EXPORTED,
        constellation_orders::store::check_item,
    )
    .await;
    assert_eq!(
        statuses,
        [
            "ORD:cancelled",
            "ORD:confirmed",
            "ORD:pending",
            "ORD:rejected",
            "ORD:rejected",
            "ORD:shipped",
            "ORD:shipped"
        ]
    );
    let kinds = check_every_item(
        catalog_table.as_ref(),
        NEVER_EXPORTED,
        constellation_catalog::store::check_item,
    )
    .await;
    for kind in [
        "PROD:-",
        "SKUIDX:-",
        "MOV:-",
        "RES:shipped",
        "RES:released",
        "RES:rejected",
        "RES:reserved",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}
