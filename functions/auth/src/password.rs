//! Password hashing: argon2id in PHC string form, off the async executor.
//!
//! Production uses the OWASP-recommended parameters (19 MiB of memory, two
//! passes, one lane). Each hash runs on tokio's blocking pool, so a login
//! never stalls the executor that serves other requests.
//!
//! Hashes are bounded: at most `concurrency` run at once (about the core
//! count; more would only queue for CPU while holding 19 MiB each). A caller
//! waits a short while for a slot and is then told [`HashError::Busy`],
//! which the HTTP layer answers 503 with `Retry-After`, instead of queueing
//! without limit. A slot is held by the blocking task itself, so a request
//! that gives up mid-hash does not free memory that is still in use.
//!
//! Verifying against an
//! unknown email runs the same work against a fixed dummy hash made with the
//! same parameters, so response time does not reveal which emails exist.
//!
//! **Legacy bcrypt hashes.** Accounts imported from older databases keep
//! their bcrypt hash (`$2a$`, `$2b$`, `$2y$`; see [`validate_legacy_hash`])
//! until their first login, which verifies it in the same bounded slot and,
//! when it matches, hashes the password anew with argon2id for the caller
//! to store ([`Verified::YesRehashed`]). A stored hash is never trusted to
//! bound its own cost: bcrypt above [`MAX_BCRYPT_COST`], or anything that
//! begins like bcrypt and is malformed, is never verified (the login fails as
//! for a wrong password, after the dummy's work, and is logged as an error).
//! bcrypt keys on at most [`BCRYPT_MAX_PASSWORD_BYTES`] bytes, so a longer
//! password is refused outright against a bcrypt hash rather than checked on
//! its first 72 bytes: otherwise the password followed by anything at all
//! would log in. A NUL byte is refused likewise (the C implementations that
//! made these hashes stopped at it, and the crate here does not, so that a
//! 71-byte password and the same with a NUL appended would share a hash).

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use constellation_core::ValidationError;
use constellation_core::auth::Password;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::RngCore as _;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

