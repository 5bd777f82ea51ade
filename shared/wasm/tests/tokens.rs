//! The token fixtures the Node tests and the edge example verify
//! (`fixtures/tokens.json`): a JWKS and tokens minted by the signing code
//! auth issues access tokens with (`access_claims` + `SigningKey::sign`),
//! plus the forgeries that code cannot make (`alg: none`, HS256 with the
//! public key as secret, another `typ`, a `jku`, an unknown claim), each
//! with the answer the services give.
//!
//! Two tests keep the file honest: it must be exactly what the signing code
//! mints today (so a change to the token format shows up here, not in
//! production), and every token must verify as recorded, by core's
//! verifier and by the package's function. After a deliberate change,
//! rewrite it with
//! `CONSTELLATION_WRITE_FIXTURES=1 cargo test -p constellation-wasm --test tokens`.

// Native only: the API's rendering and the signing code are not built for wasm32.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::token::{
    Expected, Jwks, PublicKeySet, Rejection, SigningKey, access_claims,
};
use constellation_wasm::rules;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const ISSUER: &str = "constellation";
const AUDIENCE: &str = "constellation-api";
/// 2026-05-28T20:26:40Z.
const NOW: i64 = 1_780_000_000;

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokens.json")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn fx_now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

fn fx_principal() -> Principal {
    Principal {
        account: AccountId::from_bytes([0x5a; 16]),
        org: OrgId::parse("acme").unwrap(),
        role: Role::Staff,
    }
}

/// The key signing now, the one it replaced (still published), and one
/// that was never published.
const CURRENT: [u8; 32] = [1; 32];
const PREVIOUS: [u8; 32] = [2; 32];
const STRANGER: [u8; 32] = [3; 32];

/// A token as auth mints it: issued `age` ago, for `scope`, by `seed`.
fn minted(seed: [u8; 32], scope: Expected<'_>, age: Duration, jti: &str) -> String {
    let claims = access_claims(scope, &fx_principal(), fx_now() - age, jti.to_owned());
    SigningKey::from_seed(seed).sign(&claims)
}

fn expected() -> Expected<'static> {
    Expected {
        issuer: ISSUER,
        audience: AUDIENCE,
    }
}

/// A compact JWS over any header and payload, signed with `seed`'s key.
fn forged(seed: [u8; 32], header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    format!("{input}.{}", b64(&key.sign(input.as_bytes()).to_bytes()))
}

fn payload_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn kid(seed: [u8; 32]) -> String {
    SigningKey::from_seed(seed).kid().to_owned()
}

fn jwks() -> Jwks {
    let now = fx_now();
    let mut set = PublicKeySet::of(&SigningKey::from_seed(PREVIOUS).public_key(), now);
    set.keys
        .extend(PublicKeySet::of(&SigningKey::from_seed(CURRENT).public_key(), now).keys);
    set.jwks(now)
}

