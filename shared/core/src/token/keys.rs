//! Keys and key sets: Ed25519 signing and public keys with their `kid`s,
//! the public key set as stored, and the JWKS served to clients.
//!
//! Keys are read from and written to text (base64url without padding) here
//! and nowhere else, so the stored set, the JWKS and the signer agree on one
//! encoding; errors never carry the text they failed on.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::{ALGORITHM, Expected, Header, Rejection, TOKEN_TYPE, verify};
use crate::auth::Claims;

/// A key that could not be read from its text form. Never carries the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The field is not 32 bytes of base64url (no padding).
    #[error("`{0}` is not 32 bytes of base64url")]
    Encoding(&'static str),
    /// The bytes are not an Ed25519 public key.
    #[error("`x` is not an Ed25519 public key")]
    NotAKey,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_32(field: &'static str, text: &str) -> Result<[u8; 32], KeyError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or(KeyError::Encoding(field))
}

/// The RFC 7638 thumbprint of an Ed25519 public key: its `kid`.
fn thumbprint(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64(key.as_bytes())
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// An Ed25519 private key that signs access tokens. Its `Debug` shows the
/// `kid` only.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl SigningKey {
    /// The key of a 32-byte seed. The seed must come from a secure random
    /// source (this crate has none: it stays free of I/O).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let kid = thumbprint(&key.verifying_key());
        Self { key, kid }
    }

    /// Reads the base64url (no padding) seed written by [`SigningKey::to_base64url`].
    pub fn from_base64url(d: &str) -> Result<Self, KeyError> {
        Ok(Self::from_seed(b64_32("d", d)?))
    }

    /// The seed as base64url (no padding), for the signing secret. A secret:
    /// never log it.
    pub fn to_base64url(&self) -> String {
        b64(self.key.as_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The key's id: the thumbprint of its public half.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` as an access token: the compact JWS with header
    /// `{"alg":"EdDSA","typ":"at+jwt","kid":<this key's kid>}`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: ALGORITHM,
            typ: TOKEN_TYPE,
            kid: &self.kid,
        };
        // Serialising these plain structs cannot fail; were it to, the token
        // would be empty JSON and fail verification (closed).
        self.sign_parts(
            &serde_json::to_vec(&header).unwrap_or_default(),
            &serde_json::to_vec(claims).unwrap_or_default(),
        )
    }

    pub(super) fn sign_parts(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key that verifies access tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads the base64url (no padding) key of a key set's `x`.
    pub fn from_base64url(x: &str) -> Result<Self, KeyError> {
        let bytes = b64_32("x", x)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyError::NotAKey)
    }

    /// The key as base64url (no padding): a key set's `x`.
    pub fn to_base64url(&self) -> String {
        b64(self.0.as_bytes())
    }

    /// The key's id: its RFC 7638 JWK thumbprint.
    pub fn kid(&self) -> String {
        thumbprint(&self.0)
    }
}

impl PublicKey {
    /// Whether `signature` is this key's strict Ed25519 signature of `message`.
    pub(super) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        <[u8; 64]>::try_from(signature).is_ok_and(|sig| {
            self.0
                .verify_strict(message, &Signature::from_bytes(&sig))
                .is_ok()
        })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.kid()).finish()
    }
}

// ---------------------------------------------------------------------------
// Key-set documents

/// The public key set as stored: every key a token may name, with the time a
/// retired one stops being valid. Every service reads it; only the auth
/// function writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeySet {
    /// The keys, oldest first. `{}` reads as no keys.
    #[serde(default)]
    pub keys: Vec<PublicKeyEntry>,
}

/// One key of a [`PublicKeySet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyEntry {
    /// The key's id (its thumbprint).
    pub kid: String,
    /// base64url (no padding) of the 32-byte Ed25519 public key.
    pub x: String,
    /// When it was added (unix seconds).
    pub created_at: i64,
    /// When a retired key stops being valid (unix seconds); `None` while current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
}

impl PublicKeyEntry {
    /// The entry of a current (unretired) key, added at `now`.
    pub fn new(key: &PublicKey, now: OffsetDateTime) -> Self {
        Self {
            kid: key.kid(),
            x: key.to_base64url(),
            created_at: now.unix_timestamp(),
            not_after: None,
        }
    }