/// The argon2id cost parameters used for new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHasherParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl PasswordHasherParams {
    /// OWASP's recommendation for argon2id: m = 19456 KiB, t = 2, p = 1.
    pub const OWASP: Self = Self {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// The production parameters.
    pub fn owasp() -> Self {
        Self::OWASP
    }

    /// Very cheap parameters, for tests only (hashes made with them still
    /// verify, since a PHC string carries its own parameters).
    pub fn insecure_fast_for_tests() -> Self {
        Self {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn argon2(self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, None)
            .map_err(|e| HashError::Failed(format!("invalid argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for PasswordHasherParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Why a password could not be hashed or checked. The message never
/// contains the password.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot stayed taken for the whole wait: retry shortly.
    #[error("password hashing is at capacity")]
    Busy,
    /// Bad parameters, a stored hash that does not parse, or the blocking
    /// pool is gone.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// A hashing slot; the hash that holds it runs, others wait or are refused.
#[derive(Debug)]
pub struct HashPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// Hashes and verifies passwords with fixed parameters, a bounded number at a time.
#[derive(Debug)]
pub struct PasswordHasher {
    params: PasswordHasherParams,
    dummy: OnceCell<String>,
    slots: Arc<Semaphore>,
    wait: Duration,
    runs: AtomicU64,
}

impl PasswordHasher {
    /// A hasher making new hashes with `params`, as many at once as there
    /// are cores, waiting up to 1.5 s for a slot.
    pub fn new(params: PasswordHasherParams) -> Self {
        Self::with_limits(
            params,
            crate::config::default_hash_concurrency(),
            crate::config::DEFAULT_HASH_WAIT,
        )
    }

    /// A hasher running at most `concurrency` hashes at once (at least 1),
    /// a caller waiting up to `wait` for a slot.
    pub fn with_limits(params: PasswordHasherParams, concurrency: usize, wait: Duration) -> Self {
        Self {
            params,
            dummy: OnceCell::new(),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
            runs: AtomicU64::new(0),
        }
    }

    /// The parameters of new hashes.
    pub fn params(&self) -> PasswordHasherParams {
        self.params
    }

    /// How many hashing jobs have run: hashes, verifications (argon2 or
    /// bcrypt), and verifications with the re-hash they called for.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Takes a hashing slot, waiting up to the configured wait; every hash
    /// and verification takes one first. Holding one keeps a slot from
    /// everyone else (tests use this to fill the bound).
    pub async fn reserve(&self) -> Result<HashPermit, HashError> {
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(HashPermit(permit)),
            Ok(Err(_closed)) => Err(HashError::Failed("the hashing slots are closed".into())),
            Err(_elapsed) => {
                tracing::warn!("password hashing at capacity; request refused");
                Err(HashError::Busy)
            }
        }
    }

    /// Runs `work` on the blocking pool while holding a slot.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = self.reserve().await?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        })
        .await
        .map_err(|_| HashError::Failed("the hashing task did not complete".into()))?
    }

    /// A PHC string (`$argon2id$v=19$m=...`) of `password` with a fresh salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let params = self.params;
        let secret = password.expose().to_owned();
        self.run(move || hash_blocking(params, &secret)).await
    }

    /// Whether `password` matches `stored` (an argon2 PHC string or a
    /// legacy bcrypt hash); with `stored = None` (no such account) the same
    /// work is done against the dummy hash and the answer is false. See
    /// [`Self::verify_and_rehash`].
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<bool, HashError> {
        Ok(self.verify_and_rehash(password, stored).await?.matches())
    }

    /// Checks `password` against `stored`, and when that is a legacy bcrypt
    /// hash it matches, hashes the password with this hasher's parameters in
    /// the same slot, for the caller to store in its place. With `stored =
    /// None` (no such account), or a stored hash that is never verified (see
    /// the module's notes), the dummy hash's work is done and the answer is
    /// [`Verified::No`].
    pub async fn verify_and_rehash(
        &self,
        password: &Password,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        // Made before branching, so that its one-time cost falls on the first
        // login of either kind and never tells known from unknown emails.
        let dummy = self.dummy_hash().await?;
        let against_dummy = || Check::Argon2 {
            phc: dummy.to_owned(),
            real: false,
        };
        let check = match stored.map(StoredHash::classify) {
            None => against_dummy(),
            Some(StoredHash::Phc(phc)) => Check::Argon2 { phc, real: true },
            Some(StoredHash::Unusable(reason)) => {
                // Never the hash itself: the span names the account.
                tracing::error!(
                    reason,
                    "stored password hash is not verified; login refused"
                );
                against_dummy()
            }
            Some(StoredHash::Bcrypt(_)) if !bcrypt_keys_on_all_of(password.expose()) => {
                tracing::info!(
                    "password refused: bcrypt would check only part of it (over 72 bytes, or a NUL)"
                );
                against_dummy()
            }
            Some(StoredHash::Bcrypt(hash)) => Check::Bcrypt(hash),
        };
        let params = self.params;
        let secret = password.expose().to_owned();
        self.run(move || match check {
            Check::Argon2 { phc, real } => {
                let parsed = PasswordHash::new(&phc)
                    .map_err(|e| HashError::Failed(format!("stored hash does not parse: {e}")))?;
                let matches = Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok();
                Ok(if real && matches {
                    Verified::Yes
                } else {
                    Verified::No
                })
            }
            Check::Bcrypt(hash) => {
                let matches = bcrypt::verify(secret.as_bytes(), hash.as_str())
                    .map_err(|e| HashError::Failed(format!("bcrypt: {e}")))?;
                if !matches {
                    return Ok(Verified::No);
                }
                hash_blocking(params, &secret).map(Verified::YesRehashed)
            }
        })
        .await
    }

    /// A hash of a random password, made once with this hasher's parameters.
    async fn dummy_hash(&self) -> Result<&str, HashError> {
        let params = self.params;
        self.dummy
            .get_or_try_init(|| async move {
                let mut raw = [0_u8; 24];
                rand::rng().fill_bytes(&mut raw);
                let secret = hex::encode(raw);
                self.run(move || hash_blocking(params, &secret)).await
            })
            .await
            .map(String::as_str)
    }
}

/// What checking a password against a stored hash found.
#[derive(Clone, PartialEq, Eq)]
pub enum Verified {
    /// No match: a wrong password, no such account, or a stored hash that
    /// is never verified.
    No,
    /// A match against an argon2 hash.
    Yes,
    /// A match against a legacy bcrypt hash; this is the password hashed
    /// with the hasher's parameters (a PHC string), to store in its place.
    YesRehashed(String),
}

impl Verified {
    /// Whether the password matched.
    pub fn matches(&self) -> bool {
        !matches!(self, Self::No)
    }
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::No => "No",
            Self::Yes => "Yes",
            Self::YesRehashed(_) => "YesRehashed(..)",
        })
    }
}

