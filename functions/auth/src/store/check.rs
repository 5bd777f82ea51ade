//! Whether an item is an auth record this build can serve: the check an
//! import of an export runs on each record before writing it, with the
//! rules the API applies (an email as `Email` parses it, a role, an
//! organization name, a password hash login can verify).

use constellation_core::OrgId;
use constellation_core::auth::Email;
use constellation_platform::observe::error_chain;
use constellation_platform::table::Item;

use super::accounts::{EmailClaim, StoredAccount};
use super::audit::AuditRecord;
use super::orgs::{OrgName, OrgRecord};
use super::read_record;
use crate::password::validate_stored_hash;

/// `Ok` when `item` is a valid auth record, or why it is not.
pub fn check_item(item: &Item) -> Result<(), String> {
    let (pk, sk) = (item.key.pk.as_str(), item.key.sk.as_str());
    let segments: Vec<&str> = pk.split('#').collect();
    match segments.as_slice() {
        ["EMAIL", address] => {
            let email = Email::parse(address).map_err(|e| error_chain(&e))?;
            if email.as_str() != *address || sk != "EMAIL" {
                return Err(format!("`{pk}` / `{sk}` is not an email claim as stored"));
            }
            read_record::<EmailClaim>(item).map_err(|e| error_chain(&e))?;
            Ok(())
        }
        ["ORG", org] => {
            OrgId::parse(org).map_err(|e| error_chain(&e))?;
            if sk == "ORG" {
                let record: OrgRecord = read_record(item).map_err(|e| error_chain(&e))?;
                OrgName::parse(&record.name).map_err(|e| error_chain(&e))?;
                if record.owners < 0 {
                    return Err("owners: must not be negative".to_owned());
                }
                if item.gsi1.is_none() {
                    return Err("an organization without its index entry".to_owned());
                }
                Ok(())
            } else if sk.starts_with("ACCOUNT#") {
                let stored = StoredAccount::from_item(item).map_err(|e| error_chain(&e))?;
                validate_stored_hash(&stored.password_hash).map_err(|e| error_chain(&e))
            } else {
                Err(format!("`{sk}` is not an auth record of an organization"))
            }
        }
        ["ORG", org, "AUDIT"] => {
            OrgId::parse(org).map_err(|e| error_chain(&e))?;
            read_record::<AuditRecord>(item).map_err(|e| error_chain(&e))?;
            Ok(())
        }
        ["INSTALLATION", "AUDIT"] => {
            read_record::<AuditRecord>(item).map_err(|e| error_chain(&e))?;
            Ok(())
        }
        _ => Err(format!("`{pk}` is not an auth record")),
    }
}
