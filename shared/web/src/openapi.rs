//! The OpenAPI side of the HTTP contract: serving a service's document,
//! merging every service's into one, and the conventions they all share.
//!
//! A service writes its operations with `#[utoipa::path]`: the statuses that
//! are its own, and parameters and bodies whose constraints come from the
//! constants its parsers enforce (so the two cannot drift). It then applies
//! [`Conventions`] as a modifier, which adds what the shared layers make true
//! of every route, so that no service can forget it and a new one inherits
//! it: a problem+json body on every error, the request id header on every
//! answer, 401 on operations that take a token, 400/413/415 on JSON bodies,
//! 500 everywhere, the health and document routes, the `bearer` scheme,
//! operation ids unique across services, and the links that let a client (or
//! a stateful tester) chain one call's answer into the next call.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use constellation_core::validation::{CONTROL_CHARS, class};
use utoipa::openapi::content::Content;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr, Required};

use crate::error::{ApiError, PROBLEM_JSON};
use crate::idempotency::{IDEMPOTENCY_KEY_FIELD, MAX_KEY_CHARS};
use crate::pagination::{DEFAULT_LIMIT, MAX_LIMIT};

/// The name of the security scheme protected operations name
/// (`security(("bearer" = []))`): an access token as `Authorization: Bearer`.
pub const BEARER: &str = "bearer";
/// The name of the error body schema.
pub const PROBLEM_SCHEMA: &str = "Problem";

/// A route serving the document `doc` builds, as JSON, at `path`.
///
/// The document is built and serialized on its first request, once per
/// process, not when the router is built: building and pretty-printing it
/// was most of a function's own start-up work, and a cold start that serves
/// an API call never needs it. Every later request gets the same bytes.
pub fn openapi_route<S: Clone + Send + Sync + 'static>(
    path: &str,
    doc: fn() -> OpenApi,
) -> Router<S> {
    let rendered: Arc<OnceLock<Result<Bytes, String>>> = Arc::default();
    let route = path.to_owned();
    Router::new().route(
        path,
        get(move || {
            let rendered = rendered.clone();
            let path = route.clone();
            async move {
                match rendered.get_or_init(|| render(doc)) {
                    Ok(json) => Ok((
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json.clone(),
                    )),
                    Err(e) => Err(ApiError::internal(anyhow::anyhow!(
                        "serializing the OpenAPI document of {path}: {e}"
                    ))),
                }
            }
        }),
    )
}

