//! The OpenAPI document against the routers it describes, and against the
//! OpenAPI 3.1 specification.
//!
//! Routes: for every service in [`constellation::SERVICES`], the app the
//! hosts build is compared with the service's document, both ways. axum has
//! no public way to list a router's routes, but its `Debug` output carries
//! the route table (`RouteId(n): "/v1/kv/{namespace}"`); the paths are read
//! from there, and the health route every service gets is required among
//! them, so a change in that output fails here instead of passing with
//! nothing compared. Which methods a path takes is asked of the app itself:
//! each method is sent to the path, and anything but 405 (or the
//! "no such route" 404) means it is routed. So a route added to a router
//! and not documented fails, and so does a documented operation that no
//! router serves.
//!
//! Specification: the document is validated with `openapi-spec-validator`
//! from the Python venv scripts/test creates (`.venv`, or the Python named by
//! `CONSTELLATION_TEST_PYTHON`), and the conventions every client relies on
//! (problem+json errors, ids, links that resolve) are checked here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use constellation::SERVICES;
use constellation_platform::clock::SystemClock;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::VerifierConfig;
use constellation_web::host::{Context, Resources};
use serde_json::Value;
use tower::ServiceExt as _;

/// The methods probed; HEAD is left out because axum answers it wherever
/// GET is routed (as HTTP requires), so it is documented through GET.
const METHODS: [&str; 7] = ["GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "TRACE"];

/// The route paths in an axum router's `Debug` output (`RouteId(3): "/a/{b}"`).
fn router_paths(router: &axum::Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let mut paths = BTreeSet::new();
    let mut rest = debug.as_str();
    while let Some(at) = rest.find("RouteId(") {
        rest = &rest[at + "RouteId(".len()..];
        let Some(after) = rest.find("): \"") else {
            continue;
        };
        let candidate = &rest[after + 4..];
        if !rest[..after].bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(end) = candidate.find('"') {
            let path = &candidate[..end];
            if path.starts_with('/') && !path.contains("__private__") {
                paths.insert(path.to_owned());
            }
        }
    }
    paths
}

/// `/v1/kv/{namespace}/{*key}` as OpenAPI writes it: `/v1/kv/{namespace}/{key}`.
fn documented_form(path: &str) -> String {
    path.replace("{*", "{")
}

/// A concrete request path for a template: every parameter becomes a
/// plausible value (ids are 32 hex digits, as auth's are).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                if seg.contains("id") {
                    "0".repeat(32)
                } else {
                    "probe".to_owned()
                }
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `app` routes `method` on `path`: anything but 405 or the
/// fallback's "no such route" 404.
async fn routes(app: &axum::Router, method: &str, path: &str) -> bool {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(concrete(path))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let fallback_404 = status == StatusCode::NOT_FOUND
        && serde_json::from_slice::<Value>(&body).is_ok_and(|p| p["detail"] == "no such route");
    status != StatusCode::METHOD_NOT_ALLOWED && !fallback_404
}

/// Every `(METHOD, path)` of a document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let upper = method.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) || upper == "HEAD" {
                ops.insert((upper, path.clone()));
            }
        }
    }
    ops
}

