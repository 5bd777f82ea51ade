//! The verification rules, one rejection at a time, against a key set in
//! memory: every case here is what each service's verifier decides.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::OrgId;
use crate::auth::{AccountId, Role};

const EXPECTED: Expected<'static> = Expected {
    issuer: "constellation",
    audience: "constellation-api",
};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn fx_principal() -> Principal {
    Principal {
        account: AccountId::from_bytes([7; 16]),
        org: OrgId::parse("acme").unwrap(),
        role: Role::Staff,
    }
}

struct Fx {
    key: SigningKey,
    set: PublicKeySet,
    now: OffsetDateTime,
}

fn fx() -> Fx {
    let now = OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap();
    let key = SigningKey::from_seed([1; 32]);
    Fx {
        set: PublicKeySet::of(&key.public_key(), now),
        key,
        now,
    }
}

/// Another key, never published.
fn fx_stranger() -> SigningKey {
    SigningKey::from_seed([2; 32])
}

impl Fx {
    fn issue(&self) -> (String, Claims) {
        let claims = access_claims(EXPECTED, &fx_principal(), self.now, "fx-jti".to_owned());
        (self.key.sign(&claims), claims)
    }

    fn header(&self) -> Value {
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": self.key.kid()})
    }

    fn claims(&self) -> Value {
        let now = self.now.unix_timestamp();
        json!({
            "iss": "constellation", "aud": "constellation-api",
            "sub": "07070707070707070707070707070707", "org": "acme", "role": "staff",
            "exp": now + 900, "iat": now, "nbf": now, "jti": "fx",
        })
    }

    /// A token signed with the real key over `header` and `claims`.
    fn forge(&self, header: Value, claims: Value) -> String {
        sign_with(&self.key, &header, &claims)
    }

    fn verify(&self, token: &str) -> Result<Claims, Rejection> {
        self.set.verify(token, EXPECTED, self.now)
    }

    fn verify_at(&self, token: &str, now: OffsetDateTime) -> Result<Claims, Rejection> {
        self.set.verify(token, EXPECTED, now)
    }
}

fn sign_with(key: &SigningKey, header: &Value, claims: &Value) -> String {
    key.sign_parts(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

#[test]
fn sign_then_verify_round_trips() {
    let fx = fx();
    let (token, claims) = fx.issue();
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(
        (claims.iat, claims.nbf),
        (fx.now.unix_timestamp(), claims.iat)
    );
    assert_eq!(
        (claims.iss.as_str(), claims.aud.as_str()),
        ("constellation", "constellation-api")
    );
    assert_eq!(token.split('.').count(), 3);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header, fx.header());
    let verified = fx.verify(&token).unwrap();
    assert_eq!(verified, claims);
    assert_eq!(Principal::from(&verified), fx_principal());
}

#[test]
fn a_forged_token_with_valid_parts_verifies() {
    // The control for every rejection below: the forging helper is sound.
    let fx = fx();
    let token = fx.forge(fx.header(), fx.claims());
    assert_eq!(fx.verify(&token).unwrap().jti, "fx");
}

#[test]
fn the_jwks_and_a_bare_key_verify_like_the_stored_set() {
    let fx = fx();
    let (token, claims) = fx.issue();
    let jwks = fx.set.jwks(fx.now);
    assert_eq!(jwks.verify(&token, EXPECTED, fx.now), Ok(claims.clone()));
    let public = fx.key.public_key();
    assert_eq!(
        verify(
            &token,
            |kid| (kid == public.kid()).then_some(public),
            EXPECTED,
            fx.now
        ),
        Ok(claims)
    );
    // The same rules apply whatever the key source.
    let stranger = Jwks {
        keys: vec![PublicKeyEntry::new(&fx_stranger().public_key(), fx.now).jwk()],
    };
    assert_eq!(
        stranger.verify(&token, EXPECTED, fx.now),
        Err(Rejection::UnknownKey)
    );
    let expired = fx.now + ACCESS_TOKEN_TTL + CLOCK_LEEWAY;
    assert_eq!(
        jwks.verify(&token, EXPECTED, expired),
        Err(Rejection::Expired)
    );
}

#[test]
fn rejects_a_missing_token() {
    let fx = fx();
    assert_eq!(fx.verify(""), Err(Rejection::Missing));
}

#[test]
fn rejects_alg_none_in_any_casing() {
    let fx = fx();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = with(fx.header(), "alg", json!(alg));
        let unsigned = format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(fx.claims().to_string().as_bytes())
        );
        assert_eq!(
            fx.verify(&unsigned),
            Err(Rejection::Algorithm),
            "{alg} unsigned"
        );
        let signed = fx.forge(header, fx.claims());
        assert_eq!(
            fx.verify(&signed),
            Err(Rejection::Algorithm),
            "{alg} signed"
        );
    }
}