/// `doc`'s document as pretty-printed JSON.
fn render(doc: fn() -> OpenApi) -> Result<Bytes, String> {
    doc()
        .to_pretty_json()
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Merges service documents into one (paths and components), titled for the whole API.
pub fn merge(docs: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut merged = OpenApi::default();
    merged.info.title = "Constellation API".to_owned();
    merged.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for doc in docs {
        merged.merge(doc);
    }
    merged
}

// ---------------------------------------------------------------------------
// Schemas services build their constraints from

/// A string schema.
pub fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// An integer schema from `min` to `max`.
pub fn integer(min: u64, max: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
}

/// The pattern of text without control characters; with `required`, also
/// not blank (at least one character that is neither control nor
/// whitespace, as a trimmed value must keep one).
pub fn plain_text_pattern(required: bool) -> String {
    use constellation_core::validation::WHITESPACE_CHARS;
    let control = class(CONTROL_CHARS);
    if required {
        let whitespace = class(WHITESPACE_CHARS);
        format!("^[^{control}]*[^{control}{whitespace}][^{control}]*$")
    } else {
        format!("^[^{control}]*$")
    }
}

/// An amount of money on the wire: a positive decimal string of at most
/// 7 integer digits and 4 decimals. What no schema can say (a currency's
/// own number of decimals; at most 1,000,000) is checked by
/// `constellation_core::money` and answered with 400 naming the field.
pub fn money_amount_schema() -> Object {
    text()
        .pattern(Some("^(?=[0-9.]*[1-9])[0-9]{1,7}(\\.[0-9]{1,4})?$"))
        .max_length(Some(12))
        .description(Some(
            "A decimal string: more than 0, at most 1,000,000, with at most the currency's \
             decimals (JPY 0, EUR 2, KWD 3); answered with exactly the currency's decimals",
        ))
        .examples(["12.34"])
        .build()
}

/// The link from `from`'s `status` answer to `to`, passing the answer's
/// `id` as the `{id}` path parameter: how a created resource chains into
/// the calls that take it.
pub const fn id_link(from: &'static str, status: u16, to: &'static str) -> LinkDef {
    LinkDef {
        from,
        status,
        to,
        parameters: &[("id", "$response.body#/id")],
        body: &[],
    }
}

/// Marks a header parameter of one `PATCH` operation required (utoipa
/// leaves a header parameter with a custom schema optional). Apply with
/// `#[openapi(modifiers(&RequiredPatchHeader { .. }))]`.
#[derive(Debug, Clone, Copy)]
pub struct RequiredPatchHeader {
    /// The path of the operation.
    pub path: &'static str,
    /// The header.
    pub header: &'static str,
}

impl utoipa::Modify for RequiredPatchHeader {
    fn modify(&self, doc: &mut OpenApi) {
        let patch = doc
            .paths
            .paths
            .get_mut(self.path)
            .and_then(|item| item.patch.as_mut());
        if let Some(params) = patch.and_then(|op| op.parameters.as_mut()) {
            for p in params.iter_mut().filter(|p| p.name == self.header) {
                p.required = Required::True;
            }
        }
    }
}

/// A string of one of `values`.
pub fn one_of<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> ObjectBuilder {
    text().enum_values(Some(values.into_iter().map(|v| v.as_ref().to_owned())))
}

/// The `limit` of a listing (see [`crate::PageParams::parse`]).
pub fn page_limit() -> Object {
    integer(1, u64::from(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .description(Some(format!(
            "Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})"
        )))
        .build()
}

/// The `cursor` of a listing: opaque, issued by the server.
pub fn page_cursor() -> Object {
    text()
        .description(Some(
            "`next_cursor` of the previous page, as issued: cursors are sealed, and one the \
             server did not issue for this listing answers 400 `invalid-cursor`",
        ))
        .build()
}

/// A time-ordered record id as issued (`constellation_core::ids`).
pub fn time_ordered_id_schema() -> Object {
    text()
        .pattern(Some(constellation_core::ids::TIME_ORDERED_ID_PATTERN))
        .description(Some("An id as issued"))
        .build()
}

/// The `{id}` path parameter of a record with a time-ordered id (what
/// [`crate::extract::PathId`]`<String>` accepts).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TimeOrderedIdPath {
    /// The id.
    #[param(schema_with = time_ordered_id_schema)]
    pub id: String,
}

/// The `limit` and `cursor` query parameters every listing takes.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page.
    #[param(schema_with = page_limit)]
    pub limit: Option<u32>,
    /// Where the previous page ended.
    #[param(schema_with = page_cursor)]
    pub cursor: Option<String>,
}

/// The `Idempotency-Key` request header (see [`crate::idempotency`]): 1 to
/// [`MAX_KEY_CHARS`] printable ASCII characters without spaces.
pub fn idempotency_key() -> Object {
    text()
        .pattern(Some(format!("^[!-~]{{1,{MAX_KEY_CHARS}}}$")))
        .description(Some(
            "Retrying with the same key replays the first answer (`Idempotent-Replayed: true`) \
             for 24 hours instead of acting twice",
        ))
        .build()
}

/// Text without control characters (what `char::is_control` refuses).
pub fn no_control_chars() -> String {
    format!("^[^{}]*$", class(CONTROL_CHARS))
}

// ---------------------------------------------------------------------------
// The conventions

/// One OpenAPI link: after operation `from` answers `status`, operation `to`
/// can be called with values taken from that exchange (runtime expressions
/// such as `$response.body#/id` or `$request.path.key`).
#[derive(Debug, Clone, Copy)]
pub struct LinkDef {
    /// The operation answering (its handler's name, as in `#[utoipa::path]`).
    pub from: &'static str,
    /// The answer's status.
    pub status: u16,
    /// The operation to call next (a handler's name in the same service).
    pub to: &'static str,
    /// Parameters of `to` (`name` or `header.Name`), by runtime expression.
    pub parameters: &'static [(&'static str, &'static str)],
    /// Fields of `to`'s JSON body, by runtime expression (none: no body).
    pub body: &'static [(&'static str, &'static str)],
}

/// An operation that takes an `Idempotency-Key` (see [`crate::idempotency`]).
#[derive(Debug, Clone, Copy)]
pub struct IdempotentDef {
    /// The operation (its handler's name).
    pub operation: &'static str,
    /// Whether the key is required (428 without it).
    pub required: bool,
}

/// What every service document states because the shared layers make it so.
/// Apply with `#[openapi(modifiers(&CONVENTIONS))]`.
#[derive(Debug, Clone, Copy)]
pub struct Conventions {
    /// The service name: paths are under `/v1/<service>`, and operation ids
    /// are prefixed `<service>_` so they stay unique in the merged document.
    pub service: &'static str,
    /// Its links.
    pub links: &'static [LinkDef],
    /// Its operations behind the `Idempotency-Key` layer.
    pub idempotent: &'static [IdempotentDef],
}

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert(PROBLEM_SCHEMA.to_owned(), problem_schema().into());
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".to_owned());
        bearer.description = Some("An access token from `/v1/auth/login`".to_owned());
        components.add_security_scheme(BEARER, SecurityScheme::Http(bearer));

        self.add_shared_routes(doc);
        for item in doc.paths.paths.values_mut() {
            for op in operations_mut(item) {
                let name = op.operation_id.clone().unwrap_or_default();
                if let Some(def) = self.idempotent.iter().find(|d| d.operation == name) {
                    document_idempotency(op, def.required);
                }
                for link in self.links.iter().filter(|l| l.from == name) {
                    self.add_link(op, link);
                }
                self.apply(op, &name);
            }
        }
    }
}

