//! The case table (`cases.json`) against the package's functions, natively.
//! The Node suite (`packages/constellation-wasm/test/parity.test.mjs`) runs
//! the same table against the built package, so a rule cannot change on
//! one side only; and every problem here is checked against the one the
//! API itself renders (shared/web's `ApiError`), so the package cannot
//! drift from the API's `type`, `title`, `status`, `detail` and `field`.

// Native only: the API's rendering and the signing code are not built for wasm32.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::response::IntoResponse as _;
use constellation_wasm::rules;
use constellation_web::ApiError;
use constellation_web::error::ProblemType;
use serde_json::Value;

fn table() -> Value {
    serde_json::from_str(include_str!("cases.json")).unwrap()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Calls the function the package exports as `name`.
fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let arg = |i: usize| args.get(i).unwrap_or(&Value::Null);
    Ok(match name {
        "validateKvNamespace" => rules::kv_namespace(text(arg(0))),
        "validateKvKey" => rules::kv_key(text(arg(0))),
        "validateEmail" => rules::email(text(arg(0))),
        "validatePassword" => rules::password(text(arg(0)), text(arg(1))),
        "validateExpense" => rules::expense(arg(0), number(arg(1)))?,
        "validateSku" => rules::sku(text(arg(0))),
        "validateProduct" => rules::product(arg(0)),
        "validateOrder" => rules::order(arg(0)),
        "validateAnnouncement" => rules::announcement(arg(0), number(arg(1)))?,
        "parseMoney" => rules::parse_money(text(arg(0)), text(arg(1))),
        "sumAmounts" => rules::sum_amounts(arg(0), text(arg(1))),
        "formatMinor" => {
            // As the export reads it: a safe integer or a decimal integer string.
            let minor = match arg(0) {
                Value::Number(n) => n.as_i64().map(i128::from),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or("minor: must be an integer")?;
            Value::String(rules::format_amount(minor, text(arg(1)))?)
        }
        other => panic!("cases.json calls {other}, which the package does not export"),
    })
}

/// Renders the problem the API answers for `field` and `detail`.
fn api_problem(problem: ProblemType, field: &str, detail: &str) -> Value {
    let error = ApiError::Client {
        problem,
        detail: detail.to_owned(),
        field: Some(field.to_owned()),
    };
    let response = error.into_response();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let body = runtime
        .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn every_case_answers_as_the_table_says() {
    let table = table();
    let cases = table["cases"].as_array().unwrap();
    for (i, case) in cases.iter().enumerate() {
        let name = case["call"].as_str().unwrap();
        let args = case["args"].as_array().unwrap();
        let at = format!("case {i} ({name} {})", Value::Array(args.clone()));
        let got = call(name, args);
        if let Some(needle) = case.get("throws") {
            let err = got.expect_err(&at);
            assert!(err.contains(text(needle)), "{at}: threw {err:?}");
            continue;
        }
        let got = got.expect(&at);
        if let Some(returns) = case.get("returns") {
            assert_eq!(&got, returns, "{at}");
            continue;
        }
        assert_eq!(got["ok"], case["ok"], "{at}: answered {got}");
        if case["ok"] == true {
            if let Some(value) = case.get("value") {
                assert_eq!(&got["value"], value, "{at}");
            }
            continue;
        }
        let (want, problem) = (&case["problem"], &got["problem"]);
        assert_eq!(
            problem["type"],
            format!("urn:constellation:problem:{}", text(&want["type"])),
            "{at}: answered {problem}"
        );
        assert_eq!(problem["field"], want["field"], "{at}: answered {problem}");
        if let Some(detail) = want.get("detail") {
            assert_eq!(&problem["detail"], detail, "{at}");
        }
        assert_eq!(problem["status"], 400, "{at}");
    }
}

#[test]
fn problems_are_the_ones_the_api_renders() {
    let table = table();
    for case in table["cases"].as_array().unwrap() {
        if case["ok"] != false {
            continue;
        }
        let got = call(
            case["call"].as_str().unwrap(),
            case["args"].as_array().unwrap(),
        )
        .unwrap();
        let problem = &got["problem"];
        let kind = match text(&problem["type"]) {
            rules::INVALID_INPUT => ProblemType::InvalidInput,
            rules::MALFORMED_BODY => ProblemType::MalformedBody,
            other => panic!("a problem of type {other}"),
        };
        assert_eq!(kind.uri(), text(&problem["type"]));
        let api = api_problem(kind, text(&problem["field"]), text(&problem["detail"]));
        assert_eq!(&api, problem, "{}", case["call"]);
    }
}

#[test]
fn every_export_has_accepted_and_refused_cases() {
    let table = table();
    let cases = table["cases"].as_array().unwrap();
    for name in [
        "validateKvNamespace",
        "validateKvKey",
        "validateEmail",
        "validatePassword",
        "validateExpense",
        "validateSku",
        "validateProduct",
        "validateOrder",
        "validateAnnouncement",
        "parseMoney",
        "sumAmounts",
    ] {
        for ok in [true, false] {
            assert!(
                cases.iter().any(|c| c["call"] == name && c["ok"] == ok),
                "no case where {name} answers ok: {ok}"
            );
        }
    }
}

#[test]
fn currencies_are_the_ones_money_accepts() {
    let all = rules::currencies();
    let all = all.as_array().unwrap();
    assert!(all.len() > 100);
    for c in all {
        let code = text(&c["code"]);
        let one = match c["exponent"].as_u64().unwrap() {
            0 => "1".to_owned(),
            e => format!("0.{}1", "0".repeat(usize::try_from(e).unwrap() - 1)),
        };
        let parsed = rules::parse_money(&one, code);
        assert_eq!(parsed["value"]["minor"], 1, "{code}: {parsed}");
    }
}