#[test]
fn rejects_any_algorithm_but_eddsa() {
    let fx = fx();
    for alg in [
        json!("HS256"),
        json!("RS256"),
        json!("ES256"),
        json!("Ed25519"),
        json!("eddsa"),
        json!("EDDSA"),
        json!("EdDSA "),
        json!(["EdDSA"]),
        json!(null),
    ] {
        let token = fx.forge(with(fx.header(), "alg", alg.clone()), fx.claims());
        assert_eq!(fx.verify(&token), Err(Rejection::Algorithm), "{alg}");
    }
    let token = fx.forge(without(fx.header(), "alg"), fx.claims());
    assert_eq!(fx.verify(&token), Err(Rejection::Algorithm));
}

#[test]
fn rejects_hs256_signed_with_the_public_key() {
    let fx = fx();
    let public = fx.key.public_key();
    let header = with(fx.header(), "alg", json!("HS256"));
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(fx.claims().to_string().as_bytes())
    );
    // As raw key bytes, and as the JWKS `x` text some libraries use.
    let raw = URL_SAFE_NO_PAD.decode(public.to_base64url()).unwrap();
    for secret in [raw, public.to_base64url().into_bytes()] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        let token = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(fx.verify(&token), Err(Rejection::Algorithm));
    }
}

#[test]
fn rejects_a_bad_signature() {
    let fx = fx();
    let (token, _) = fx.issue();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[5] ^= 0x01;
    let flipped = format!("{input}.{}", b64(&sig));
    assert_eq!(fx.verify(&flipped), Err(Rejection::Signature));

    // Claims changed after signing (a member promoting themselves).
    let (h, rest) = token.split_once('.').unwrap();
    let (_, s) = rest.split_once('.').unwrap();
    let owner = with(fx.claims(), "role", json!("owner"));
    let tampered = format!("{h}.{}.{s}", b64(owner.to_string().as_bytes()));
    assert_eq!(fx.verify(&tampered), Err(Rejection::Signature));

    // Signed by another key under our kid.
    let other = sign_with(&fx_stranger(), &fx.header(), &fx.claims());
    assert_eq!(fx.verify(&other), Err(Rejection::Signature));

    // A signature of the wrong length, and an empty one.
    let short = format!("{input}.{}", b64(&sig[..63]));
    assert_eq!(fx.verify(&short), Err(Rejection::Signature));
    assert_eq!(fx.verify(&format!("{input}.")), Err(Rejection::Signature));
}

#[test]
fn rejects_a_wrong_issuer() {
    let fx = fx();
    let token = fx.forge(fx.header(), with(fx.claims(), "iss", json!("evil")));
    assert_eq!(fx.verify(&token), Err(Rejection::Issuer));
}

#[test]
fn rejects_a_wrong_audience() {
    let fx = fx();
    let token = fx.forge(fx.header(), with(fx.claims(), "aud", json!("another-api")));
    assert_eq!(fx.verify(&token), Err(Rejection::Audience));
}

#[test]
fn rejects_a_wrong_type() {
    let fx = fx();
    for typ in [json!("JWT"), json!("refresh+jwt"), json!(""), json!(1)] {
        let token = fx.forge(with(fx.header(), "typ", typ.clone()), fx.claims());
        assert_eq!(fx.verify(&token), Err(Rejection::Type), "{typ}");
    }
    let token = fx.forge(without(fx.header(), "typ"), fx.claims());
    assert_eq!(fx.verify(&token), Err(Rejection::Type));
    // RFC 9068 also allows the media-type spelling.
    let token = fx.forge(
        with(fx.header(), "typ", json!("application/at+jwt")),
        fx.claims(),
    );
    assert!(fx.verify(&token).is_ok());
}

#[test]
fn rejects_an_expired_token() {
    let fx = fx();
    let (token, _) = fx.issue();
    let last_second = fx.now + ACCESS_TOKEN_TTL - Duration::seconds(1);
    assert!(
        fx.verify_at(&token, last_second).is_ok(),
        "valid to the last second"
    );
    let in_leeway = fx.now + ACCESS_TOKEN_TTL + CLOCK_LEEWAY - Duration::seconds(1);
    assert!(
        fx.verify_at(&token, in_leeway).is_ok(),
        "clock skew tolerated"
    );
    let past = fx.now + ACCESS_TOKEN_TTL + CLOCK_LEEWAY;
    assert_eq!(fx.verify_at(&token, past), Err(Rejection::Expired));
}

#[test]
fn rejects_a_token_not_yet_valid() {
    let fx = fx();
    let later = fx.now.unix_timestamp() + 120;
    let token = fx.forge(fx.header(), with(fx.claims(), "nbf", json!(later)));
    assert_eq!(fx.verify(&token), Err(Rejection::NotYetValid));
    let token = fx.forge(fx.header(), with(fx.claims(), "iat", json!(later)));
    assert_eq!(fx.verify(&token), Err(Rejection::NotYetValid));
    // Within the leeway is accepted.
    let soon = fx.now.unix_timestamp() + 10;
    let token = fx.forge(fx.header(), with(fx.claims(), "nbf", json!(soon)));
    assert!(fx.verify(&token).is_ok());
}

