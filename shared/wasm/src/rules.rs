//! Every function of the package as plain Rust over JSON values, so that the
//! native tests call exactly what the WebAssembly exports call.
//!
//! A validator answers an outcome, `{"ok": true, "value": ..}` with the value
//! as the service would keep it (trimmed, normalised), or
//! `{"ok": false, "problem": ..}` with the problem+json body the API answers
//! for the same input: `type` `urn:constellation:problem:invalid-input`
//! naming the `field` at fault, and `detail` as `"<field>: <reason>"`
//! (shared/web's `ApiError::from(ValidationError)`). Inputs of the wrong JSON
//! shape (a number where text belongs, an unknown field) answer
//! `malformed-body`, as the API's JSON extractor does. The rules themselves
//! are `constellation_core`'s; this module only reads the inputs, calls them
//! in the order the handlers do, and writes the answer.
//!
//! `Err(String)` is a caller mistake that no form input causes (a `now` that
//! is not a time, a key set that is not JSON): the exports throw it.

use constellation_core::ValidationError;
use constellation_core::auth::{Email, Password};
use constellation_core::kv::{Key, Namespace};
use constellation_core::money::{Currency, Money, format_minor};
use constellation_core::orders::rules as orders;
use constellation_core::token::{Expected, Jwk, Jwks, Rejection};
use constellation_core::{catalog, comms, expenses};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The `type` of the API's answer to an input that failed validation.
pub const INVALID_INPUT: &str = "urn:constellation:problem:invalid-input";
/// The `type` of the API's answer to a body of the wrong JSON shape.
pub const MALFORMED_BODY: &str = "urn:constellation:problem:malformed-body";

/// A problem+json body, as the API renders it (without `request_id`).
#[derive(Debug)]
pub struct Problem(Value);

impl Problem {
    fn new(kind: &str, title: &str, field: &str, reason: &str) -> Self {
        Self(json!({
            "type": kind,
            "title": title,
            "status": 400,
            "detail": format!("{field}: {reason}"),
            "field": field,
        }))
    }

    fn invalid(field: &str, reason: &str) -> Self {
        Self::new(INVALID_INPUT, "Invalid input", field, reason)
    }

    fn malformed(field: &str, reason: &str) -> Self {
        Self::new(MALFORMED_BODY, "Malformed request body", field, reason)
    }
}

impl From<ValidationError> for Problem {
    fn from(e: ValidationError) -> Self {
        Self::invalid(e.field, &e.reason)
    }
}

impl From<orders::Invalid> for Problem {
    fn from(e: orders::Invalid) -> Self {
        Self::invalid(&e.field, &e.reason)
    }
}

type Checked<T> = Result<T, Problem>;

fn outcome(checked: Checked<Value>) -> Value {
    match checked {
        Ok(value) => json!({ "ok": true, "value": value }),
        Err(Problem(problem)) => json!({ "ok": false, "problem": problem }),
    }
}

/// The instant `now` Unix seconds name (fractions are dropped).
fn instant(now: f64) -> Result<OffsetDateTime, String> {
    if !now.is_finite() {
        return Err("now: must be a time in Unix seconds".into());
    }
    #[allow(clippy::cast_possible_truncation)]
    let seconds = now.floor() as i64;
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|_| "now: must be a time in Unix seconds".to_owned())
}

/// How serde names a JSON value it did not expect (`invalid type: <this>`).
fn unexpected(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        // Not the number itself: writing a float would pull core's float
        // formatting (15 KB) into the package for an error message.
        Value::Number(n) if n.is_f64() => "floating point".into(),
        Value::Number(_) => "integer".into(),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    }
}

