//! The order saga's contract between the orders and catalog services: the
//! event types each publishes and the data they carry. Orders publishes
//! `order.*`, catalog answers with `stock.*`; neither reads the other's
//! table.
//!
//! ```text
//! orders                        bus                        catalog
//!   POST /v1/orders ──── order.placed ───────────────────▶ reserve all lines or none
//!   confirmed ◀──────── stock.reserved (prices, SKUs) ◀───┘ (or stock.rejected + reason)
//!   cancel ───────────── order.cancelled ────────────────▶ release the reservation
//!   ship ─────────────── order.shipped ──────────────────▶ on_hand -= reserved lines
//! ```

use serde::{Deserialize, Serialize};

pub mod rules;

/// Event types of the saga.
pub mod events {
    /// An order was placed (orders → catalog).
    pub const PLACED: &str = "order.placed";
    /// A pending order was confirmed (orders → anyone).
    pub const CONFIRMED: &str = "order.confirmed";
    /// A pending order was rejected (orders → anyone).
    pub const REJECTED: &str = "order.rejected";
    /// An order was cancelled (orders → catalog).
    pub const CANCELLED: &str = "order.cancelled";
    /// An order was shipped (orders → catalog).
    pub const SHIPPED: &str = "order.shipped";
    /// Every line of an order is reserved (catalog → orders).
    pub const STOCK_RESERVED: &str = "stock.reserved";
    /// An order could not be reserved (catalog → orders).
    pub const STOCK_REJECTED: &str = "stock.rejected";
    /// A product's available stock fell below its reorder level (catalog → anyone).
    pub const INVENTORY_LOW: &str = "inventory.low";
}

/// The most lines an order has.
pub const MAX_LINES: usize = 50;
/// The largest quantity of one line.
pub const MAX_QUANTITY: u32 = 1000;

/// One line as placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedLine {
    /// The product.
    pub product_id: String,
    /// How many, 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
}

/// The data of [`events::PLACED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// Who placed it.
    pub placed_by: String,
    /// Its lines: 1 to [`MAX_LINES`], distinct products.
    pub lines: Vec<PlacedLine>,
}

/// Money on the wire: a decimal string and an ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMoney {
    /// `"12.34"`, with exactly the currency's decimals.
    pub amount: String,
    /// `"EUR"`.
    pub currency: String,
}

/// One reserved line, priced when it was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    /// The product.
    pub product_id: String,
    /// Its SKU then.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Its unit price then.
    pub unit_price: WireMoney,
}

/// The data of [`events::STOCK_RESERVED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    /// The order.
    pub order_id: String,
    /// Every line, in the order's order.
    pub lines: Vec<ReservedLine>,
}

/// The data of [`events::STOCK_REJECTED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRejected {
    /// The order.
    pub order_id: String,
    /// Why, naming the product: `unknown-product`, `archived-product`,
    /// `insufficient-stock` or `mixed-currencies`.
    pub reason: String,
    /// The product at fault.
    pub product_id: Option<String>,
}

/// What catalog reads of [`events::CANCELLED`] and [`events::SHIPPED`]
/// (whose data is an [`OrderChanged`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRef {
    /// The order.
    pub order_id: String,
}

/// The data of [`events::CANCELLED`] and [`events::SHIPPED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChanged {
    /// The order.
    pub order_id: String,
    /// Who placed it.
    pub placed_by: String,
    /// Its exact total, once it was priced (a confirmed order's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<WireMoney>,
}

/// The data of [`events::CONFIRMED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: String,
    /// Who placed it.
    pub placed_by: String,
    /// Its exact total.
    pub total: WireMoney,
}

/// The data of [`events::REJECTED`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    /// The order.
    pub order_id: String,
    /// Who placed it.
    pub placed_by: String,
    /// Catalog's reason.
    pub reason: String,
    /// The product at fault.
    pub product_id: Option<String>,
}