impl Conventions {
    fn op_id(&self, name: &str) -> String {
        format!("{}_{name}", self.service)
    }

    /// `GET /v1/<service>/health` and `/v1/<service>/openapi.json`, which
    /// [`crate::service`] and [`openapi_route`] add to every service.
    fn add_shared_routes(&self, doc: &mut OpenApi) {
        let health = ObjectBuilder::new()
            .property("status", one_of(["ok"]))
            .property("service", one_of([self.service]))
            .property("version", text())
            .required("status")
            .required("service")
            .required("version");
        let routes = [
            (
                "health",
                "Liveness: answers while the service can serve requests",
                Content::new(Some(health.build())),
            ),
            (
                "openapi",
                "This service's OpenAPI document",
                Content::new(Some(ObjectBuilder::new().schema_type(Type::Object).build())),
            ),
        ];
        for (name, summary, content) in routes {
            let path = match name {
                "health" => format!("/v1/{}/health", self.service),
                _ => format!("/v1/{}/openapi.json", self.service),
            };
            let op = OperationBuilder::new()
                .summary(Some(summary))
                .operation_id(Some(name))
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description(summary)
                        .content("application/json", content),
                )
                .build();
            doc.paths
                .paths
                .insert(path, PathItem::new(HttpMethod::Get, op));
        }
    }

    fn add_link(&self, op: &mut Operation, link: &LinkDef) {
        let Some(RefOr::T(response)) = op.responses.responses.get_mut(&link.status.to_string())
        else {
            return;
        };
        let mut builder = LinkBuilder::new();
        for (name, expr) in link.parameters {
            builder = builder.parameter(*name, *expr);
        }
        // utoipa 5 serializes `Link::operation_id` and `Link::request_body`
        // as `operation_id` and `request_body`, which OpenAPI does not know:
        // write those two under their OpenAPI names instead.
        let mut fields = vec![("operationId", serde_json::Value::from(self.op_id(link.to)))];
        if !link.body.is_empty() {
            let body: serde_json::Map<String, serde_json::Value> = link
                .body
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).into()))
                .collect();
            fields.push(("requestBody", body.into()));
        }
        builder = builder.extensions(Some(Extensions::from_iter(fields)));
        response
            .links
            .insert(link.to.to_owned(), RefOr::T(builder.build()));
    }

    /// Ids, tags, and the answers the shared layers give every operation.
    fn apply(&self, op: &mut Operation, name: &str) {
        if !name.starts_with(&format!("{}_", self.service)) {
            op.operation_id = Some(self.op_id(name));
        }
        op.tags = Some(vec![self.service.to_owned()]);
        // OpenAPI: a path parameter is always required.
        for param in op.parameters.iter_mut().flatten() {
            if param.parameter_in == ParameterIn::Path {
                param.required = Required::True;
            }
        }
        let secured = op.security.iter().flatten().any(|req| {
            serde_json::to_value(req).is_ok_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
        });
        let body_types: Vec<String> = op
            .request_body
            .iter()
            .flat_map(|b| b.content.keys().cloned())
            .collect();
        let responses = &mut op.responses.responses;
        let mut ensure = |status: &str, description: &str| {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::T(Response::new(description)));
        };
        if secured {
            ensure(
                "401",
                "No access token, or one that is expired, malformed or not signed by a current key",
            );
        }
        if !body_types.is_empty() {
            ensure("413", "The body is larger than this route accepts");
        }
        if body_types.iter().any(|t| t == "application/json") {
            ensure(
                "400",
                "The body is not JSON of this shape (`malformed-body`), or a field breaks a rule \
                 (`invalid-input`); `field` names it",
            );
            ensure("415", "The body is not sent as application/json");
        }
        ensure(
            "429",
            "Too many requests from this caller (API Gateway's route throttling, or `serve`'s \
             per-caller limits); retry after `Retry-After` seconds",
        );
        ensure(
            "500",
            "An unexpected failure; the body carries only the request id (the cause is logged)",
        );
        for (status, response) in responses.iter_mut() {
            let RefOr::T(response) = response else {
                continue;
            };
            response
                .headers
                .insert("x-request-id".to_owned(), request_id_header());
            if status.starts_with('4') || status.starts_with('5') {
                problem_body(status, response);
            }
        }
    }
}