/// A request body: a JSON object of known fields, read as the API's
/// extractor reads it (unknown fields refused, `path` prefixing nested names).
struct Body<'a> {
    map: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Body<'a> {
    fn new(input: &'a Value, path: &'a str, fields: &[&str]) -> Checked<Self> {
        let Some(map) = input.as_object() else {
            let field = if path.is_empty() { "body" } else { path };
            return Err(Problem::malformed(
                field,
                &format!(
                    "invalid type: {}, expected a JSON object",
                    unexpected(input)
                ),
            ));
        };
        if let Some(name) = map.keys().find(|k| !fields.contains(&k.as_str())) {
            let expected = fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Problem::malformed(
                name,
                &format!("unknown field `{name}`, expected one of {expected}"),
            ));
        }
        Ok(Self { map, path })
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    fn wrong(&self, field: &str, v: &Value, expected: &str) -> Problem {
        Problem::malformed(
            &self.name(field),
            &format!("invalid type: {}, expected {expected}", unexpected(v)),
        )
    }

    /// A field that may be absent (`None`) but not `null`.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field)
    }

    fn required(&self, field: &str) -> Checked<&'a Value> {
        self.get(field).ok_or_else(|| {
            Problem::malformed(&self.name(field), &format!("missing field `{field}`"))
        })
    }

    fn text(&self, field: &str) -> Checked<&'a str> {
        let v = self.required(field)?;
        v.as_str().ok_or_else(|| self.wrong(field, v, "a string"))
    }

    fn optional_text(&self, field: &str) -> Checked<Option<&'a str>> {
        self.get(field)
            .map(|v| v.as_str().ok_or_else(|| self.wrong(field, v, "a string")))
            .transpose()
    }
}

/// A whole number as the API reads one: `3` or `3.0`, within ±2^53.
fn whole(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Some(f as i64)
        }
        _ => None,
    }
}

// ------------------------------------------------------------------ kv, auth

/// A kv namespace (`PUT /v1/kv/{namespace}/...`).
pub fn kv_namespace(raw: &str) -> Value {
    outcome(
        Namespace::parse(raw)
            .map(|n| json!(n.as_str()))
            .map_err(Into::into),
    )
}

/// A kv key.
pub fn kv_key(raw: &str) -> Value {
    outcome(
        Key::parse(raw)
            .map(|k| json!(k.as_str()))
            .map_err(Into::into),
    )
}

/// An email address; the value is the normalised address the account keeps.
pub fn email(raw: &str) -> Value {
    outcome(
        Email::parse(raw)
            .map(|e| json!(e.as_str()))
            .map_err(Into::into),
    )
}

/// A new password for the account of `email` (sign-up, reset): the email
/// first, then the password policy.
pub fn password(password: &str, email: &str) -> Value {
    outcome((|| {
        let email = Email::parse(email)?;
        Password::new_for(password, &email)?;
        Ok(Value::Null)
    })())
}

// ------------------------------------------------------------------ money

fn money_value(m: &Money) -> Value {
    json!({
        "amount": m.amount_string(),
        "currency": m.currency().code(),
        "minor": m.minor(),
    })
}

/// An amount in a currency, both as sent: the value is the amount written
/// with the currency's decimals, and its count of minor units.
pub fn parse_money(amount: &str, currency: &str) -> Value {
    outcome((|| {
        let currency = Currency::parse("currency", currency)?;
        Ok(money_value(&Money::parse("amount", amount, currency)?))
    })())
}

/// The exact sum of `amounts` (each as [`parse_money`] reads it, named
/// `amounts[i]`) in `currency`; `minor` is a decimal string, as a sum may
/// exceed what a JavaScript number holds exactly.
pub fn sum_amounts(amounts: &Value, currency: &str) -> Value {
    outcome((|| {
        let currency = Currency::parse("currency", currency)?;
        let Some(items) = amounts.as_array() else {
            return Err(Problem::malformed(
                "amounts",
                &format!("invalid type: {}, expected a sequence", unexpected(amounts)),
            ));
        };
        let mut total: i128 = 0;
        for (i, item) in items.iter().enumerate() {
            let field = format!("amounts[{i}]");
            let Some(text) = item.as_str() else {
                return Err(Problem::malformed(
                    &field,
                    &format!("invalid type: {}, expected a string", unexpected(item)),
                ));
            };
            let m = Money::parse("amount", text, currency)
                .map_err(|e| Problem::invalid(&field, &e.reason))?;
            total += i128::from(m.minor());
        }
        Ok(json!({
            "amount": format_minor(total, currency),
            "currency": currency.code(),
            "minor": total.to_string(),
        }))
    })())
}

/// `minor` minor units of `currency` written as a decimal amount (any
/// integer, negative and zero included: for totals and differences).
pub fn format_amount(minor: i128, currency: &str) -> Result<String, String> {
    let currency = Currency::parse("currency", currency).map_err(|e| e.to_string())?;
    Ok(format_minor(minor, currency))
}

