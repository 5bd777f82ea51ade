//! Importing suppliers and products from a legacy database on both
//! backends: what is stored reads back through the API as it was (stock and
//! its `import` movement included), a re-run writes nothing, bad fields and
//! taken SKUs are named, and concurrent imports of one record write it once.
//! Reservations of imported confirmed orders raise `reserved` once per
//! order, and one beyond what is available is refused and writes nothing
//! (settling them is in the orders tests, with both services running).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use constellation_catalog::CatalogStore;
use constellation_catalog::store::{CatalogError, ProductFields, SupplierFields, import_id};
use constellation_core::OrgId;
use constellation_core::auth::{Email, Role};
use constellation_core::import::Imported;
use constellation_core::money::{Currency, Money};
use constellation_testkit::http::{TestApp, TestPlatform};
use constellation_testkit::items::{NEVER_EXPORTED, check_every_item};
use constellation_testkit::services::TestServices;
use http::StatusCode;
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

constellation_testkit::on_both_backends! {
    app = crate::spawn;
    imported_suppliers_and_products_read_back_and_a_rerun_writes_nothing,
    bad_imports_name_the_field_and_store_nothing,
    concurrent_imports_of_one_product_write_it_once,
    an_imported_reservation_is_written_once_however_often_or_concurrently_imported,
    a_reservation_beyond_available_stock_is_refused_on_quantity_and_writes_nothing,
    every_stored_item_passes_the_import_check,
}

const ORG: &str = "org-imp";
const CREATED: OffsetDateTime = datetime!(2018-02-01 08:00:00.250 UTC);
const UPDATED: OffsetDateTime = datetime!(2020-07-15 12:00 UTC);
/// When imported orders' stock was reserved.
const RESERVED: OffsetDateTime = datetime!(2020-08-01 09:30 UTC);

type CatalogApp = TestApp<TestServices>;

async fn spawn(env: TestPlatform) -> CatalogApp {
    let services = TestServices::start(&env, &[&constellation_catalog::SERVICE])
        .await
        .unwrap();
    let router = services.router();
    let staff = services.tokens.token(ORG, Role::Staff);
    TestApp::new(env, router, services).with_bearer(staff)
}

fn store(app: &CatalogApp) -> CatalogStore {
    constellation_catalog::store(app.service.context("catalog"))
        .unwrap()
        .0
}

fn org() -> &'static OrgId {
    static ORG_ID: std::sync::LazyLock<OrgId> =
        std::sync::LazyLock::new(|| OrgId::parse(ORG).unwrap());
    &ORG_ID
}

fn fx_supplier() -> SupplierFields {
    SupplierFields {
        name: "Acme Tools".to_owned(),
        email: Email::parse("orders@acme.example").unwrap(),
        phone: "+49 30 1234".to_owned(),
        lead_time_days: 14,
    }
}

fn fx_product(sku: &str, supplier_id: Option<String>) -> ProductFields {
    ProductFields {
        sku: sku.to_owned(),
        name: "Hammer".to_owned(),
        description: "A hammer".to_owned(),
        price: Money::parse("price", "12.50", Currency::parse("c", "EUR").unwrap()).unwrap(),
        supplier_id,
        reorder_level: 5,
        active: true,
    }
}