    /// Whether a token signed by this key may be accepted at `now`.
    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_after.is_none_or(|t| now.unix_timestamp() < t)
    }

    /// The key itself.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        PublicKey::from_base64url(&self.x)
    }

    /// The key as an RFC 7517 JWK.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: self.x.clone(),
            kid: self.kid.clone(),
            key_use: "sig".to_owned(),
            alg: ALGORITHM.to_owned(),
        }
    }
}

impl PublicKeySet {
    /// A set of one current key.
    pub fn of(key: &PublicKey, now: OffsetDateTime) -> Self {
        Self {
            keys: vec![PublicKeyEntry::new(key, now)],
        }
    }

    /// Whether the set names `kid` (valid or not).
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// The key `kid`, if it is in the set, usable, and valid at `now`.
    pub fn find(&self, kid: &str, now: OffsetDateTime) -> Option<PublicKey> {
        self.keys
            .iter()
            .filter(|k| k.kid == kid && k.valid_at(now))
            .find_map(|k| k.public_key().ok())
    }

    /// The RFC 7517 JWKS of every usable key valid at `now`.
    pub fn jwks(&self, now: OffsetDateTime) -> Jwks {
        Jwks {
            keys: self
                .keys
                .iter()
                .filter(|k| k.valid_at(now) && k.public_key().is_ok())
                .map(PublicKeyEntry::jwk)
                .collect(),
        }
    }

    /// Verifies `token` against this set at `now` (see [`verify`]).
    pub fn verify(
        &self,
        token: &str,
        expected: Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<Claims, Rejection> {
        verify(token, |kid| self.find(kid, now), expected, now)
    }
}

/// A JSON Web Key Set (RFC 7517) of Ed25519 keys: what auth serves at
/// `/v1/auth/.well-known/jwks.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// One key of a [`Jwks`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `OKP`.
    pub kty: String,
    /// Curve: `Ed25519`.
    pub crv: String,
    /// base64url (no padding) of the 32-byte public key.
    pub x: String,
    /// The key's id.
    pub kid: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
    /// `EdDSA`.
    pub alg: String,
}

impl Jwks {
    /// The key `kid`, if the set holds it as an Ed25519 signing key for `EdDSA`.
    pub fn find(&self, kid: &str) -> Option<PublicKey> {
        self.keys
            .iter()
            .filter(|k| {
                k.kid == kid
                    && k.kty == "OKP"
                    && k.crv == "Ed25519"
                    && k.key_use == "sig"
                    && k.alg == ALGORITHM
            })
            .find_map(|k| PublicKey::from_base64url(&k.x).ok())
    }

    /// Verifies `token` against this set at `now` (see [`verify`]); a JWKS
    /// lists valid keys only, so any listed key is accepted.
    pub fn verify(
        &self,
        token: &str,
        expected: Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<Claims, Rejection> {
        verify(token, |kid| self.find(kid), expected, now)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{Value, json};
    use time::Duration;

    use super::*;

    // RFC 8037, appendix A.1 and A.3: an Ed25519 key and its thumbprint.
    const RFC_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const RFC_KID: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";

    fn fx_now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_750_000_000).unwrap()
    }

    #[test]
    fn keys_and_kids_match_rfc_8037() {
        let key = SigningKey::from_base64url(RFC_D).unwrap();
        assert_eq!(key.to_base64url(), RFC_D);
        assert_eq!(key.public_key().to_base64url(), RFC_X);
        assert_eq!(key.kid(), RFC_KID);
        let public = PublicKey::from_base64url(RFC_X).unwrap();
        assert_eq!(public, key.public_key());
        assert_eq!(public.kid(), RFC_KID);
    }

    #[test]
    fn keys_read_only_32_bytes_of_unpadded_base64url() {
        for bad in [
            "",
            "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=",
            "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2",
            "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2AA",
        ] {
            assert_eq!(
                SigningKey::from_base64url(bad).map(|k| k.kid().to_owned()),
                Err(KeyError::Encoding("d")),
                "{bad}"
            );
            assert_eq!(
                PublicKey::from_base64url(bad),
                Err(KeyError::Encoding("x")),
                "{bad}"
            );
        }
        assert_eq!(
            PublicKey::from_base64url(NOT_A_POINT),
            Err(KeyError::NotAKey)
        );
    }