/// Every case: its name, the token, and the rejection it earns (`None`: accepted).
fn cases() -> Vec<(&'static str, String, Option<Rejection>)> {
    let fresh = Duration::minutes(1);
    let valid = minted(CURRENT, expected(), fresh, "jti-valid");
    let header = |alg: &str, typ: &str| json!({ "alg": alg, "typ": typ, "kid": kid(CURRENT) });
    let claims = payload_of(&valid);

    let mut bad_signature = valid.clone();
    let sig_start = bad_signature.rfind('.').unwrap() + 1;
    let mut sig = URL_SAFE_NO_PAD.decode(&bad_signature[sig_start..]).unwrap();
    sig[10] ^= 0x01;
    bad_signature.replace_range(sig_start.., &b64(&sig));

    let other = minted(CURRENT, expected(), fresh, "jti-other");
    let mut parts: Vec<&str> = valid.split('.').collect();
    let other_payload = other.split('.').nth(1).unwrap();
    parts[1] = other_payload;
    let swapped_payload = parts.join(".");

    let alg_none = format!(
        "{}.{}.",
        b64(header("none", "at+jwt").to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    // The classic confusion: HMAC keyed with the published public key.
    let hs256 = {
        let input = format!(
            "{}.{}",
            b64(header("HS256", "at+jwt").to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let x = &jwks().keys[0].x;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(x.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    let mut with_extra_claim = claims.clone();
    with_extra_claim["admin"] = json!(true);
    let mut jku = header("EdDSA", "at+jwt");
    jku["jku"] = json!("https://attacker.example/jwks.json");
    let mut crit = header("EdDSA", "at+jwt");
    crit["crit"] = json!(["exp"]);
    let no_kid = json!({ "alg": "EdDSA", "typ": "at+jwt" });
    let mut superuser = claims.clone();
    superuser["role"] = json!("superuser");

    let leeway = Duration::seconds(30);
    let ttl = Duration::minutes(15);
    vec![
        ("valid", valid.clone(), None),
        (
            "valid, signed by the previous key (still in the JWKS)",
            minted(PREVIOUS, expected(), fresh, "jti-previous"),
            None,
        ),
        (
            "valid, expired 29 s ago (within the leeway)",
            minted(
                CURRENT,
                expected(),
                ttl + leeway - Duration::seconds(1),
                "jti-leeway",
            ),
            None,
        ),
        (
            "valid, issued 30 s in the future (within the leeway)",
            minted(CURRENT, expected(), -leeway, "jti-early"),
            None,
        ),
        (
            "expired 30 s ago",
            minted(CURRENT, expected(), ttl + leeway, "jti-expired"),
            Some(Rejection::Expired),
        ),
        (
            "nbf 31 s in the future",
            minted(
                CURRENT,
                expected(),
                -leeway - Duration::seconds(1),
                "jti-future",
            ),
            Some(Rejection::NotYetValid),
        ),
        (
            "another issuer",
            minted(
                CURRENT,
                Expected {
                    issuer: "someone-else",
                    audience: AUDIENCE,
                },
                fresh,
                "jti-issuer",
            ),
            Some(Rejection::Issuer),
        ),
        (
            "another audience",
            minted(
                CURRENT,
                Expected {
                    issuer: ISSUER,
                    audience: "another-api",
                },
                fresh,
                "jti-audience",
            ),
            Some(Rejection::Audience),
        ),
        (
            "signed by a key not in the JWKS (wrong kid)",
            minted(STRANGER, expected(), fresh, "jti-stranger"),
            Some(Rejection::UnknownKey),
        ),
        ("bad signature", bad_signature, Some(Rejection::Signature)),
        (
            "payload swapped under a valid signature",
            swapped_payload,
            Some(Rejection::Signature),
        ),
        ("alg none", alg_none, Some(Rejection::Algorithm)),
        (
            "alg HS256 keyed with the public key",
            hs256,
            Some(Rejection::Algorithm),
        ),
        (
            "typ JWT",
            forged(CURRENT, &header("EdDSA", "JWT"), &claims),
            Some(Rejection::Type),
        ),
        (
            "a jku header pointing elsewhere",
            forged(CURRENT, &jku, &claims),
            Some(Rejection::UnknownKey),
        ),
        (
            "a crit header",
            forged(CURRENT, &crit, &claims),
            Some(Rejection::Malformed),
        ),
        (
            "no kid",
            forged(CURRENT, &no_kid, &claims),
            Some(Rejection::UnknownKey),
        ),
        (
            "an unknown claim",
            forged(CURRENT, &header("EdDSA", "at+jwt"), &with_extra_claim),
            Some(Rejection::Malformed),
        ),
        (
            "an unknown role",
            forged(CURRENT, &header("EdDSA", "at+jwt"), &superuser),
            Some(Rejection::Malformed),
        ),
        ("empty", String::new(), Some(Rejection::Missing)),
        (
            "not a JWS",
            "not-a-token".into(),
            Some(Rejection::Malformed),
        ),
        (
            "two parts",
            valid.rsplit_once('.').unwrap().0.to_owned(),
            Some(Rejection::Malformed),
        ),
    ]
}

/// The fixture file: the JWKS, the options, and each case with the answer
/// `verifyAccessToken` gives.
fn mint() -> Value {
    let cases: Vec<Value> = cases()
        .into_iter()
        .map(|(name, token, rejection)| {
            let expect = match rejection {
                None => json!({ "ok": true, "claims": payload_of(&token) }),
                Some(r) => json!({
                    "ok": false,
                    "error": rules::rejection_code(r),
                    "message": r.to_string(),
                }),
            };
            json!({ "name": name, "token": token, "expect": expect })
        })
        .collect();
    json!({
        "about": "Minted by shared/wasm/tests/tokens.rs with the signing code auth uses; \
                  rewrite with CONSTELLATION_WRITE_FIXTURES=1 cargo test -p constellation-wasm --test tokens",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": NOW,
        "jwks": jwks(),
        "cases": cases,
    })
}

fn committed() -> Value {
    serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap()
}

#[test]
fn the_fixtures_are_what_the_signing_code_mints() {
    let minted = mint();
    if std::env::var_os("CONSTELLATION_WRITE_FIXTURES").is_some() {
        let text = serde_json::to_string_pretty(&minted).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
    }
    assert_eq!(
        committed(),
        minted,
        "tests/fixtures/tokens.json is not what the signing code mints; rewrite it \
         (CONSTELLATION_WRITE_FIXTURES=1) if the change is deliberate"
    );
}

#[test]
fn every_fixture_verifies_as_recorded() {
    let fixtures = committed();
    let jwks: Jwks = serde_json::from_value(fixtures["jwks"].clone()).unwrap();
    let options = json!({ "issuer": ISSUER, "audience": AUDIENCE, "now": NOW });
    let cases = fixtures["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let expect = &case["expect"];
        // Core's verifier, which every service's verifier calls.
        let core = jwks.verify(token, expected(), fx_now());
        match &core {
            Ok(claims) => assert_eq!(expect["claims"], json!(claims), "{name}"),
            Err(r) => assert_eq!(expect["error"], rules::rejection_code(*r), "{name}"),
        }
        assert_eq!(expect["ok"], core.is_ok(), "{name}");
        // The package's function, with the JWKS as an object and as text.
        for set in [
            fixtures["jwks"].clone(),
            json!(fixtures["jwks"].to_string()),
        ] {
            let got = rules::verify_access_token(token, &set, &options).unwrap();
            assert_eq!(&got, expect, "{name}");
        }
    }
}

#[test]
fn every_rejection_has_a_fixture() {
    let fixtures = committed();
    for code in [
        "missing",
        "malformed",
        "algorithm",
        "type",
        "unknown-key",
        "signature",
        "expired",
        "not-yet-valid",
        "issuer",
        "audience",
    ] {
        assert!(
            fixtures["cases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["expect"]["error"] == code),
            "no fixture is rejected as {code}"
        );
    }
}

#[test]
fn bad_arguments_are_the_callers_mistake() {
    let jwks = json!({ "keys": [] });
    let now = json!({ "issuer": ISSUER, "audience": AUDIENCE, "now": NOW });
    assert!(rules::verify_access_token("", &json!("{"), &now).is_err());
    assert!(rules::verify_access_token("", &json!({}), &now).is_err());
    assert!(rules::verify_access_token("", &jwks, &json!({ "issuer": ISSUER })).is_err());
    assert!(
        rules::verify_access_token(
            "",
            &jwks,
            &json!({ "issuer": ISSUER, "audience": AUDIENCE })
        )
        .is_err()
    );
    // A key set of keys this verifier cannot use knows no kid.
    let foreign = json!({ "keys": [{ "kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r1" }] });
    let token = minted(CURRENT, expected(), Duration::minutes(1), "jti");
    let got = rules::verify_access_token(&token, &foreign, &now).unwrap();
    assert_eq!(got["error"], "unknown-key");
}
