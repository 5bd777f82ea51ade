//! Constellation's domain rules and access-token verification for
//! JavaScript: browsers and mobile web views (validate a form with exactly
//! the server's rules, total an order with exactly its money arithmetic),
//! Node, and edge runtimes that must verify a token without calling auth.
//!
//! No rule is written here: [`rules`] reads JSON inputs, calls
//! `constellation_core` in the order the services' handlers do, and answers
//! what the API would (the same problem `type`, `field` and `detail`). This
//! module only carries values across the JavaScript boundary: objects go
//! through `JSON.stringify` / `JSON.parse` (two imports, no serde glue), so
//! the package stays small. Nothing here does I/O or reads a clock: times
//! are the caller's `now`, in Unix seconds.

use serde_json::Value;
use wasm_bindgen::prelude::*;

pub mod rules;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** The problem+json body the API answers for the same input. */
export interface Problem {
  /** `urn:constellation:problem:invalid-input` (a rule refused the value) or `...:malformed-body` (wrong JSON shape). */
  type: string;
  title: string;
  status: number;
  /** `"<field>: <reason>"`. */
  detail: string;
  /** The input at fault, as the client sent it (`price.amount`, `lines[2].quantity`). */
  field: string;
}
/** A validator's answer: the value as the service keeps it, or the problem. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; problem: Problem };
export interface Money { amount: string; currency: string; /** exact: at most 10^10 */ minor: number }
export interface Sum { amount: string; currency: string; /** decimal integer string */ minor: string }
export interface CurrencyInfo { code: string; exponent: number }
export interface ExpenseForCreate {
  amount: string; currency: string; category: string; merchant: string;
  description?: string; incurred_on: string;
}
export interface Expense {
  amount: string; currency: string; category: string; merchant: string;
  description: string; incurred_on: string; needs_receipt: boolean;
}
export interface ProductForCreate {
  sku: string; name: string; description?: string;
  price: { amount: string; currency: string };
  supplier_id?: string; reorder_level?: number; active?: boolean;
}
export interface Product {
  sku: string; name: string; description: string;
  price: { amount: string; currency: string };
  supplier_id: string | null; reorder_level: number; active: boolean;
}
export interface OrderLine { product_id: string; quantity: number }
export interface OrderForCreate { lines: OrderLine[]; note?: string | null }
export interface Order { lines: OrderLine[]; note: string | null }
export interface AnnouncementForCreate {
  title: string; body: string; audience?: unknown; attachments?: string[]; publish_at?: string;
}
export interface Announcement { title: string; body: string; publish_at: string | null }
export interface Claims {
  iss: string; aud: string; sub: string; org: string;
  role: "owner" | "admin" | "staff" | "member";
  exp: number; iat: number; nbf: number; jti: string;
}
export type TokenError =
  | "missing" | "malformed" | "algorithm" | "type" | "unknown-key"
  | "signature" | "expired" | "not-yet-valid" | "issuer" | "audience";
export type Verified =
  | { ok: true; claims: Claims }
  | { ok: false; error: TokenError; message: string };
export interface Jwks { keys: object[] }
export interface VerifyOptions { issuer: string; audience: string; /** Unix seconds */ now: number }
"#;

/// A `serde_json` value as a JavaScript value.
fn to_js(value: &Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

/// A JavaScript value as JSON (`undefined` is `null`).
fn from_js(value: &JsValue) -> Result<Value, JsError> {
    let Some(text) = js_sys::JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
    else {
        return Ok(Value::Null);
    };
    serde_json::from_str(&text).map_err(|e| JsError::new(&format!("not a JSON value: {e}")))
}

/// A string argument; anything else is the caller's mistake.
fn text(value: &JsValue, name: &str) -> Result<String, JsError> {
    value
        .as_string()
        .ok_or_else(|| JsError::new(&format!("{name}: must be a string")))
}

fn thrown(message: String) -> JsError {
    JsError::new(&message)
}

/// Checks a kv namespace: `[a-z0-9][a-z0-9_-]{0,62}`.
#[wasm_bindgen(js_name = validateKvNamespace, unchecked_return_type = "Outcome<string>")]
pub fn validate_kv_namespace(
    #[wasm_bindgen(unchecked_param_type = "string")] raw: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::kv_namespace(&text(&raw, "namespace")?)))
}

/// Checks a kv key: 1 to 1024 bytes of UTF-8, no control characters.
#[wasm_bindgen(js_name = validateKvKey, unchecked_return_type = "Outcome<string>")]
pub fn validate_kv_key(
    #[wasm_bindgen(unchecked_param_type = "string")] raw: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::kv_key(&text(&raw, "key")?)))
}

/// Checks an email address; the value is the address normalised as the account keeps it.
#[wasm_bindgen(js_name = validateEmail, unchecked_return_type = "Outcome<string>")]
pub fn validate_email(
    #[wasm_bindgen(unchecked_param_type = "string")] raw: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::email(&text(&raw, "email")?)))
}

/// Checks a new password for the account of `email` (the password policy of sign-up and reset).
#[wasm_bindgen(js_name = validatePassword, unchecked_return_type = "Outcome<null>")]
pub fn validate_password(
    #[wasm_bindgen(unchecked_param_type = "string")] password: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] email: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::password(
        &text(&password, "password")?,
        &text(&email, "email")?,
    )))
}