/// The operations of a path item.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.options,
        &mut item.head,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// An error answer: problem+json, with the headers its status carries.
fn problem_body(status: &str, response: &mut Response) {
    response.content.clear();
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(Some(Ref::from_schema_name(PROBLEM_SCHEMA))),
    );
    match status {
        "401" => {
            response.headers.insert(
                "WWW-Authenticate".to_owned(),
                HeaderBuilder::new()
                    .schema(text().pattern(Some("^Bearer realm=\"constellation\"")))
                    .description(Some(
                        "`Bearer realm=\"constellation\"`, with `error=\"invalid_token\"` and \
                         `error_description` when a token was presented (RFC 6750)",
                    ))
                    .build(),
            );
        }
        "429" | "503" => {
            response
                .headers
                .insert("Retry-After".to_owned(), retry_after_header());
        }
        _ => {}
    }
}

fn retry_after_header() -> Header {
    HeaderBuilder::new()
        .schema(integer(0, u64::from(u32::MAX)))
        .description(Some("Seconds to wait before retrying"))
        .build()
}

fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(
            text()
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some("^[A-Za-z0-9._:-]+$")),
        )
        .description(Some(
            "The request's id: the client's own `x-request-id` when it is 1-128 characters of \
             `A-Za-z0-9-_.:`, else a new UUID. Error bodies carry it as `request_id`",
        ))
        .build()
}