async fn imported_suppliers_and_products_read_back_and_a_rerun_writes_nothing(app: CatalogApp) {
    let store = store(&app);
    let supplier = import_id(CREATED, 1);
    assert!(supplier.starts_with("0161506128fa"), "{supplier}");
    let import_supplier =
        || store.import_supplier(org(), &supplier, fx_supplier(), CREATED, UPDATED);
    assert_eq!(import_supplier().await.unwrap(), Imported::Created);
    let s = app
        .get(&format!("/v1/catalog/suppliers/{supplier}"))
        .await
        .json();
    assert_eq!(s["name"], "Acme Tools");
    assert_eq!(s["email"], "orders@acme.example");
    assert_eq!(s["lead_time_days"], 14);
    assert_eq!(s["created_at"], "2018-02-01T08:00:00.25Z");
    assert_eq!(s["updated_at"], "2020-07-15T12:00:00Z");

    let product = import_id(CREATED, 2);
    let import_product = || {
        store.import_product(
            org(),
            &product,
            fx_product("HAM-1", Some(supplier.clone())),
            40,
            CREATED,
            UPDATED,
        )
    };
    assert_eq!(import_product().await.unwrap(), Imported::Created);
    let path = format!("/v1/catalog/products/{product}");
    let got = app.get(&path).await;
    got.assert_status(StatusCode::OK);
    let etag = got.header("etag").unwrap().to_owned();
    let p = got.json();
    assert_eq!(p["sku"], "HAM-1");
    assert_eq!(p["price"], json!({"amount": "12.50", "currency": "EUR"}));
    assert_eq!(p["supplier_id"], supplier.as_str());
    assert_eq!(
        p["stock"],
        json!({"on_hand": 40, "reserved": 0, "available": 40})
    );
    assert_eq!(p["created_at"], "2018-02-01T08:00:00.25Z");
    // Indexed by SKU and by supplier, with one movement explaining on_hand.
    let by_sku = app.get("/v1/catalog/products?sku_prefix=HAM").await.json();
    assert_eq!(by_sku["items"][0]["id"], product.as_str());
    let by_supplier = app
        .get(&format!("/v1/catalog/products?supplier_id={supplier}"))
        .await
        .json();
    assert_eq!(by_supplier["items"][0]["id"], product.as_str());
    let movements = app.get(&format!("{path}/stock/movements")).await.json();
    assert_eq!(
        movements["items"],
        json!([{"at": "2020-07-15T12:00:00Z", "reason": "import", "on_hand_delta": 40,
                "reserved_delta": 0, "actor": null, "order_id": null}])
    );
    // The SKU is claimed: the API refuses it to another product.
    let r = app
        .post("/v1/catalog/products")
        .json(&json!({"sku": "HAM-1", "name": "Other", "description": "",
                      "price": {"amount": "1", "currency": "EUR"}}))
        .await;
    r.assert_status(StatusCode::CONFLICT);
    // The supplier is named, so it cannot be deleted.
    app.delete(&format!("/v1/catalog/suppliers/{supplier}"))
        .await
        .assert_status(StatusCode::CONFLICT);

    // A re-run writes nothing.
    assert_eq!(import_supplier().await.unwrap(), Imported::AlreadyPresent);
    assert_eq!(import_product().await.unwrap(), Imported::AlreadyPresent);
    let got = app.get(&path).await;
    assert_eq!(got.header("etag"), Some(etag.as_str()));
    let movements = app.get(&format!("{path}/stock/movements")).await.json();
    assert_eq!(movements["items"].as_array().unwrap().len(), 1);
}

async fn bad_imports_name_the_field_and_store_nothing(app: CatalogApp) {
    let store = store(&app);
    let taken = import_id(CREATED, 10);
    store
        .import_product(
            org(),
            &taken,
            fx_product("TAKEN", None),
            0,
            CREATED,
            UPDATED,
        )
        .await
        .unwrap();
    let field = |r: Result<Imported, CatalogError>| match r {
        Err(CatalogError::Invalid(e)) => e.field.to_owned(),
        Err(CatalogError::UnknownSupplier) => "supplier_id".to_owned(),
        Err(CatalogError::SkuTaken) => "sku".to_owned(),
        other => panic!("{other:?}"),
    };
    let id = import_id(CREATED, 11);
    let mut bad = fx_supplier();
    bad.phone = "call me".to_owned();
    let r = store
        .import_supplier(org(), &id, bad, CREATED, UPDATED)
        .await;
    assert_eq!(field(r), "phone");
    let r = store
        .import_supplier(org(), "legacy-7", fx_supplier(), CREATED, UPDATED)
        .await;
    assert_eq!(field(r), "id");
    let r = store
        .import_supplier(org(), &id, fx_supplier(), UPDATED, CREATED)
        .await;
    assert_eq!(field(r), "updated_at");
    app.get(&format!("/v1/catalog/suppliers/{id}"))
        .await
        .assert_status(StatusCode::NOT_FOUND);

    let cases = [
        ("sku", fx_product("ham 1", None), 0),
        ("on_hand", fx_product("HAM-2", None), -1),
        (
            "supplier_id",
            fx_product("HAM-2", Some(import_id(CREATED, 99))),
            0,
        ),
        ("sku", fx_product("TAKEN", None), 3),
    ];
    for (expected, fields, on_hand) in cases {
        let r = store
            .import_product(org(), &id, fields, on_hand, CREATED, UPDATED)
            .await;
        assert_eq!(field(r), expected);
        app.get(&format!("/v1/catalog/products/{id}"))
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
}

async fn concurrent_imports_of_one_product_write_it_once(app: CatalogApp) {
    let store = store(&app);
    let supplier = import_id(CREATED, 20);
    store
        .import_supplier(org(), &supplier, fx_supplier(), CREATED, UPDATED)
        .await
        .unwrap();
    let product = import_id(CREATED, 21);
    let import = || {
        store.import_product(
            org(),
            &product,
            fx_product("RACE-1", Some(supplier.clone())),
            7,
            CREATED,
            UPDATED,
        )
    };
    let (a, b) = tokio::join!(import(), import());
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| o.created());
    assert_eq!(outcomes, [Imported::AlreadyPresent, Imported::Created]);
    let p = app
        .get(&format!("/v1/catalog/products/{product}"))
        .await
        .json();
    assert_eq!(p["stock"]["on_hand"], 7);
}

