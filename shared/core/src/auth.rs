//! Identity and permission rules: roles, account ids, emails, password
//! policy and access-token claims.
//!
//! Pure rules only: password hashing and storage live in the auth service,
//! the token format in [`crate::token`]; this module decides what is allowed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{OrgId, ValidationError};

/// A role within an organization, ordered by power:
/// `Member < Staff < Admin < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the organization's data.
    Member,
    /// Also writes it.
    Staff,
    /// Also manages accounts, invites and roles (up to their own).
    Admin,
    /// Everything, including other owners.
    Owner,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Self::Member, Self::Staff, Self::Admin, Self::Owner];

    /// Parses `owner`, `admin`, `staff` or `member`.
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "staff" => Ok(Self::Staff),
            "member" => Ok(Self::Member),
            _ => Err(ValidationError::new(
                field,
                "must be one of owner, admin, staff, member",
            )),
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Staff => "staff",
            Self::Member => "member",
        }
    }

    /// Whether this role grants at least `required`.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }

    /// Whether someone with this role may give `target` (currently holding
    /// `current`) the role `new`: admins and owners only, never above their
    /// own role, and never over someone above their own role.
    pub fn may_assign(self, current: Role, new: Role) -> bool {
        self.allows(Role::Admin) && new <= self && current <= self
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hex digits in an account id.
pub const ACCOUNT_ID_HEX_DIGITS: usize = 32;

/// [`AccountId::parse`]'s rule as a regular expression, for the OpenAPI document.
pub fn account_id_pattern() -> String {
    format!("^[0-9a-f]{{{ACCOUNT_ID_HEX_DIGITS}}}$")
}

/// An account id (a UUID in simple form: 32 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// Makes an id from 16 random bytes supplied by the caller.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut s = String::with_capacity(32);
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    /// Parses an id.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if raw.len() == ACCOUNT_ID_HEX_DIGITS
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValidationError::new("id", "is not an account id"))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::validation::text_newtype!(AccountId);

/// The longest email address, in bytes once trimmed and lowercased.
pub const MAX_EMAIL_BYTES: usize = 254;
/// The longest local part (before the `@`), in bytes.
pub const MAX_EMAIL_LOCAL_BYTES: usize = 64;

/// [`Email::parse`]'s rule as a regular expression, for the OpenAPI
/// document, over the addresses it can state exactly: printable ASCII
/// without spaces, a local part of at most [`MAX_EMAIL_LOCAL_BYTES`]
/// characters, one `@`, and a domain of dot-separated labels (the total of
/// [`MAX_EMAIL_BYTES`] is the schema's `maxLength`). A pattern counts
/// characters while the rule counts bytes, and a length bound cannot see
/// past surrounding whitespace, so the two things `parse` also accepts,
/// internationalized addresses (up to the same byte limits) and surrounding
/// whitespace (trimmed), are left to the document's words.
pub fn email_pattern() -> String {
    // `!` to `~` without `@`; labels also without `.`.
    let local = "[\\u0021-\\u003f\\u0041-\\u007e]";
    let label = "[\\u0021-\\u002d\\u002f-\\u003f\\u0041-\\u007e]+";
    format!("^{local}{{1,{MAX_EMAIL_LOCAL_BYTES}}}@{label}(?:\\.{label})+$")
}

/// An email address, normalised: trimmed and lowercased, so that one address
/// is one account per installation however it is typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses and normalises an address: `local@domain`, at most 254
    /// characters, no spaces or control characters, a dot in the domain.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let normal = raw.trim().to_lowercase();
        let valid = normal.len() <= MAX_EMAIL_BYTES
            && !normal.chars().any(|c| c.is_whitespace() || c.is_control())
            && normal.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= MAX_EMAIL_LOCAL_BYTES
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            });
        if valid {
            Ok(Self(normal))
        } else {
            Err(ValidationError::new(
                "email",
                "is not a valid email address",
            ))
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::validation::text_newtype!(Email);

/// The shortest password accepted, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted, in characters (bounds hashing cost).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Passwords refused outright: the most common ones of at least 12
/// characters in public breach corpora.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678901234",
    "123456789123",
    "111111111111",
    "000000000000",
    "123123123123",
    "qwertyuiopas",
    "qwertyuiop123",
    "qwerty123456",
    "password1234",
    "password12345",
    "password123!",
    "passwordpassword",
    "password@123",
    "iloveyou1234",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "qazwsxedcrfv",
    "zaq12wsxcde3",
    "abcdefghijkl",
    "abc123456789",
    "aaaaaaaaaaaa",
    "letmein12345",
    "welcome12345",
    "welcome@1234",
    "administrator",
    "admin1234567",
    "changeme1234",
    "trustno11234",
    "monkey123456",
    "dragon123456",
    "football1234",
    "baseball1234",
    "sunshine1234",
    "princess1234",
    "superman1234",
    "michael12345",
    "whatever1234",
    "starwars1234",
    "qwertyqwerty",
    "asdfghjkl123",
    "zxcvbnm12345",
    "p@ssw0rd1234",
    "passw0rd1234",
    "correcthorsebatterystaple",
    "1234qwerasdf",
    "q1w2e3r4t5y6",
    "987654321098",
];