/// A platform on the local backend in `dir`, and the context every
/// service's app is built from, as `serve` builds it.
fn local_context(dir: &std::path::Path) -> (Platform, Context) {
    let platform =
        Platform::local(dir.to_path_buf(), String::new(), Arc::new(SystemClock)).unwrap();
    let base = Context::new(
        platform.clone(),
        Resources::default(),
        MetricsSink::discard(),
        VerifierConfig::default(),
    );
    (platform, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_documented_and_every_operation_routed() {
    let dir = tempfile::tempdir().unwrap();
    let (_, base) = local_context(dir.path());
    let mut union = BTreeSet::new();
    for def in SERVICES {
        let ctx = base.for_service(Resources::from_env(def.resources, BackendKind::Local).unwrap());
        let app = (def.app)(&ctx).await.unwrap();
        let doc = serde_json::to_value((def.openapi)()).unwrap();

        let paths = router_paths(&app);
        let health = format!("/v1/{}/health", def.name);
        assert!(
            paths.contains(&health),
            "{}: the router's Debug output no longer lists its routes as expected \
             (found {paths:?}); update router_paths",
            def.name
        );
        let mut routed = BTreeSet::new();
        for path in &paths {
            for method in METHODS {
                if routes(&app, method, path).await {
                    routed.insert((method.to_owned(), documented_form(path)));
                }
            }
        }
        let documented = operations(&doc);
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&routed).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "{}: routed but not documented: {undocumented:?}; documented but not routed: {unrouted:?}",
            def.name
        );
        // A documented operation must also be reachable as documented
        // (e.g. `{key}` must really take the rest of the path).
        for (method, path) in &documented {
            assert!(
                routes(&app, method, path).await,
                "{}: {method} {path} is documented but not served",
                def.name
            );
            assert!(
                path == &format!("/v1/{}", def.name)
                    || path.starts_with(&format!("/v1/{}/", def.name)),
                "{}: {path} is outside the service's prefix",
                def.name
            );
        }
        union.extend(documented);
    }
    let merged = serde_json::to_value(constellation::openapi()).unwrap();
    assert_eq!(
        operations(&merged),
        union,
        "the merged document must hold every service's operations"
    );
}

/// Every `$ref` in `value` resolves in `doc`.
fn check_refs(doc: &Value, value: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                let pointer = target.strip_prefix('#').unwrap_or(target);
                assert!(
                    doc.pointer(pointer).is_some(),
                    "{at}: $ref {target} does not resolve"
                );
            }
            for (k, v) in map {
                check_refs(doc, v, &format!("{at}/{k}"));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_refs(doc, v, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_states_the_conventions_clients_rely_on() {
    let doc = serde_json::to_value(constellation::openapi()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    check_refs(&doc, &doc, "#");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let mut ids: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let service = path.split('/').nth(2).unwrap();
        let declared: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_ascii_uppercase());
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(id.starts_with(&format!("{service}_")), "{at}: id {id}");
            assert!(
                ids.insert(id.clone(), (method.clone(), path.clone()))
                    .is_none(),
                "{at}: operationId {id} is used twice"
            );
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: BTreeSet<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{at}: path parameter {p}");
                    p["name"].as_str().unwrap()
                })
                .collect();
            assert_eq!(in_path, declared, "{at}: path parameters");

            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{at}: no 500");
            let secured = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if secured {
                assert!(responses.contains_key("401"), "{at}: secured without 401");
            }
            let json_body = op["requestBody"]["content"]
                .get("application/json")
                .is_some();
            if json_body {
                for status in ["400", "413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{at}: JSON body without {status}"
                    );
                }
            }
            for (status, response) in responses {
                assert!(
                    response["headers"]["x-request-id"].is_object(),
                    "{at} {status}: no x-request-id header"
                );
                if status.as_str() >= "400" {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{at} {status}: not problem+json"
                    );
                }
                if status == "429" || status == "503" {
                    assert!(
                        response["headers"]["Retry-After"].is_object(),
                        "{at} {status}: no Retry-After"
                    );
                }
            }
        }
    }

    // Every link names an operation that exists, and only its parameters.
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for response in op["responses"].as_object().unwrap().values() {
                for (name, link) in response["links"].as_object().into_iter().flatten() {
                    let target = link["operationId"].as_str().unwrap();
                    let (method, path) = ids
                        .get(target)
                        .unwrap_or_else(|| panic!("link {name}: no operation {target}"));
                    let target_op = &doc["paths"][path][method];
                    let names: BTreeSet<String> = target_op["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            format!(
                                "{}.{}",
                                p["in"].as_str().unwrap(),
                                p["name"].as_str().unwrap()
                            )
                        })
                        .collect();
                    for param in link["parameters"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                    {
                        let qualified = if param.contains('.') {
                            param.clone()
                        } else {
                            format!("path.{param}")
                        };
                        assert!(
                            names.contains(&qualified)
                                || names.iter().any(|n| n.ends_with(&format!(".{param}"))),
                            "link {name} to {target}: no parameter {param}"
                        );
                    }
                    if link.get("requestBody").is_some() {
                        assert!(
                            target_op["requestBody"].is_object(),
                            "link {name}: {target} takes no body"
                        );
                    }
                }
            }
        }
    }
}