/// The problem details (RFC 9457) every error answers with.
fn problem_schema() -> Schema {
    ObjectBuilder::new()
        .description(Some(
            "An error (RFC 9457 problem details). `type` is stable: match on it, not on `title` \
             or `detail`",
        ))
        .property(
            "type",
            text()
                .pattern(Some("^urn:constellation:problem:[a-z-]+$"))
                .description(Some(
                    "The kind of problem, e.g. `urn:constellation:problem:invalid-input`",
                )),
        )
        .required("type")
        .property(
            "title",
            text().description(Some("The kind of problem, for humans")),
        )
        .required("title")
        .property(
            "status",
            integer(400, 599).description(Some("The HTTP status")),
        )
        .required("status")
        .property(
            "detail",
            text().description(Some("What went wrong this time (never for 5xx)")),
        )
        .property(
            "field",
            text().description(Some(
                "The input at fault: a body field, a parameter or a header",
            )),
        )
        .property(
            "current_status",
            text().description(Some(
                "For `invalid-transition`: the status the resource is in",
            )),
        )
        .property(
            "request_id",
            text().description(Some("The request's id, as in `x-request-id`")),
        )
        .into()
}

/// Adds the `Idempotency-Key` contract (see [`crate::idempotency`]) to `op`.
fn document_idempotency(op: &mut Operation, required: bool) {
    let param = ParameterBuilder::new()
        .name(IDEMPOTENCY_KEY_FIELD)
        .parameter_in(ParameterIn::Header)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .schema(Some(idempotency_key()))
        .build();
    op.parameters.get_or_insert_with(Vec::new).push(param);
    let responses = &mut op.responses.responses;
    for (status, response) in responses.iter_mut() {
        if let (true, RefOr::T(response)) = (!status.starts_with('5'), response) {
            response.headers.insert(
                "Idempotent-Replayed".to_owned(),
                HeaderBuilder::new()
                    .schema(one_of(["true"]))
                    .description(Some(
                        "Present when this is the stored answer to an earlier request with the \
                         same key",
                    ))
                    .build(),
            );
        }
    }
    let mut add = |status: &str, description: &str, retry: bool| {
        let mut response = Response::new(description);
        if retry {
            response
                .headers
                .insert("Retry-After".to_owned(), retry_after_header());
        }
        responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(response));
    };
    add(
        "400",
        "The `Idempotency-Key` is malformed or sent twice",
        false,
    );
    add(
        "409",
        "A request with this `Idempotency-Key` is still in progress (`idempotency-key-in-progress`); retry after `Retry-After`",
        true,
    );
    add(
        "422",
        "This `Idempotency-Key` was used for a different request (`idempotency-key-reused`)",
        false,
    );
    if required {
        add(
            "428",
            "This route requires an `Idempotency-Key` (`idempotency-key-required`)",
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use utoipa::Modify as _;
    use utoipa::openapi::request_body::RequestBodyBuilder;

    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn counted_doc() -> OpenApi {
        BUILDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        doc_with(create_order())
    }

    #[tokio::test]
    async fn the_document_is_built_on_its_first_request_and_once() {
        use tower::ServiceExt as _;
        let builds = || BUILDS.load(std::sync::atomic::Ordering::SeqCst);
        let app: Router = openapi_route("/v1/demo/openapi.json", counted_doc);
        assert_eq!(builds(), 0, "building the router built the document");
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let res = app
                .clone()
                .oneshot(
                    axum::http::Request::get("/v1/demo/openapi.json")
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(res.status(), axum::http::StatusCode::OK);
            assert_eq!(res.headers()["content-type"], "application/json");
            let body = http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes();
            bodies.push(body);
        }
        assert_eq!(builds(), 1, "the document was built again");
        assert_eq!(bodies[0], bodies[1]);
        let served: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
        assert_eq!(
            served["paths"]["/v1/demo/orders"]["post"]["operationId"],
            "create_order"
        );
    }

    fn doc_with(op: Operation) -> OpenApi {
        let mut doc = OpenApi::default();
        doc.paths.paths.insert(
            "/v1/demo/orders".to_owned(),
            PathItem::new(HttpMethod::Post, op),
        );
        doc
    }

    fn create_order() -> Operation {
        OperationBuilder::new()
            .operation_id(Some("create_order"))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", Content::new(Some(text().build())))
                    .build(),
            ))
            .response("201", Response::new("Created"))
            .security(utoipa::openapi::security::SecurityRequirement::new(
                BEARER,
                Vec::<String>::new(),
            ))
            .build()
    }

    #[test]
    fn conventions_add_what_the_shared_layers_answer() {
        let mut doc = doc_with(create_order());
        Conventions {
            service: "demo",
            links: &[],
            idempotent: &[],
        }
        .modify(&mut doc);
        let json = serde_json::to_value(&doc).unwrap();
        let op = &json["paths"]["/v1/demo/orders"]["post"];
        assert_eq!(op["operationId"], "demo_create_order");
        for status in ["400", "401", "413", "415", "500"] {
            let r = &op["responses"][status];
            assert_eq!(
                r["content"][PROBLEM_JSON]["schema"]["$ref"], "#/components/schemas/Problem",
                "{status}"
            );
            assert!(r["headers"]["x-request-id"].is_object(), "{status}");
        }
        assert!(op["responses"]["401"]["headers"]["WWW-Authenticate"].is_object());
        assert!(op["responses"]["201"]["headers"]["x-request-id"].is_object());
        assert!(json["paths"]["/v1/demo/health"]["get"].is_object());
        assert!(json["paths"]["/v1/demo/openapi.json"]["get"].is_object());
        assert!(json["components"]["schemas"][PROBLEM_SCHEMA].is_object());
    }

    #[test]
    fn idempotent_operations_document_the_key_and_its_answers() {
        let mut doc = doc_with(create_order());
        Conventions {
            service: "demo",
            links: &[],
            idempotent: &[IdempotentDef {
                operation: "create_order",
                required: true,
            }],
        }
        .modify(&mut doc);
        let json = serde_json::to_value(&doc).unwrap();
        let op = &json["paths"]["/v1/demo/orders"]["post"];
        let key = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == IDEMPOTENCY_KEY_FIELD)
            .unwrap();
        assert_eq!(key["in"], "header");
        assert_eq!(key["required"], true);
        assert_eq!(key["schema"]["pattern"], "^[!-~]{1,255}$");
        for status in ["409", "422", "428"] {
            assert_eq!(
                op["responses"][status]["content"][PROBLEM_JSON]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{status}"
            );
        }
        assert!(op["responses"]["409"]["headers"]["Retry-After"].is_object());
        assert!(op["responses"]["201"]["headers"]["Idempotent-Replayed"].is_object());
        assert!(op["responses"]["500"]["headers"]["Idempotent-Replayed"].is_null());
    }

    #[test]
    fn links_use_the_openapi_field_names() {
        let mut doc = doc_with(create_order());
        Conventions {
            service: "demo",
            links: &[LinkDef {
                from: "create_order",
                status: 201,
                to: "get_order",
                parameters: &[("id", "$response.body#/id")],
                body: &[("note", "$request.body#/note")],
            }],
            idempotent: &[],
        }
        .modify(&mut doc);
        let json = serde_json::to_value(&doc).unwrap();
        let link =
            &json["paths"]["/v1/demo/orders"]["post"]["responses"]["201"]["links"]["get_order"];
        assert_eq!(link["operationId"], "demo_get_order");
        assert_eq!(link["parameters"]["id"], "$response.body#/id");
        assert_eq!(link["requestBody"]["note"], "$request.body#/note");
        assert!(link.get("operation_id").is_none());
    }
}