    /// 32 bytes that decode to no point of the curve.
    const NOT_A_POINT: &str = "AgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn debug_output_shows_the_kid_and_no_key_material() {
        let key = SigningKey::from_base64url(RFC_D).unwrap();
        let shown = format!("{key:?} {:?}", key.public_key());
        assert!(shown.contains(RFC_KID), "{shown}");
        assert!(!shown.contains(RFC_D) && !shown.contains(RFC_X), "{shown}");
    }

    #[test]
    fn the_stored_key_set_has_one_exact_format() {
        let now = fx_now();
        let key = SigningKey::from_base64url(RFC_D).unwrap().public_key();
        let mut set = PublicKeySet::of(&key, now);
        assert_eq!(
            serde_json::to_value(&set).unwrap(),
            json!({"keys": [{"kid": RFC_KID, "x": RFC_X, "created_at": 1_750_000_000}]})
        );
        set.keys[0].not_after = Some(1_750_000_060);
        let text = serde_json::to_string(&set).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap()["keys"][0]["not_after"],
            json!(1_750_000_060)
        );
        assert_eq!(serde_json::from_str::<PublicKeySet>(&text).unwrap(), set);
        // A `{}` placeholder is an empty set; anything unknown is refused.
        assert_eq!(
            serde_json::from_str::<PublicKeySet>("{}").unwrap(),
            PublicKeySet::default()
        );
        for bad in [
            r#"{"keys": [], "extra": 1}"#,
            r#"{"keys": [{"kid": "k", "x": "x", "created_at": 1, "d": "secret"}]}"#,
            r#"{"keys": [{"kid": "k", "created_at": 1}]}"#,
        ] {
            assert!(serde_json::from_str::<PublicKeySet>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn find_skips_retired_unusable_and_unknown_keys() {
        let now = fx_now();
        let current = SigningKey::from_seed([1; 32]).public_key();
        let retired = SigningKey::from_seed([2; 32]).public_key();
        let mut set = PublicKeySet::of(&retired, now);
        set.keys[0].not_after = Some((now + Duration::minutes(1)).unix_timestamp());
        set.keys.push(PublicKeyEntry::new(&current, now));
        set.keys.push(PublicKeyEntry {
            kid: "broken".to_owned(),
            x: NOT_A_POINT.to_owned(),
            created_at: now.unix_timestamp(),
            not_after: None,
        });
        assert_eq!(set.find(&current.kid(), now), Some(current));
        assert_eq!(set.find(&retired.kid(), now), Some(retired));
        let later = now + Duration::minutes(1);
        assert_eq!(set.find(&retired.kid(), later), None);
        assert!(set.contains(&retired.kid()), "still listed, just not valid");
        assert_eq!(set.find("broken", now), None);
        assert_eq!(set.find("unknown", now), None);
        assert!(!set.contains("unknown"));
    }

    #[test]
    fn the_jwks_lists_valid_usable_keys_as_rfc_7517_ed25519_jwks() {
        let now = fx_now();
        let current = SigningKey::from_base64url(RFC_D).unwrap().public_key();
        let retired = SigningKey::from_seed([2; 32]).public_key();
        let lapsed = SigningKey::from_seed([3; 32]).public_key();
        let mut set = PublicKeySet::of(&lapsed, now);
        set.keys[0].not_after = Some(now.unix_timestamp());
        set.keys.push(PublicKeyEntry::new(&retired, now));
        set.keys[1].not_after = Some(now.unix_timestamp() + 1);
        set.keys.push(PublicKeyEntry::new(&current, now));
        set.keys.push(PublicKeyEntry {
            kid: "broken".to_owned(),
            x: NOT_A_POINT.to_owned(),
            created_at: now.unix_timestamp(),
            not_after: None,
        });
        let jwks = set.jwks(now);
        let value = serde_json::to_value(&jwks).unwrap();
        assert_eq!(
            value["keys"][1],
            json!({"kty": "OKP", "crv": "Ed25519", "x": RFC_X, "kid": RFC_KID, "use": "sig", "alg": "EdDSA"})
        );
        let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [retired.kid().as_str(), RFC_KID]);
        assert_eq!(serde_json::from_value::<Jwks>(value).unwrap(), jwks);
        assert_eq!(jwks.find(RFC_KID), Some(current));
        // Only an Ed25519 signing key for EdDSA is a key.
        for (field, other) in [
            ("kty", "EC"),
            ("crv", "X25519"),
            ("use", "enc"),
            ("alg", "ES256"),
        ] {
            let mut odd = serde_json::to_value(&jwks).unwrap();
            odd["keys"][1][field] = json!(other);
            let odd: Jwks = serde_json::from_value(odd).unwrap();
            assert_eq!(odd.find(RFC_KID), None, "{field}: {other}");
        }
    }
}