/// The highest bcrypt cost verified. Each step doubles the work (cost 14 is
/// about a second of one core, while holding a hashing slot); legacy
/// databases use 10 to 12. A stored hash above it is never verified, so a
/// planted hash cannot make each login attempt burn minutes of CPU.
pub const MAX_BCRYPT_COST: u32 = 14;

/// bcrypt keys on at most this many bytes of a password.
pub const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;

/// Whether bcrypt keys on every byte of `password` (see the module's notes).
fn bcrypt_keys_on_all_of(password: &str) -> bool {
    password.len() <= BCRYPT_MAX_PASSWORD_BYTES && !password.contains('\0')
}

/// A bcrypt hash in modular crypt form: `$2a$`, `$2b$` or `$2y$`, a
/// two-digit cost from 04 to 31, `$`, then 22 characters of salt and 31 of
/// hash in bcrypt's base64 alphabet (60 ASCII characters in all).
#[derive(Clone, PartialEq, Eq)]
struct BcryptHash {
    raw: String,
    cost: u32,
}

/// bcrypt's base64 alphabet (not RFC 4648's order).
const BCRYPT_ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl BcryptHash {
    /// Parses `raw`; the reason of a refusal never quotes it.
    fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = |reason: &str| {
            Err(ValidationError::new(
                "password_hash",
                format!("is not a bcrypt hash: {reason}"),
            ))
        };
        // ASCII first: everything below indexes bytes.
        if !raw.is_ascii() || raw.len() != 60 {
            return invalid("it must be 60 ASCII characters");
        }
        let b = raw.as_bytes();
        if !matches!(&b[..4], b"$2a$" | b"$2b$" | b"$2y$") {
            return invalid("it must begin $2a$, $2b$ or $2y$");
        }
        let cost = match (b[4], b[5], b[6]) {
            (tens @ b'0'..=b'9', ones @ b'0'..=b'9', b'$') => {
                u32::from(tens - b'0') * 10 + u32::from(ones - b'0')
            }
            _ => return invalid("its cost must be two digits followed by $"),
        };
        if !(4..=31).contains(&cost) {
            return invalid("its cost must be 04 to 31");
        }
        if !b[7..].iter().all(|c| BCRYPT_ALPHABET.contains(c)) {
            return invalid("its salt and hash must be in bcrypt's base64 alphabet");
        }
        // The last character of each part carries unused bits, which must be
        // zero; the crate that verifies decides that.
        if bcrypt::HashParts::from_str(raw).is_err() {
            return invalid("its salt or hash is not canonical base64");
        }
        Ok(Self {
            raw: raw.to_owned(),
            cost,
        })
    }

    fn as_str(&self) -> &str {
        &self.raw
    }
}