/// Every currency the API accepts, with its number of decimals.
pub fn currencies() -> Value {
    Value::Array(
        Currency::all()
            .map(|c| json!({ "code": c.code(), "exponent": c.exponent() }))
            .collect(),
    )
}

// ------------------------------------------------------------------ expenses

/// `POST /v1/expenses`, checked at `now` (Unix seconds) in the order of the
/// handler: amount (currency first), category, merchant, description,
/// incurred_on.
pub fn expense(input: &Value, now: f64) -> Result<Value, String> {
    let now = instant(now)?;
    Ok(outcome((|| {
        let b = Body::new(
            input,
            "",
            &[
                "amount",
                "currency",
                "category",
                "merchant",
                "description",
                "incurred_on",
            ],
        )?;
        let (amount, currency) = (b.text("amount")?, b.text("currency")?);
        let (category, merchant) = (b.text("category")?, b.text("merchant")?);
        let description = b.optional_text("description")?.unwrap_or_default();
        let incurred_on = b.text("incurred_on")?;
        let details = expenses::Details {
            amount: expenses::money(amount, currency)?,
            category: expenses::text("category", category, 1, expenses::MAX_CATEGORY_CHARS)?,
            merchant: expenses::text("merchant", merchant, 1, expenses::MAX_MERCHANT_CHARS)?,
            description: expenses::text(
                "description",
                description,
                0,
                expenses::MAX_DESCRIPTION_CHARS,
            )?,
            incurred_on: expenses::incurred_on(incurred_on, now)?,
        };
        Ok(json!({
            "amount": details.amount.amount_string(),
            "currency": details.amount.currency().code(),
            "category": details.category,
            "merchant": details.merchant,
            "description": details.description,
            "incurred_on": expenses::format_date(details.incurred_on),
            "needs_receipt": expenses::needs_receipt(&details.amount),
        }))
    })()))
}

// ------------------------------------------------------------------ catalog

/// A SKU.
pub fn sku(raw: &str) -> Value {
    outcome(catalog::sku(raw).map(Value::String).map_err(Into::into))
}

/// `POST /v1/catalog/products`, in the order of the handler: sku, name,
/// description, price (currency first), reorder_level. Whether
/// `supplier_id` names a supplier is the server's to say.
pub fn product(input: &Value) -> Value {
    outcome((|| {
        let b = Body::new(
            input,
            "",
            &[
                "sku",
                "name",
                "description",
                "price",
                "supplier_id",
                "reorder_level",
                "active",
            ],
        )?;
        let sku = b.text("sku")?;
        let name = b.text("name")?;
        let description = b.optional_text("description")?.unwrap_or_default();
        let price = Body::new(b.required("price")?, "price", &["amount", "currency"])?;
        let (amount, currency) = (price.text("amount")?, price.text("currency")?);
        let supplier_id = b.optional_text("supplier_id")?;
        let reorder_level = b
            .get("reorder_level")
            .map(|v| whole(v).ok_or_else(|| b.wrong("reorder_level", v, "a whole number")))
            .transpose()?;
        let active = b
            .get("active")
            .map(|v| v.as_bool().ok_or_else(|| b.wrong("active", v, "a boolean")))
            .transpose()?;

        let sku = catalog::sku(sku)?;
        let name = catalog::text("name", name, 1, catalog::MAX_NAME_CHARS)?;
        let description = catalog::text(
            "description",
            description,
            0,
            catalog::MAX_DESCRIPTION_CHARS,
        )?;
        let currency = Currency::parse("price.currency", currency)?;
        let price = Money::parse("price.amount", amount, currency)?;
        let reorder_level = catalog::reorder_level(reorder_level.unwrap_or(0))?;
        Ok(json!({
            "sku": sku,
            "name": name,
            "description": description,
            "price": { "amount": price.amount_string(), "currency": price.currency().code() },
            "supplier_id": supplier_id,
            "reorder_level": reorder_level,
            "active": active.unwrap_or(true),
        }))
    })())
}

// ------------------------------------------------------------------ orders

