//! The constraints of auth's inputs as the OpenAPI document states them,
//! built from the constants the parsers enforce ([`Email::parse`],
//! [`Password::new_for`], [`Role::parse`], [`AccountId::parse`],
//! [`crate::store::OrgName::parse_input`], [`SecretToken::presented`]), so that a
//! client generated from the document accepts what the server accepts, and
//! schemathesis checks that they agree.
//!
//! [`Email::parse`]: constellation_core::auth::Email::parse
//! [`Password::new_for`]: constellation_core::auth::Password::new_for
//! [`Role::parse`]: constellation_core::auth::Role::parse
//! [`AccountId::parse`]: constellation_core::auth::AccountId::parse
//! [`SecretToken::presented`]: crate::secret::SecretToken::presented

use constellation_core::auth::{
    MAX_EMAIL_BYTES, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, Role, account_id_pattern,
    common_passwords, email_pattern,
};
use constellation_core::validation::{CONTROL_CHARS, WHITESPACE_CHARS, class};
use constellation_web::openapi::{one_of, text};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::schema::{AdditionalProperties, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::AnyOfBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::secret::TOKEN_CHARS;
use crate::store::{MAX_ORG_NAME_CHARS, MAX_ORG_NAME_INPUT_CHARS};

/// An organization's name: 1 to [`MAX_ORG_NAME_CHARS`] characters once
/// surrounding whitespace is trimmed, no control characters inside, and at
/// most [`MAX_ORG_NAME_INPUT_CHARS`] as sent.
pub fn organization() -> Object {
    let ws = class(WHITESPACE_CHARS);
    let ctl = class(CONTROL_CHARS);
    // First and last character of the trimmed name: neither whitespace nor control.
    let edge = format!("[^{ws}{ctl}]");
    let inner = MAX_ORG_NAME_CHARS.saturating_sub(2);
    text()
        .pattern(Some(format!(
            "^[{ws}]*{edge}(?:[^{ctl}]{{0,{inner}}}{edge})?[{ws}]*$"
        )))
        .max_length(Some(MAX_ORG_NAME_INPUT_CHARS))
        .description(Some(format!(
            "1 to {MAX_ORG_NAME_CHARS} characters, no control characters (surrounding \
             whitespace is trimmed; at most {MAX_ORG_NAME_INPUT_CHARS} characters with it)"
        )))
        .examples(["Acme"])
        .build()
}

/// An email address, as [`constellation_core::auth::Email::parse`] accepts it.
pub fn email() -> Object {
    text()
        .pattern(Some(email_pattern()))
        .max_length(Some(MAX_EMAIL_BYTES))
        .description(Some(format!(
            "`local@domain`: at most {MAX_EMAIL_BYTES} bytes (the local part at most 64), no \
             whitespace or control characters, a dot in the domain; stored lowercased. The \
             server also accepts internationalized (UTF-8) addresses within the same byte \
             limits, and trims surrounding whitespace"
        )))
        .examples(["ada@example.com"])
        .build()
}

/// A new password: the length rule, and `not` one of the common passwords
/// in any case (`Password::new_for` compares lowercased). That it is not the
/// email address is stated in words: a schema cannot compare two fields.
pub fn new_password() -> Object {
    // `str::to_lowercase` maps ASCII letters, and the Kelvin sign to `k`.
    let any_case = |c: char| match c {
        'k' => "[kK\\u212a]".to_owned(),
        c if c.is_ascii_alphabetic() => format!("[{c}{}]", c.to_ascii_uppercase()),
        c if "^$\\.*+?()[]{}|/".contains(c) => format!("\\{c}"),
        c => c.to_string(),
    };
    let common: Vec<String> = common_passwords()
        .iter()
        .map(|p| p.chars().map(any_case).collect())
        .collect();
    let not_common = serde_json::json!({ "pattern": format!("^(?:{})$", common.join("|")) });
    text()
        .min_length(Some(MIN_PASSWORD_CHARS))
        .max_length(Some(MAX_PASSWORD_CHARS))
        // utoipa has no `not`; the extension map serializes it as written.
        .extensions(Some(Extensions::from_iter([("not", not_common)])))
        .description(Some(format!(
            "{MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters; not the email address \
             nor one of the most common passwords"
        )))
        .examples(["correct horse battery"])
        .build()
}

/// A password presented at login: only its length is checked.
pub fn presented_password() -> Object {
    text()
        .min_length(Some(1))
        .max_length(Some(MAX_PASSWORD_CHARS))
        .examples(["correct horse battery"])
        .build()
}

/// A refresh or invite token as the server hands it out.
pub fn secret_token() -> Object {
    text()
        .pattern(Some(format!("^[A-Za-z0-9_-]{{{TOKEN_CHARS}}}$")))
        .description(Some(format!(
            "{TOKEN_CHARS} characters of unpadded base64url, as issued"
        )))
        .build()
}

/// `token_type`: always `Bearer`.
pub fn bearer_type() -> Object {
    one_of(["Bearer"]).build()
}

/// A role name.
pub fn role() -> ObjectBuilder {
    one_of(Role::ALL.iter().map(|r| r.as_str()))
}

/// A role, as a body field.
pub fn role_field() -> Object {
    role().build()
}

/// An account id, or an invite id (the same shape: 32 lowercase hex digits).
pub fn id() -> Object {
    text().pattern(Some(account_id_pattern())).build()
}

/// An RFC 3339 time.
pub fn time() -> Object {
    text()
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::DateTime,
        )))
        .build()
}

