//! What export leaves out, what kind a record is, and which organization it
//! belongs to: the knowledge of each service's key layout that moving data
//! needs, in one place.

use constellation_core::OrgId;
use constellation_platform::table::Item;

/// Which items a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher {
    /// The partition key starts with this.
    PkPrefix(&'static str),
    /// The partition key's third `#`-segment is this (`ORG#<org>#FAMILY#..`).
    PkThirdSegment(&'static str),
    /// The sort key starts with this.
    SkPrefix(&'static str),
}

/// Records never exported (nor imported): secrets, and bookkeeping that
/// belongs to one running installation. `None` as the service means every
/// service. Signing keys and cursor keys live in Secrets Manager (or the
/// local secrets file), never in a table, so no rule is needed for them.
pub const EXCLUDED: &[(Option<&str>, Matcher, &str)] = &[
    // Events not yet relayed to the bus: the target's own relay would
    // publish them a second time.
    (
        None,
        Matcher::PkPrefix("OUTBOX#"),
        "outbox record (unpublished event)",
    ),
    // Which events a consumer has handled: belongs to this installation's bus.
    (None, Matcher::PkPrefix("INBOX#"), "inbox claim"),
    // Stored responses of idempotent requests: short-lived, per client.
    (None, Matcher::PkPrefix("IDEM#"), "idempotency record"),
    // auth/store/sessions.rs: hashed refresh tokens, a bearer secret.
    (Some("auth"), Matcher::PkPrefix("REFRESH#"), "refresh token"),
    // auth/store/sessions.rs: `ORG#<org>#FAMILY#<family>`, a login session.
    (Some("auth"), Matcher::PkThirdSegment("FAMILY"), "session"),
    // auth/store/invites.rs: `INVITE#<digest>`, an invite token's claim.
    (Some("auth"), Matcher::PkPrefix("INVITE#"), "invite token"),
    // auth/store/invites.rs: the pending invite in the organization's partition.
    (Some("auth"), Matcher::SkPrefix("INVITE#"), "invite"),
    // auth/store/lockout.rs: `LOCK#<kind>#<subject>`, failed-login counters.
    (Some("auth"), Matcher::PkPrefix("LOCK#"), "lockout counter"),
    // comms/store/report.rs: `REPORTRUN`, how far one installation's daily
    // report run got (the reports themselves are `REPORT#<org>`).
    (
        Some("comms"),
        Matcher::PkPrefix("REPORTRUN"),
        "daily report run progress",
    ),
];

/// Kinds whose partition key does not carry the organization, and where it
/// is instead: `Some(attribute)`, or `None` for installation-wide records
/// (exported only without `--org`).
pub const ORG_ELSEWHERE: &[(&str, Option<&str>)] = &[
    // auth/store/accounts.rs: `EMAIL#<email>`, the claim of an address,
    // with the account's `org` as an attribute.
    ("auth.email", Some("org")),
    // auth/store/audit.rs: `INSTALLATION#AUDIT`, audit events of no organization.
    ("auth.installation", None),
];

/// Kinds that claim something unique for one record (an email for an
/// account, a SKU for a product), and the attribute naming that record.
/// Import refuses such a claim when the target holds it for another record.
pub const CLAIMS: &[(&str, &str)] = &[
    // auth/store/accounts.rs: `EMAIL#<email>` → its account.
    ("auth.email", "account"),
    // catalog/store/mod.rs: `SKUIDX#<org>` / sku → its product.
    ("catalog.skuidx", "product"),
];

/// Why an item is never exported, if it is not.
pub fn excluded(service: &str, pk: &str, sk: &str) -> Option<&'static str> {
    EXCLUDED.iter().find_map(|(svc, matcher, why)| {
        if svc.is_some_and(|s| s != service) {
            return None;
        }
        let hit = match matcher {
            Matcher::PkPrefix(p) => pk.starts_with(p),
            Matcher::PkThirdSegment(s) => pk.split('#').nth(2) == Some(s),
            Matcher::SkPrefix(p) => sk.starts_with(p),
        };
        hit.then_some(*why)
    })
}

/// The kind of an item of `service`: `<service>.<pk prefix before the first
/// '#', lower-cased>`.
pub fn kind_of(service: &str, pk: &str) -> String {
    let prefix = pk.split('#').next().unwrap_or(pk);
    format!("{service}.{}", prefix.to_ascii_lowercase())
}

/// Where an item's organization is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgOf {
    /// It belongs to this organization.
    Org(OrgId),
    /// It belongs to the installation, not to an organization.
    Installation,
}

/// The organization an item of `kind` belongs to: the partition key's
/// second `#`-segment (`NS#<org>#<ns>`, `ORG#<org>`, `NOTE#<org>#<account>`:
/// every service puts it there), except for the kinds in [`ORG_ELSEWHERE`].
pub fn org_of(kind: &str, item: &Item) -> Result<OrgOf, String> {
    let raw = match ORG_ELSEWHERE.iter().find(|(k, _)| *k == kind) {
        Some((_, None)) => return Ok(OrgOf::Installation),
        Some((_, Some(attr))) => item
            .str(attr)
            .ok_or_else(|| format!("no `{attr}` attribute naming the organization"))?,
        None => item
            .key
            .pk
            .split('#')
            .nth(1)
            .ok_or_else(|| "the partition key has no organization segment".to_owned())?,
    };
    OrgId::parse(raw)
        .map(OrgOf::Org)
        .map_err(|e| format!("organization `{raw}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use constellation_platform::table::ItemKey;

    #[test]
    fn secrets_are_excluded_and_data_is_not() {
        assert!(excluded("auth", "REFRESH#abc", "REFRESH").is_some());
        assert!(excluded("auth", "ORG#acme#FAMILY#f1", "FAMILY").is_some());
        assert!(excluded("auth", "ORG#acme", "INVITE#1").is_some());
        assert!(excluded("kv", "OUTBOX#3", "x").is_some());
        assert!(excluded("auth", "ORG#acme", "ACCOUNT#1").is_none());
        assert!(excluded("auth", "ORG#acme#AUDIT", "x").is_none());
        assert!(excluded("comms", "NOTE#acme#a", "x").is_none());
    }

    #[test]
    fn kinds_and_organizations() {
        assert_eq!(kind_of("kv", "NS#acme#ns"), "kv.ns");
        assert_eq!(kind_of("comms", "DUE"), "comms.due");
        let item = Item::new(ItemKey::new("NS#acme#ns", "k"));
        assert_eq!(
            org_of("kv.ns", &item),
            Ok(OrgOf::Org(
                OrgId::parse("acme").unwrap_or_else(|e| panic!("{e}"))
            ))
        );
        assert!(org_of("kv.ns", &Item::new(ItemKey::new("NS", "k"))).is_err());
        let email = Item::new(ItemKey::new("EMAIL#a@b.c", "EMAIL")).with("org", "acme");
        assert!(matches!(org_of("auth.email", &email), Ok(OrgOf::Org(_))));
    }
}