async fn stock_and_movements(app: &CatalogApp, product: &str) -> (serde_json::Value, usize) {
    let path = format!("/v1/catalog/products/{product}");
    let stock = app.get(&format!("{path}/stock")).await.json();
    let movements = app.get(&format!("{path}/stock/movements")).await.json();
    (stock, movements["items"].as_array().unwrap().len())
}

async fn an_imported_reservation_is_written_once_however_often_or_concurrently_imported(
    app: CatalogApp,
) {
    let store = store(&app);
    let product = import_id(CREATED, 50);
    store
        .import_product(
            org(),
            &product,
            fx_product("RES-1", None),
            10,
            CREATED,
            UPDATED,
        )
        .await
        .unwrap();
    let order = import_id(CREATED, 51);
    let lines = [(product.clone(), 3)];
    let import = || store.import_reservation(org(), &order, &lines, RESERVED);
    assert_eq!(import().await.unwrap(), Imported::Created);
    let path = format!("/v1/catalog/products/{product}");
    let etag = app.get(&path).await.header("etag").unwrap().to_owned();
    let (stock, _) = stock_and_movements(&app, &product).await;
    assert_eq!(stock, json!({"on_hand": 10, "reserved": 3, "available": 7}));
    // The movement `reserve` writes, at the reservation's time.
    let movements = app.get(&format!("{path}/stock/movements")).await.json();
    assert_eq!(
        movements["items"][0],
        json!({"at": "2020-08-01T09:30:00Z", "reason": "reserved", "on_hand_delta": 0,
               "reserved_delta": 3, "actor": null, "order_id": order})
    );

    // Again: nothing written.
    assert_eq!(import().await.unwrap(), Imported::AlreadyPresent);
    assert_eq!(app.get(&path).await.header("etag"), Some(etag.as_str()));
    assert_eq!(
        stock_and_movements(&app, &product).await,
        (stock.clone(), 2)
    );

    // Two at once: one writes it.
    let order = import_id(CREATED, 52);
    let lines = [(product.clone(), 4)];
    let import = || store.import_reservation(org(), &order, &lines, RESERVED);
    let (a, b) = tokio::join!(import(), import());
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| o.created());
    assert_eq!(outcomes, [Imported::AlreadyPresent, Imported::Created]);
    assert_eq!(
        stock_and_movements(&app, &product).await,
        (json!({"on_hand": 10, "reserved": 7, "available": 3}), 3)
    );
}

