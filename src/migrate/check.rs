//! The domain check of one exported record: each service's own rules over
//! its stored records (`check_item` next to the code that reads them), so
//! an import refuses a record the service could not serve — a malformed
//! email, a negative amount, an unparsable date — as the API would have.

use constellation_platform::table::Item;

/// `Ok` when `item`, a record of `service`'s table, passes that service's
/// rules, or why not.
pub fn check(service: &str, item: &Item) -> Result<(), String> {
    match service {
        "auth" => constellation_auth::store::check_item(item),
        "kv" => constellation_kv::store::check_item(item),
        "media" => constellation_media::store::check_item(item),
        "expenses" => constellation_expenses::store::check_item(item),
        "catalog" => constellation_catalog::store::check_item(item),
        "orders" => constellation_orders::store::check_item(item),
        "comms" => constellation_comms::store::check_item(item),
        other => Err(format!("no rules for records of `{other}`")),
    }
}