/// The Python of the venv scripts/test creates, which has
/// `openapi-spec-validator` (moto depends on it; scripts/schemathesis installs it).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("CONSTELLATION_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let python = python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/test once (it creates .venv), or set \
         CONSTELLATION_TEST_PYTHON to a Python with openapi-spec-validator",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, constellation::openapi().to_pretty_json().unwrap()).unwrap();
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             from openapi_spec_validator import OpenAPIV31SpecValidator\n\
             spec, _ = read_from_filename(sys.argv[1])\n\
             validate(spec, cls=OpenAPIV31SpecValidator)\n\
             print('valid OpenAPI 3.1')",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the document is not valid OpenAPI 3.1:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The most characters a string matching `pattern` can have, or `None` when
/// the pattern does not bound it. Knows the ECMA-262 subset our documents use:
/// anchors, classes, `\uXXXX` and one-character escapes, groups (capturing,
/// `(?:`, and the zero-width `(?=`/`(?!`), alternation, and the quantifiers
/// `?`, `*`, `+`, `{n}`, `{m,n}` and `{m,}`.
fn pattern_max_chars(pattern: &str) -> Option<usize> {
    fn escape_len(c: &[char], i: usize) -> usize {
        if c.get(i + 1) == Some(&'u') { 6 } else { 2 }
    }
    /// The sequence from `i` up to `)` or the end: (its bound, where it ended).
    fn alternatives(c: &[char], mut i: usize) -> (Option<usize>, usize) {
        let mut best = Some(0);
        let mut current = Some(0);
        while i < c.len() && c[i] != ')' {
            if c[i] == '|' {
                best = best.zip(current).map(|(a, b)| a.max(b));
                current = Some(0);
                i += 1;
                continue;
            }
            let (atom, next) = match c[i] {
                '^' | '$' => (Some(0), i + 1),
                '\\' => (Some(1), i + escape_len(c, i)),
                '[' => {
                    let mut j = i + 1;
                    if c.get(j) == Some(&'^') {
                        j += 1;
                    }
                    if c.get(j) == Some(&']') {
                        j += 1;
                    }
                    while j < c.len() && c[j] != ']' {
                        j += if c[j] == '\\' { escape_len(c, j) } else { 1 };
                    }
                    (Some(1), j + 1)
                }
                '(' => {
                    let (zero_width, start) = match (c.get(i + 1), c.get(i + 2)) {
                        (Some('?'), Some('=' | '!')) => (true, i + 3),
                        (Some('?'), Some(':')) => (false, i + 3),
                        _ => (false, i + 1),
                    };
                    let (inner, end) = alternatives(c, start);
                    (if zero_width { Some(0) } else { inner }, end + 1)
                }
                _ => (Some(1), i + 1),
            };
            let (times, after) = match c.get(next) {
                Some('?') => (Some(1), next + 1),
                Some('*' | '+') => (None, next + 1),
                Some('{') => {
                    let close = next + c[next..].iter().position(|&x| x == '}').unwrap();
                    let inside: String = c[next + 1..close].iter().collect();
                    let max = match inside.split_once(',') {
                        None => Some(inside.parse::<usize>().unwrap()),
                        Some((_, "")) => None,
                        Some((_, max)) => Some(max.parse::<usize>().unwrap()),
                    };
                    (max, close + 1)
                }
                _ => (Some(1), next),
            };
            // A zero-width atom repeated is still zero characters.
            let bound = match (atom, times) {
                (Some(0), _) => Some(0),
                (a, t) => a.zip(t).map(|(a, t)| a * t),
            };
            current = current.zip(bound).map(|(a, b)| a + b);
            i = after;
        }
        (best.zip(current).map(|(a, b)| a.max(b)), i)
    }
    let chars: Vec<char> = pattern.chars().collect();
    alternatives(&chars, 0).0
}