async fn a_reservation_beyond_available_stock_is_refused_on_quantity_and_writes_nothing(
    app: CatalogApp,
) {
    let store = store(&app);
    let a = import_id(CREATED, 60);
    let b = import_id(CREATED, 61);
    for (id, sku, on_hand) in [(&a, "OVER-A", 10), (&b, "OVER-B", 2)] {
        store
            .import_product(org(), id, fx_product(sku, None), on_hand, CREATED, UPDATED)
            .await
            .unwrap();
    }
    let first = import_id(CREATED, 62);
    store
        .import_reservation(org(), &first, &[(a.clone(), 5)], RESERVED)
        .await
        .unwrap();
    let before = [
        stock_and_movements(&app, &a).await,
        stock_and_movements(&app, &b).await,
    ];
    let field = |r: Result<Imported, CatalogError>| match r {
        Err(CatalogError::Invalid(e)) => e.field,
        other => panic!("{other:?}"),
    };
    let order = import_id(CREATED, 63);
    let missing = import_id(CREATED, 64);
    type Lines = Vec<(String, u32)>;
    let cases: [(&str, &str, Lines); 6] = [
        // A's 5 available fit; B has only 2: neither is reserved.
        ("quantity", &order, vec![(a.clone(), 5), (b.clone(), 3)]),
        ("quantity", &order, vec![(a.clone(), 6)]),
        ("quantity", &order, vec![(a.clone(), 0)]),
        ("product_id", &order, vec![(a.clone(), 1), (missing, 1)]),
        ("lines", &order, vec![(a.clone(), 1), (a.clone(), 1)]),
        ("order_id", "legacy-7", vec![(a.clone(), 1)]),
    ];
    for (expected, order, lines) in cases {
        let r = store
            .import_reservation(org(), order, &lines, RESERVED)
            .await;
        assert_eq!(field(r), expected, "{lines:?}");
        let after = [
            stock_and_movements(&app, &a).await,
            stock_and_movements(&app, &b).await,
        ];
        assert_eq!(after, before);
    }
    // No record was left for the order: what fits is reserved.
    assert_eq!(
        store
            .import_reservation(org(), &order, &[(a.clone(), 5), (b.clone(), 2)], RESERVED)
            .await
            .unwrap(),
        Imported::Created
    );
    assert_eq!(
        stock_and_movements(&app, &b).await.0,
        json!({"on_hand": 2, "reserved": 2, "available": 0})
    );
    // An archived product holds no reservation.
    let archived = import_id(CREATED, 65);
    store
        .import_product(
            org(),
            &archived,
            fx_product("OVER-C", None),
            4,
            CREATED,
            UPDATED,
        )
        .await
        .unwrap();
    store.archive_product(org(), &archived).await.unwrap();
    let r = store
        .import_reservation(
            org(),
            &import_id(CREATED, 66),
            &[(archived.clone(), 1)],
            RESERVED,
        )
        .await;
    assert_eq!(field(r), "product_id");
    // An inactive one does: the order was confirmed before.
    let inactive = import_id(CREATED, 67);
    let mut fields = fx_product("OVER-D", None);
    fields.active = false;
    store
        .import_product(org(), &inactive, fields, 4, CREATED, UPDATED)
        .await
        .unwrap();
    let r = store
        .import_reservation(org(), &import_id(CREATED, 68), &[(inactive, 1)], RESERVED)
        .await;
    assert_eq!(r.unwrap(), Imported::Created);
}

/// What the service writes through its store and its importer, every
/// kind of item (supplier, product, SKU claim, movement, each reservation
/// state): each must pass `check_item` (what `constellation import` runs on
/// an export), except the kinds never exported.
async fn every_stored_item_passes_the_import_check(app: CatalogApp) {
    use constellation_catalog::domain::Reason;
    use constellation_core::orders::{OrderPlaced, PlacedLine};
    let (store, table) = constellation_catalog::store(app.service.context("catalog")).unwrap();
    let supplier = store.create_supplier(org(), fx_supplier()).await.unwrap();
    let live = store
        .create_product(org(), fx_product("LIVE-1", Some(supplier.id.clone())))
        .await
        .unwrap();
    let adjuster = "ab".repeat(16);
    store
        .adjust(org(), &live.id, 20, Reason::Received, &adjuster)
        .await
        .unwrap();
    let order = |seed: u128, quantity: u32| OrderPlaced {
        order_id: import_id(RESERVED, seed),
        placed_by: adjuster.clone(),
        lines: vec![PlacedLine {
            product_id: live.id.clone(),
            quantity,
        }],
    };
    for (seed, settle) in [(11, Some(true)), (12, Some(false)), (13, None)] {
        store.reserve(org(), &order(seed, 2)).await.unwrap();
        if let Some(ship) = settle {
            store
                .settle(org(), &import_id(RESERVED, seed), ship)
                .await
                .unwrap();
        }
    }
    store.reserve(org(), &order(14, 999)).await.unwrap(); // rejected
    store
        .settle(org(), &import_id(RESERVED, 15), false)
        .await
        .unwrap(); // cancelled before placed
    let other = store
        .create_product(org(), fx_product("GONE-1", None))
        .await
        .unwrap();
    store.archive_product(org(), &other.id).await.unwrap();
    let legacy_supplier = import_id(CREATED, 21);
    store
        .import_supplier(org(), &legacy_supplier, fx_supplier(), CREATED, UPDATED)
        .await
        .unwrap();
    let legacy = import_id(CREATED, 22);
    store
        .import_product(
            org(),
            &legacy,
            fx_product("OLD-1", Some(legacy_supplier)),
            30,
            CREATED,
            UPDATED,
        )
        .await
        .unwrap();
    store
        .import_reservation(org(), &import_id(RESERVED, 23), &[(legacy, 3)], RESERVED)
        .await
        .unwrap();
    let checked = check_every_item(
        table.as_ref(),
        NEVER_EXPORTED,
        constellation_catalog::store::check_item,
    )
    .await;
    let kinds: std::collections::BTreeSet<String> = checked
        .into_iter()
        .map(|k| k.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["MOV", "PROD", "RES", "SKUIDX", "SUP"]
    );
}