/// `PATCH /v1/auth/accounts/{id}`'s body: `role`, `disabled` or both, and at
/// least one of them not null.
pub struct AccountPatchSchema;

impl PartialSchema for AccountPatchSchema {
    fn schema() -> RefOr<Schema> {
        let nullable = |schema: ObjectBuilder, ty: Type| {
            schema.schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                ty,
                Type::Null,
            ]))
        };
        let role_or_null = nullable(role(), Type::String)
            .enum_values(Some(
                Role::ALL
                    .iter()
                    .map(|r| serde_json::Value::from(r.as_str()))
                    .chain([serde_json::Value::Null]),
            ))
            .description(Some("The new role; at most the caller's own"));
        let disabled_or_null = nullable(ObjectBuilder::new(), Type::Boolean)
            .description(Some("Disable (true) or re-enable (false)"));
        let given = |name: &str, schema: Object| -> Schema {
            ObjectBuilder::new()
                .property(name, schema)
                .required(name)
                .into()
        };
        ObjectBuilder::new()
            .description(Some("At least one of `role` and `disabled`, not null"))
            .property("role", role_or_null)
            .property("disabled", disabled_or_null)
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
            .into_schema_with_any_of(
                AnyOfBuilder::new()
                    .item(given("role", role().build()))
                    .item(given(
                        "disabled",
                        ObjectBuilder::new().schema_type(Type::Boolean).build(),
                    ))
                    .build(),
            )
    }
}

impl ToSchema for AccountPatchSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "AccountForPatch".into()
    }
}

/// Puts `any_of` beside an object's own keywords (`allOf` of the two).
trait WithAnyOf {
    fn into_schema_with_any_of(self, any_of: utoipa::openapi::schema::AnyOf) -> RefOr<Schema>;
}

impl WithAnyOf for ObjectBuilder {
    fn into_schema_with_any_of(self, any_of: utoipa::openapi::schema::AnyOf) -> RefOr<Schema> {
        let all_of = utoipa::openapi::schema::AllOfBuilder::new()
            .item(self.build())
            .item(Schema::AnyOf(any_of))
            .build();
        RefOr::T(Schema::AllOf(all_of))
    }
}

/// The public key set's schema (RFC 7517, Ed25519 keys).
pub struct JwksSchema;

impl PartialSchema for JwksSchema {
    fn schema() -> RefOr<Schema> {
        let key = ObjectBuilder::new()
            .property("kty", one_of(["OKP"]))
            .required("kty")
            .property("crv", one_of(["Ed25519"]))
            .required("crv")
            .property("x", text().description(Some("The public key, base64url")))
            .required("x")
            .property(
                "kid",
                text().description(Some("The key id tokens name in their header")),
            )
            .required("kid")
            .property("use", one_of(["sig"]))
            .property("alg", one_of(["EdDSA"]));
        ObjectBuilder::new()
            .property(
                "keys",
                utoipa::openapi::schema::ArrayBuilder::new().items(key),
            )
            .required("keys")
            .into()
    }
}

impl ToSchema for JwksSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Jwks".into()
    }
}