/// `POST /v1/orders`: the lines (`lines[i].product_id`, `lines[i].quantity`
/// named at fault), then the note.
pub fn order(input: &Value) -> Value {
    outcome((|| {
        let b = Body::new(input, "", &["lines", "note"])?;
        let lines = b.required("lines")?;
        let Some(lines) = lines.as_array() else {
            return Err(b.wrong("lines", lines, "a sequence"));
        };
        let mut raw = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            let path = format!("lines[{i}]");
            let l = Body::new(line, &path, &["product_id", "quantity"])?;
            let product_id = l.text("product_id")?;
            let quantity = l.required("quantity")?;
            if !quantity.is_number() {
                return Err(l.wrong("quantity", quantity, "a number"));
            }
            raw.push((product_id.to_owned(), whole(quantity)));
        }
        let note = match b.get("note") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => return Err(b.wrong("note", other, "a string")),
        };
        let lines = orders::lines(&raw)?;
        let note = orders::note(note)?;
        Ok(json!({
            "lines": lines
                .iter()
                .map(|l| json!({ "product_id": l.product_id, "quantity": l.quantity }))
                .collect::<Vec<_>>(),
            "note": note,
        }))
    })())
}

// ------------------------------------------------------------------ comms

/// `POST /v1/comms/announcements`, checked at `now`: title, body, then
/// `publish_at` (future, within a year) when present. Whom the audience
/// and attachments name is the server's to say.
pub fn announcement(input: &Value, now: f64) -> Result<Value, String> {
    let now = instant(now)?;
    Ok(outcome((|| {
        let b = Body::new(
            input,
            "",
            &["title", "body", "audience", "attachments", "publish_at"],
        )?;
        let (title, body) = (b.text("title")?, b.text("body")?);
        let publish_at = b.optional_text("publish_at")?;
        let title = comms::title("title", title)?;
        let body = comms::body("body", body, comms::MAX_BODY_CHARS)?;
        let publish_at = publish_at
            .map(|t| comms::future("publish_at", t, now))
            .transpose()?
            .map(|t| {
                t.to_offset(UtcOffset::UTC)
                    .format(&Rfc3339)
                    .unwrap_or_default()
            });
        Ok(json!({ "title": title, "body": body, "publish_at": publish_at }))
    })()))
}

// ------------------------------------------------------------------ tokens

/// The stable code of a rejection, for programs to branch on.
pub fn rejection_code(r: Rejection) -> &'static str {
    match r {
        Rejection::Missing => "missing",
        Rejection::Malformed => "malformed",
        Rejection::Algorithm => "algorithm",
        Rejection::Type => "type",
        Rejection::UnknownKey => "unknown-key",
        Rejection::Signature => "signature",
        Rejection::Expired => "expired",
        Rejection::NotYetValid => "not-yet-valid",
        Rejection::Issuer => "issuer",
        Rejection::Audience => "audience",
    }
}

/// Reads a JWKS document (as text or as a parsed value). A key that is not
/// an Ed25519 signing key of this shape is skipped: it can verify nothing.
fn key_set(jwks: &Value) -> Result<Jwks, String> {
    let parsed;
    let doc = match jwks {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("jwks: is not JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks: must be a JSON Web Key Set, an object with a `keys` array")?;
    Ok(Jwks {
        keys: keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .collect(),
    })
}

/// Verifies an access token against a JWKS with the services' rules
/// (`constellation_core::token`): `{"ok": true, "claims": ..}` or
/// `{"ok": false, "error": <code>, "message": <sentence safe to show>}`.
/// `options` holds `issuer`, `audience` and `now` (Unix seconds).
pub fn verify_access_token(token: &str, jwks: &Value, options: &Value) -> Result<Value, String> {
    let text = |name: &str| {
        options
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("options.{name}: must be a string"))
    };
    let (issuer, audience) = (text("issuer")?, text("audience")?);
    let now = options
        .get("now")
        .and_then(Value::as_f64)
        .ok_or("options.now: must be a time in Unix seconds")?;
    let now = instant(now)?;
    let jwks = key_set(jwks)?;
    Ok(
        match jwks.verify(token, Expected { issuer, audience }, now) {
            Ok(claims) => json!({ "ok": true, "claims": claims }),
            Err(r) => json!({ "ok": false, "error": rejection_code(r), "message": r.to_string() }),
        },
    )
}