/// Checks the body of `POST /v1/expenses` at `now` (Unix seconds).
#[wasm_bindgen(js_name = validateExpense, unchecked_return_type = "Outcome<Expense>")]
pub fn validate_expense(
    #[wasm_bindgen(unchecked_param_type = "ExpenseForCreate")] input: JsValue,
    now: f64,
) -> Result<JsValue, JsError> {
    rules::expense(&from_js(&input)?, now)
        .map(|v| to_js(&v))
        .map_err(thrown)
}

/// Checks a SKU: `[A-Z0-9][A-Z0-9-]{0,31}`.
#[wasm_bindgen(js_name = validateSku, unchecked_return_type = "Outcome<string>")]
pub fn validate_sku(
    #[wasm_bindgen(unchecked_param_type = "string")] raw: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::sku(&text(&raw, "sku")?)))
}

/// Checks the body of `POST /v1/catalog/products`.
#[wasm_bindgen(js_name = validateProduct, unchecked_return_type = "Outcome<Product>")]
pub fn validate_product(
    #[wasm_bindgen(unchecked_param_type = "ProductForCreate")] input: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::product(&from_js(&input)?)))
}

/// Checks the body of `POST /v1/orders`.
#[wasm_bindgen(js_name = validateOrder, unchecked_return_type = "Outcome<Order>")]
pub fn validate_order(
    #[wasm_bindgen(unchecked_param_type = "OrderForCreate")] input: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::order(&from_js(&input)?)))
}

/// Checks the title, body and `publish_at` of `POST /v1/comms/announcements` at `now` (Unix seconds).
#[wasm_bindgen(js_name = validateAnnouncement, unchecked_return_type = "Outcome<Announcement>")]
pub fn validate_announcement(
    #[wasm_bindgen(unchecked_param_type = "AnnouncementForCreate")] input: JsValue,
    now: f64,
) -> Result<JsValue, JsError> {
    rules::announcement(&from_js(&input)?, now)
        .map(|v| to_js(&v))
        .map_err(thrown)
}

/// Parses a decimal amount in an ISO 4217 currency into exact minor units.
#[wasm_bindgen(js_name = parseMoney, unchecked_return_type = "Outcome<Money>")]
pub fn parse_money(
    #[wasm_bindgen(unchecked_param_type = "string")] amount: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] currency: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::parse_money(
        &text(&amount, "amount")?,
        &text(&currency, "currency")?,
    )))
}

/// The exact sum of decimal amounts in one currency.
#[wasm_bindgen(js_name = sumAmounts, unchecked_return_type = "Outcome<Sum>")]
pub fn sum_amounts(
    #[wasm_bindgen(unchecked_param_type = "string[]")] amounts: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] currency: JsValue,
) -> Result<JsValue, JsError> {
    Ok(to_js(&rules::sum_amounts(
        &from_js(&amounts)?,
        &text(&currency, "currency")?,
    )))
}

/// Writes `minor` minor units (a safe integer, a bigint, or a decimal
/// integer string) of `currency` as a decimal amount: `formatMinor(1234,
/// "EUR")` is `"12.34"`. Throws for an unknown currency.
#[wasm_bindgen(js_name = formatMinor)]
pub fn format_minor(
    #[wasm_bindgen(unchecked_param_type = "number | bigint | string")] minor: JsValue,
    currency: &str,
) -> Result<String, JsError> {
    let whole = if let Some(n) = minor.as_f64() {
        if n.fract() != 0.0 || n.abs() >= 9_007_199_254_740_992.0 {
            return Err(JsError::new("minor: must be a safe integer"));
        }
        #[allow(clippy::cast_possible_truncation)]
        Some(n as i128)
    } else if minor.is_bigint() {
        js_sys::BigInt::unchecked_from_js(minor)
            .to_string(10)
            .ok()
            .and_then(|s| String::from(s).parse().ok())
    } else {
        minor.as_string().and_then(|s| s.parse().ok())
    };
    let minor = whole.ok_or_else(|| JsError::new("minor: must be an integer"))?;
    rules::format_amount(minor, currency).map_err(thrown)
}

/// Every ISO 4217 currency the API accepts, with its number of decimals.
#[wasm_bindgen(unchecked_return_type = "CurrencyInfo[]")]
pub fn currencies() -> JsValue {
    to_js(&rules::currencies())
}

/// Verifies a Constellation access token against a JWKS (the document as
/// text or as an object) with the services' rules: EdDSA only, the `kid`
/// looked up in the set, `typ` `at+jwt`, `iss` and `aud`, `exp` / `nbf` /
/// `iat` at `options.now` with 30 s of leeway, unknown claims refused.
#[wasm_bindgen(js_name = verifyAccessToken, unchecked_return_type = "Verified")]
pub fn verify_access_token(
    token: &str,
    #[wasm_bindgen(unchecked_param_type = "string | Jwks")] jwks: JsValue,
    #[wasm_bindgen(unchecked_param_type = "VerifyOptions")] options: JsValue,
) -> Result<JsValue, JsError> {
    let jwks = match jwks.as_string() {
        Some(text) => Value::String(text),
        None => from_js(&jwks)?,
    };
    rules::verify_access_token(token, &jwks, &from_js(&options)?)
        .map(|v| to_js(&v))
        .map_err(thrown)
}