#[test]
fn rejects_an_unknown_kid() {
    let fx = fx();
    let stranger = fx_stranger();
    let token = sign_with(
        &stranger,
        &with(fx.header(), "kid", json!(stranger.kid())),
        &fx.claims(),
    );
    assert_eq!(fx.verify(&token), Err(Rejection::UnknownKey));
    // Our own key under a made-up kid, and no kid at all.
    let token = fx.forge(with(fx.header(), "kid", json!("made-up")), fx.claims());
    assert_eq!(fx.verify(&token), Err(Rejection::UnknownKey));
    let token = fx.forge(without(fx.header(), "kid"), fx.claims());
    assert_eq!(fx.verify(&token), Err(Rejection::UnknownKey));
}

#[test]
fn rejects_a_key_past_its_not_after() {
    let fx = fx();
    let (token, _) = fx.issue();
    let mut set = fx.set.clone();
    let until = fx.now + Duration::minutes(1);
    set.keys[0].not_after = Some(until.unix_timestamp());
    assert!(
        set.verify(&token, EXPECTED, until - Duration::seconds(1))
            .is_ok()
    );
    assert_eq!(
        set.verify(&token, EXPECTED, until),
        Err(Rejection::UnknownKey)
    );
}

#[test]
fn rejects_key_references_in_the_header() {
    let fx = fx();
    // The attacker signs with their own key and points at it; nothing is
    // fetched or trusted, whatever the parameter.
    let attacker = fx_stranger();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": attacker.public_key().to_base64url()});
    for (param, value) in [
        ("jku", json!("https://evil.example/jwks.json")),
        ("jwk", jwk),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
    ] {
        let header = with(fx.header(), param, value);
        let token = sign_with(&attacker, &header, &fx.claims());
        assert_eq!(
            fx.verify(&token),
            Err(Rejection::UnknownKey),
            "{param} with the attacker's key"
        );
        let token = fx.forge(header, fx.claims());
        assert_eq!(
            fx.verify(&token),
            Err(Rejection::UnknownKey),
            "{param} even with our key"
        );
    }
}

#[test]
fn rejects_other_header_parameters_and_claims() {
    let fx = fx();
    let token = fx.forge(with(fx.header(), "crit", json!(["exp"])), fx.claims());
    assert_eq!(fx.verify(&token), Err(Rejection::Malformed));
    let token = fx.forge(fx.header(), with(fx.claims(), "admin", json!(true)));
    assert_eq!(fx.verify(&token), Err(Rejection::Malformed));
    let token = fx.forge(fx.header(), without(fx.claims(), "org"));
    assert_eq!(fx.verify(&token), Err(Rejection::Malformed));
}

#[test]
fn rejects_extra_or_missing_segments() {
    let fx = fx();
    let (token, _) = fx.issue();
    let sig = token.rsplit('.').next().unwrap();
    for bad in [
        format!("{token}.{sig}"),
        format!("{token}."),
        format!("{token}.a.b"),
        token.rsplit_once('.').unwrap().0.to_owned(),
        "a.b".to_owned(),
        ".".to_owned(),
        "..".to_owned(),
    ] {
        assert_eq!(fx.verify(&bad), Err(Rejection::Malformed), "{bad}");
    }
}

#[test]
fn rejects_non_base64url() {
    let fx = fx();
    let (token, _) = fx.issue();
    let parts: Vec<&str> = token.split('.').collect();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let sig = parts[2];
    // 64 bytes end in a character carrying 2 unused bits, which must be zero.
    let last = ALPHABET
        .iter()
        .position(|&c| c == *sig.as_bytes().last().unwrap())
        .unwrap();
    assert_eq!(last & 0b11, 0);
    let non_canonical = format!("{}{}", &sig[..sig.len() - 1], ALPHABET[last | 1] as char);
    for bad in [
        // Padding, the standard alphabet, stray characters.
        format!("{}=.{}.{}", parts[0], parts[1], sig),
        format!("{}.{}==.{}", parts[0], parts[1], sig),
        format!("{}.{}.+{}", parts[0], parts[1], &sig[1..]),
        format!("{}.{}./{}", parts[0], parts[1], &sig[1..]),
        format!("{}.{}!.{}", parts[0], parts[1], sig),
        format!("{} .{}.{}", parts[0], parts[1], sig),
        // Non-zero trailing bits (decodes to the same bytes when lenient).
        format!("{}.{}.{}", parts[0], parts[1], non_canonical),
        // Decodes, but not to a JSON object.
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], sig),
    ] {
        assert_ne!(bad, token);
        assert_eq!(fx.verify(&bad), Err(Rejection::Malformed), "{bad}");
    }
}

#[test]
fn rejects_a_refresh_token_presented_as_an_access_token() {
    let fx = fx();
    // An opaque refresh token: 256 bits, base64url, no dots.
    let raw: [u8; 32] = core::array::from_fn(|i| (i as u8).wrapping_mul(151).wrapping_add(7));
    assert_eq!(fx.verify(&b64(&raw)), Err(Rejection::Malformed));
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(fx.verify(&hex), Err(Rejection::Malformed));
}