impl std::fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BcryptHash(cost {})", self.cost)
    }
}

/// A password hash from a legacy database, as an import stores it on an
/// account in place of an argon2id hash: bcrypt, at a cost login verifies.
/// The account's first login replaces it with argon2id.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyHash(BcryptHash);

impl LegacyHash {
    /// The hash as it is stored.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Its bcrypt cost.
    pub fn cost(&self) -> u32 {
        self.0.cost
    }
}

impl std::fmt::Debug for LegacyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LegacyHash(bcrypt, cost {})", self.0.cost)
    }
}

/// Checks a legacy password hash for import: a well-formed bcrypt hash
/// (`$2a$`, `$2b$`, `$2y$`) of cost at most [`MAX_BCRYPT_COST`]. A costlier
/// one is refused here too, since no login would ever verify it.
pub fn validate_legacy_hash(raw: &str) -> Result<LegacyHash, ValidationError> {
    let hash = BcryptHash::parse(raw)?;
    if hash.cost > MAX_BCRYPT_COST {
        return Err(ValidationError::new(
            "password_hash",
            format!(
                "has a bcrypt cost of {}, above the {MAX_BCRYPT_COST} that login verifies",
                hash.cost
            ),
        ));
    }
    Ok(LegacyHash(hash))
}

/// Checks a password hash as an account may hold it (an import of an
/// export): an argon2id PHC string, or a legacy hash [`validate_legacy_hash`]
/// accepts. Anything else would lock its account out for good.
pub fn validate_stored_hash(raw: &str) -> Result<(), ValidationError> {
    if raw.starts_with("$2") {
        return validate_legacy_hash(raw).map(|_| ());
    }
    match PasswordHash::new(raw) {
        Ok(phc) if phc.algorithm.as_str() == "argon2id" => Ok(()),
        _ => Err(ValidationError::new(
            "password_hash",
            "must be an argon2id PHC string or a bcrypt hash",
        )),
    }
}