#[test]
fn pattern_bounds_are_read_as_written() {
    assert_eq!(pattern_max_chars("^[0-9a-f]{32}$"), Some(32));
    assert_eq!(pattern_max_chars("^[A-Z0-9][A-Z0-9-]{0,31}$"), Some(32));
    assert_eq!(pattern_max_chars(r"^[\u0021-\u007e]{1,64}$"), Some(64));
    assert_eq!(
        pattern_max_chars(r"^(?=[0-9.]*[1-9])[0-9]{1,7}(\.[0-9]{1,4})?$"),
        Some(12)
    );
    assert_eq!(pattern_max_chars("^(?:ab|cde)x?$"), Some(4));
    assert_eq!(pattern_max_chars(r"^[\]a]{2}$"), Some(2));
    assert_eq!(pattern_max_chars("^a*$"), None);
    assert_eq!(pattern_max_chars("^a{2,}$"), None);
    assert_eq!(pattern_max_chars("^(?:a|b+)$"), None);
}

/// Room for one member or item in a pretty-printed body: a newline and an
/// indent, and the separator.
const LAYOUT_BYTES: usize = 64;

/// A JSON string of `chars` characters, each escaped in `each` bytes.
fn escaped(chars: usize, each: usize) -> usize {
    2 + each * chars
}

/// The longest a JSON text valid against `schema` can reasonably be: every
/// string at its longest with every character written as the longest escape
/// of one (a `\uXXXX\uXXXX` surrogate pair, 12 bytes, which is what
/// `json.dumps` sends for an emoji; an enum value's or a property name's
/// ASCII as `\u00XX`, 6 bytes), every array at `maxItems`, every property
/// present, numbers and dates in 64 bytes, and [`LAYOUT_BYTES`] of
/// indentation per member or item. `Err` names what is unbounded. JSON
/// itself bounds neither a number's digits nor whitespace, nor RFC 3339 a
/// fraction of a second: a client that pads those is not a reasonable one.
fn worst_case_bytes(doc: &Value, schema: &Value, at: &str) -> Result<usize, String> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
        None => schema,
    };
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema[key].as_array() {
            let mut max = 0;
            for option in options {
                max = max.max(worst_case_bytes(doc, option, at)?);
            }
            return Ok(max);
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        let mut min = None::<usize>;
        for part in all {
            if let Ok(n) = worst_case_bytes(doc, part, at) {
                min = Some(min.map_or(n, |m| m.min(n)));
            }
        }
        return min.ok_or_else(|| format!("{at}: no part of allOf is bounded"));
    }
    if let Some(values) = schema["enum"].as_array() {
        return Ok(values
            .iter()
            .map(|v| match v {
                Value::String(s) => escaped(s.chars().count(), 6),
                other => other.to_string().len(),
            })
            .max()
            .unwrap_or(0));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ if schema.get("properties").is_some() => vec!["object"],
        _ => return Err(format!("{at}: no type")),
    };
    let mut max = 0;
    for t in types {
        let n = match t {
            "null" | "boolean" | "integer" | "number" => 64,
            "string" => {
                let chars = match schema["maxLength"].as_u64() {
                    Some(n) => usize::try_from(n).unwrap(),
                    None => match (schema["format"].as_str(), schema["pattern"].as_str()) {
                        (Some("uuid" | "date" | "date-time"), _) => 64,
                        (_, Some(p)) => pattern_max_chars(p)
                            .ok_or_else(|| format!("{at}: the pattern {p} bounds no length"))?,
                        _ => return Err(format!("{at}: a string without maxLength")),
                    },
                };
                escaped(chars, 12)
            }
            "array" => {
                let items = schema["maxItems"]
                    .as_u64()
                    .ok_or_else(|| format!("{at}: an array without maxItems"))?;
                let item = worst_case_bytes(doc, &schema["items"], &format!("{at}[]"))?;
                2 + usize::try_from(items).unwrap() * (item + LAYOUT_BYTES)
            }
            "object" => {
                if schema["additionalProperties"] != Value::Bool(false) {
                    return Err(format!("{at}: an object open to other properties"));
                }
                let mut n = 2;
                for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                    n += escaped(name.chars().count(), 6) + 1 + LAYOUT_BYTES;
                    n += worst_case_bytes(doc, property, &format!("{at}.{name}"))?;
                }
                n
            }
            other => return Err(format!("{at}: type {other}")),
        };
        max = max.max(n);
    }
    Ok(max)
}

