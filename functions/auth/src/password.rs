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

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use constellation_core::auth::Password;
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

    /// How many hashes and verifications have run (argon2 invocations).
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

    /// Whether `password` matches `phc`; with `phc = None` (no such account)
    /// the same work is done against the dummy hash and the answer is false.
    pub async fn verify(&self, password: &Password, phc: Option<&str>) -> Result<bool, HashError> {
        let known = phc.is_some();
        // Made before branching, so that its one-time cost falls on the first
        // login of either kind and never tells known from unknown emails.
        let dummy = self.dummy_hash().await?;
        let phc = match phc {
            Some(p) => p.to_owned(),
            None => dummy.to_owned(),
        };
        let secret = password.expose().to_owned();
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&phc)
                    .map_err(|e| HashError::Failed(format!("stored hash does not parse: {e}")))?;
                Ok(Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(known && matches)
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
}