/// A stored hash, as far as verifying it goes.
enum StoredHash {
    /// A PHC string (argon2id); one that does not parse fails as it always did.
    Phc(String),
    /// bcrypt, within the cost bound.
    Bcrypt(BcryptHash),
    /// Begins like bcrypt but is malformed or over the cost bound: never verified.
    Unusable(&'static str),
}

impl StoredHash {
    fn classify(stored: &str) -> Self {
        if !stored.starts_with("$2") {
            return Self::Phc(stored.to_owned());
        }
        match BcryptHash::parse(stored) {
            Ok(hash) if hash.cost <= MAX_BCRYPT_COST => Self::Bcrypt(hash),
            Ok(_) => Self::Unusable("bcrypt cost above the bound"),
            Err(_) => Self::Unusable("malformed bcrypt hash"),
        }
    }
}

/// The work of one verification.
enum Check {
    /// Against an argon2 PHC string; `real` is false for the dummy.
    Argon2 { phc: String, real: bool },
    /// Against a bcrypt hash, re-hashing on a match.
    Bcrypt(BcryptHash),
}

fn hash_blocking(params: PasswordHasherParams, secret: &str) -> Result<String, HashError> {
    let mut salt = [0_u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| HashError::Failed(format!("salt encoding: {e}")))?;
    params
        .argon2()?
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(format!("argon2: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_accounts_verify_against_a_hash_with_the_same_parameters() {
        // Same algorithm and cost for a missing account as for a real one:
        // the answer for an unknown email takes the time a wrong password does.
        let hasher = PasswordHasher::new(PasswordHasherParams::insecure_fast_for_tests());
        let real = hasher
            .hash(&Password::presented("a real password").unwrap())
            .await
            .unwrap();
        let dummy = hasher.dummy_hash().await.unwrap().to_owned();
        let (real, dummy) = (
            PasswordHash::new(&real).unwrap(),
            PasswordHash::new(&dummy).unwrap(),
        );
        assert_eq!(real.algorithm, dummy.algorithm);
        assert_eq!(real.version, dummy.version);
        assert_eq!(real.params, dummy.params);
        let pw = Password::presented("a real password").unwrap();
        assert!(
            !hasher.verify(&pw, None).await.unwrap(),
            "no account never matches"
        );
    }

    #[tokio::test]
    async fn over_the_bound_a_hash_is_refused_after_the_wait() {
        let hasher = PasswordHasher::with_limits(
            PasswordHasherParams::insecure_fast_for_tests(),
            1,
            Duration::from_millis(50),
        );
        let pw = Password::presented("a long enough passphrase").unwrap();
        let held = hasher.reserve().await.unwrap();
        assert!(matches!(hasher.hash(&pw).await, Err(HashError::Busy)));
        assert!(matches!(
            hasher.verify(&pw, None).await,
            Err(HashError::Busy)
        ));
        assert_eq!(hasher.runs(), 0, "nothing ran");
        drop(held);
        let phc = hasher.hash(&pw).await.unwrap();
        assert!(hasher.verify(&pw, Some(&phc)).await.unwrap());
        assert_eq!(hasher.runs(), 3, "the hash, the dummy, the verification");
    }

    #[test]
    fn production_parameters_are_owasps() {
        let p = PasswordHasherParams::default();
        assert_eq!(p, PasswordHasherParams::owasp());
        assert_eq!((p.m_cost_kib, p.t_cost, p.p_cost), (19_456, 2, 1));
    }

    #[tokio::test]
    async fn production_hashes_are_argon2id_with_owasp_parameters() {
        let hasher = PasswordHasher::new(PasswordHasherParams::owasp());
        let pw = Password::presented("a long enough passphrase").unwrap();
        let phc = hasher.hash(&pw).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(hasher.verify(&pw, Some(&phc)).await.unwrap());
        let wrong = Password::presented("another passphrase!").unwrap();
        assert!(!hasher.verify(&wrong, Some(&phc)).await.unwrap());
        assert!(!hasher.verify(&pw, None).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_carry_their_parameters_and_are_salted() {
        let fast = PasswordHasher::new(PasswordHasherParams::insecure_fast_for_tests());
        let pw = Password::presented("a long enough passphrase").unwrap();
        let a = fast.hash(&pw).await.unwrap();
        let b = fast.hash(&pw).await.unwrap();
        assert_ne!(a, b, "a fresh salt every time");
        assert!(!a.contains("a long enough passphrase"));
        // A hasher with other parameters still verifies: the PHC string rules.
        let slow = PasswordHasher::new(PasswordHasherParams::owasp());
        assert!(slow.verify(&pw, Some(&a)).await.unwrap());
    }

    /// A genuine bcrypt hash, at cost 15, of [`LEGACY_PASSWORD`] (made once
    /// with the `bcrypt` crate; making it takes seconds).
    const COST_15: &str = "$2b$15$AqgxacWXQSJmJxlgXjRJQuugztgXlcUO2tj/bTYcFak/vdEXHLDxW";
    const LEGACY_PASSWORD: &str = "a legacy passphrase of old";

    fn bcrypt_of(password: &str, version: bcrypt::Version) -> String {
        bcrypt::hash_with_result(password, 4)
            .unwrap()
            .format_for_version(version)
    }

    fn fast() -> PasswordHasher {
        PasswordHasher::new(PasswordHasherParams::insecure_fast_for_tests())
    }

    #[test]
    fn bcrypt_hashes_of_every_accepted_variant_parse() {
        for (version, prefix) in [
            (bcrypt::Version::TwoA, "$2a$04$"),
            (bcrypt::Version::TwoB, "$2b$04$"),
            (bcrypt::Version::TwoY, "$2y$04$"),
        ] {
            let raw = bcrypt_of(LEGACY_PASSWORD, version);
            assert!(raw.starts_with(prefix), "{raw}");
            let legacy = validate_legacy_hash(&raw).unwrap();
            assert_eq!((legacy.as_str(), legacy.cost()), (raw.as_str(), 4));
        }
        // Costs 04 to 31 are bcrypt's; above 14 they are never verified here.
        let parsed = BcryptHash::parse(COST_15).unwrap();
        assert_eq!(parsed.cost, 15);
        let over = validate_legacy_hash(COST_15).unwrap_err();
        assert_eq!(over.field, "password_hash");
        assert!(over.reason.contains("above the 14"), "{}", over.reason);
        let cost_31 = COST_15.replacen("$15$", "$31$", 1);
        assert_eq!(BcryptHash::parse(&cost_31).unwrap().cost, 31);
    }

    #[test]
    fn malformed_bcrypt_hashes_are_refused_without_quoting_them() {
        let good = bcrypt_of(LEGACY_PASSWORD, bcrypt::Version::TwoB);
        let body = &good[7..];
        let non_canonical_salt = {
            // The salt's last character carries 4 unused bits: 'O' is index
            // 16 (unused bits zero), 'P' index 17 (one of them set).
            let mut chars: Vec<char> = good.chars().collect();
            chars[28] = 'P';
            chars.into_iter().collect::<String>()
        };
        let cases = [
            String::new(),
            format!("$2x$04${body}"),
            format!("$2$04${body}"),
            format!("$2c$04${body}"),
            format!("$3b$04${body}"),
            good[..59].to_owned(),
            good[..7].to_owned(),
            format!("{good}A"),
            format!("$2b$03${body}"),
            format!("$2b$32${body}"),
            format!("$2b$99${body}"),
            format!("$2b$4$${body}"),
            format!("$2b$0a${body}"),
            format!("$2b$+4${body}"),
            format!("$2b$04#{body}"),
            format!("$2b$04${}+", &body[..52]),
            format!("$2b$04${}=", &body[..52]),
            // 60 bytes, but not ASCII: byte indexing would split a character.
            format!("$2b$04${}é", &body[..51]),
            non_canonical_salt,
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned(),
        ];
        for raw in &cases {
            let err = validate_legacy_hash(raw).expect_err(raw);
            assert_eq!(err.field, "password_hash", "{raw}");
            assert!(raw.is_empty() || !err.reason.contains(raw.as_str()));
            assert!(!err.reason.contains(body), "{}", err.reason);
        }
        assert_eq!(cases[18].len(), 60, "only the trailing bits differ");
    }

    #[test]
    fn stored_hashes_are_told_apart_by_their_prefix() {
        let good = bcrypt_of(LEGACY_PASSWORD, bcrypt::Version::TwoY);
        assert!(matches!(StoredHash::classify(&good), StoredHash::Bcrypt(h) if h.cost == 4));
        assert!(matches!(
            StoredHash::classify(COST_15),
            StoredHash::Unusable("bcrypt cost above the bound")
        ));
        let x = good.replacen("$2y$", "$2x$", 1);
        assert!(matches!(
            StoredHash::classify(&x),
            StoredHash::Unusable("malformed bcrypt hash")
        ));
        assert!(matches!(
            StoredHash::classify(&good[..40]),
            StoredHash::Unusable(_)
        ));
        // Anything else goes the argon2 way, as before.
        assert!(matches!(
            StoredHash::classify("$argon2id$v=19$m=64,t=1,p=1$x$y"),
            StoredHash::Phc(_)
        ));
    }

    #[test]
    fn debug_never_shows_a_hash() {
        let raw = bcrypt_of(LEGACY_PASSWORD, bcrypt::Version::TwoB);
        let legacy = validate_legacy_hash(&raw).unwrap();
        assert_eq!(format!("{legacy:?}"), "LegacyHash(bcrypt, cost 4)");
        let rehashed = Verified::YesRehashed("$argon2id$secretish".into());
        assert_eq!(format!("{rehashed:?}"), "YesRehashed(..)");
    }

    #[tokio::test]
    async fn a_matching_bcrypt_hash_is_rehashed_with_argon2id_in_the_same_job() {
        let hasher = fast();
        let raw = bcrypt_of(LEGACY_PASSWORD, bcrypt::Version::TwoA);
        let pw = Password::presented(LEGACY_PASSWORD).unwrap();
        hasher.dummy_hash().await.unwrap();
        let before = hasher.runs();
        let Verified::YesRehashed(phc) = hasher.verify_and_rehash(&pw, Some(&raw)).await.unwrap()
        else {
            panic!("the legacy hash did not match");
        };
        assert_eq!(hasher.runs(), before + 1, "one slot for both");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert_eq!(
            hasher.verify_and_rehash(&pw, Some(&phc)).await.unwrap(),
            Verified::Yes
        );
        let wrong = Password::presented("not the legacy passphrase").unwrap();
        assert_eq!(
            hasher.verify_and_rehash(&wrong, Some(&raw)).await.unwrap(),
            Verified::No
        );
        assert!(hasher.verify(&pw, Some(&raw)).await.unwrap());
    }

    #[tokio::test]
    async fn bcrypt_never_checks_only_part_of_a_password() {
        let hasher = fast();
        let exactly_72 = "x".repeat(BCRYPT_MAX_PASSWORD_BYTES);
        let raw = bcrypt_of(&exactly_72, bcrypt::Version::TwoB);
        let pw = |s: &str| Password::presented(s).unwrap();
        assert!(hasher.verify(&pw(&exactly_72), Some(&raw)).await.unwrap());
        let longer = format!("{exactly_72}anything at all");
        assert!(
            bcrypt::verify(&longer, &raw).unwrap(),
            "bcrypt alone would let this in"
        );
        assert!(!hasher.verify(&pw(&longer), Some(&raw)).await.unwrap());
        // Multi-byte characters count in bytes: 36 × 2 bytes is the 72.
        let wide = "é".repeat(36);
        let wide_raw = bcrypt_of(&wide, bcrypt::Version::TwoB);
        assert!(hasher.verify(&pw(&wide), Some(&wide_raw)).await.unwrap());
        assert!(
            !hasher
                .verify(&pw(&format!("{wide}é")), Some(&wide_raw))
                .await
                .unwrap()
        );
        // A NUL after 71 bytes would share the hash of the 71 alone.
        let seventy_one = "y".repeat(71);
        let raw_71 = bcrypt_of(&seventy_one, bcrypt::Version::TwoB);
        let with_nul = format!("{seventy_one}\0");
        assert!(
            bcrypt::verify(&with_nul, &raw_71).unwrap(),
            "bcrypt alone would let this in"
        );
        assert!(!hasher.verify(&pw(&with_nul), Some(&raw_71)).await.unwrap());
        assert!(
            hasher
                .verify(&pw(&seventy_one), Some(&raw_71))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unusable_bcrypt_hashes_cost_the_dummys_work_and_never_match() {
        let hasher = fast();
        let pw = Password::presented(LEGACY_PASSWORD).unwrap();
        hasher.dummy_hash().await.unwrap();
        let started = std::time::Instant::now();
        // A genuine hash of this very password, but over the cost bound.
        assert_eq!(
            hasher.verify_and_rehash(&pw, Some(COST_15)).await.unwrap(),
            Verified::No
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "cost 15 was computed"
        );
        let x = bcrypt_of(LEGACY_PASSWORD, bcrypt::Version::TwoB).replacen("$2b$", "$2x$", 1);
        for stored in [x.as_str(), &x[..30], "$2b$"] {
            assert_eq!(
                hasher.verify_and_rehash(&pw, Some(stored)).await.unwrap(),
                Verified::No
            );
        }
        assert_eq!(hasher.runs(), 1 + 4, "the dummy, then one job each");
    }
}