/// The passwords [`Password::new_for`] refuses outright (compared
/// case-insensitively), for the OpenAPI document.
pub fn common_passwords() -> &'static [&'static str] {
    COMMON_PASSWORDS
}

/// A password that meets the policy. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(**redacted**)")
    }
}

impl Password {
    /// Checks a new password: 12-128 characters, not the email address, not
    /// one of the most common passwords.
    pub fn new_for(raw: &str, email: &Email) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
            return Err(ValidationError::new(
                "password",
                format!("must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        let lower = raw.to_lowercase();
        if lower == email.as_str() || lower == email.as_str().split('@').next().unwrap_or_default()
        {
            return Err(ValidationError::new(
                "password",
                "must not be your email address",
            ));
        }
        if COMMON_PASSWORDS.contains(&lower.as_str()) {
            return Err(ValidationError::new(
                "password",
                "is one of the most common passwords",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A password presented at login: only the length bound applies (so a
    /// 10 MB body cannot make the server hash 10 MB).
    pub fn presented(raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.chars().count() > MAX_PASSWORD_CHARS {
            return Err(ValidationError::new("password", "is not a valid password"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password itself, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The claims of an access token (a JWT signed with EdDSA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The account.
    pub sub: AccountId,
    /// The account's organization.
    pub org: OrgId,
    /// The account's role when the token was issued.
    pub role: Role,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before (unix seconds).
    pub nbf: i64,
    /// Unique token id.
    pub jti: String,
}

/// Who is calling, as established from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account.
    pub account: AccountId,
    /// Its organization: every read and write is scoped to it.
    pub org: OrgId,
    /// Its role.
    pub role: Role,
}

impl From<&Claims> for Principal {
    fn from(c: &Claims) -> Self {
        Self {
            account: c.sub.clone(),
            org: c.org.clone(),
            role: c.role,
        }
    }
}

/// A caller of org `acme` with `role`, its account id `id` repeated (the
/// rules' unit tests).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_principal(role: Role, id: u8) -> Principal {
    Principal {
        account: AccountId::from_bytes([id; 16]),
        org: OrgId::parse("acme").unwrap(),
        role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_assignment_never_escalates() {
        assert!(Role::Owner.allows(Role::Admin) && !Role::Staff.allows(Role::Admin));
        assert!(Role::Admin.may_assign(Role::Member, Role::Staff));
        assert!(Role::Admin.may_assign(Role::Member, Role::Admin));
        assert!(
            !Role::Admin.may_assign(Role::Member, Role::Owner),
            "above own role"
        );
        assert!(
            !Role::Admin.may_assign(Role::Owner, Role::Member),
            "over a higher role"
        );
        assert!(
            !Role::Staff.may_assign(Role::Member, Role::Member),
            "staff manage nobody"
        );
        assert!(Role::Owner.may_assign(Role::Owner, Role::Admin));
        assert_eq!(Role::parse("role", "admin"), Ok(Role::Admin));
        assert!(Role::parse("role", "root").is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.to_string()),
            Ok("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@.com",
            "ada@example..com",
        ] {
            assert_eq!(
                Email::parse(bad).map_err(|e| e.field),
                Err("email"),
                "{bad}"
            );
        }
    }

    #[test]
    fn password_policy() {
        let email = Email::parse("ada@example.com").unwrap_or_else(|e| panic!("{e}"));
        assert!(Password::new_for("correct horse battery", &email).is_ok());
        assert!(Password::new_for("short", &email).is_err());
        assert!(Password::new_for(&"x".repeat(129), &email).is_err());
        assert!(Password::new_for("ADA@example.com", &email).is_err());
        assert!(Password::new_for("Password1234", &email).is_err());
        assert!(
            !format!(
                "{:?}",
                Password::presented("hunter2hunter2").unwrap_or_else(|e| panic!("{e}"))
            )
            .contains("hunter2")
        );
    }
}