/// A schema-valid body is never refused for its size, and every body is
/// bounded, not far past that: for each operation that takes JSON, a body
/// as long as the longest the document allows ([`worst_case_bytes`]) is
/// read and parsed (here it is one unterminated string, so the answer is
/// the 400 `malformed-body` problem, which proves the body was read), and a
/// body four times the service's longest and 16 KiB more is refused with 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_body_the_document_allows_fits_its_route() {
    use constellation_auth::signing::{SigningConfig, load_issuer};
    use constellation_core::OrgId;
    use constellation_core::auth::{AccountId, Principal, Role};

    let dir = tempfile::tempdir().unwrap();
    let (platform, base) = local_context(dir.path());
    let issuer = load_issuer(&platform, &SigningConfig::default())
        .await
        .unwrap();
    // The strongest role, so that no role check answers before the body is read.
    let principal = Principal {
        account: AccountId::from_bytes([1; 16]),
        org: OrgId::parse("org-limits").unwrap(),
        role: Role::Owner,
    };
    let bearer = format!(
        "Bearer {}",
        issuer
            .issue(&principal, time::OffsetDateTime::now_utc())
            .token
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for def in SERVICES {
        let ctx = base.for_service(Resources::from_env(def.resources, BackendKind::Local).unwrap());
        let app = (def.app)(&ctx).await.unwrap();
        let doc = serde_json::to_value((def.openapi)()).unwrap();
        let mut bodies = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
                    let at = format!("{} {path}", method.to_ascii_uppercase());
                    let worst = worst_case_bytes(&doc, schema, "body")
                        .unwrap_or_else(|e| panic!("{at}: the document bounds no body size: {e}"));
                    bodies.push((method.to_ascii_uppercase(), path.clone(), at, worst));
                }
            }
        }
        // The service's one limit is for its longest body.
        let too_long = 4 * bodies.iter().map(|b| b.3).max().unwrap_or(0) + (16 << 10);
        for (method, path, at, worst) in bodies {
            for (len, expected) in [(worst, 400), (too_long, 413)] {
                let mut body = vec![b'x'; len];
                body[0] = b'"';
                let request = Request::builder()
                    .method(Method::from_bytes(method.as_bytes()).unwrap())
                    .uri(concrete(&path))
                    .header("authorization", &bearer)
                    .header("content-type", "application/json")
                    .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                    .header("if-match", format!("\"{}\"", "0".repeat(32)))
                    .body(Body::from(body))
                    .unwrap();
                let response = app.clone().oneshot(request).await.unwrap();
                let status = response.status().as_u16();
                let problem = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let expected_type = if expected == 400 {
                    "urn:constellation:problem:malformed-body"
                } else {
                    "urn:constellation:problem:payload-too-large"
                };
                let problem_type = serde_json::from_slice::<Value>(&problem)
                    .ok()
                    .and_then(|p| p["type"].as_str().map(str::to_owned));
                if status != expected || problem_type.as_deref() != Some(expected_type) {
                    failures.push(format!(
                        "{at}: a {len}-byte body (the document allows {worst}) got {status}: {}",
                        String::from_utf8_lossy(&problem)
                    ));
                }
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} operations take JSON");
}
