//! Password hashing: argon2id in PHC string form, off the async executor.
//!
//! Production uses the OWASP-recommended parameters (19 MiB of memory, two
//! passes, one lane). Each hash runs on tokio's blocking pool, so a login
//! never stalls the executor that serves other requests. Verifying against an
//! unknown email runs the same work against a fixed dummy hash made with the
//! same parameters, so response time does not reveal which emails exist.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use constellation_core::auth::Password;
use rand::RngCore as _;
use tokio::sync::OnceCell;

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
            .map_err(|e| HashError(format!("invalid argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for PasswordHasherParams {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Hashing failed (bad parameters, a stored hash that does not parse, or the
/// blocking pool is gone). The message never contains the password.
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes and verifies passwords with fixed parameters.
#[derive(Debug)]
pub struct PasswordHasher {
    params: PasswordHasherParams,
    dummy: OnceCell<String>,
}

impl PasswordHasher {
    /// A hasher making new hashes with `params`.
    pub fn new(params: PasswordHasherParams) -> Self {
        Self {
            params,
            dummy: OnceCell::new(),
        }
    }

    /// The parameters of new hashes.
    pub fn params(&self) -> PasswordHasherParams {
        self.params
    }

    /// A PHC string (`$argon2id$v=19$m=...`) of `password` with a fresh salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let params = self.params;
        let secret = password.expose().to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(params, &secret))
            .await
            .map_err(|_| HashError("the hashing task did not complete".into()))?
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
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| HashError(format!("stored hash does not parse: {e}")))?;
            Ok::<_, HashError>(
                Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(|_| HashError("the hashing task did not complete".into()))??;
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
                tokio::task::spawn_blocking(move || hash_blocking(params, &secret))
                    .await
                    .map_err(|_| HashError("the hashing task did not complete".into()))?
            })
            .await
            .map(String::as_str)
    }
}

fn hash_blocking(params: PasswordHasherParams, secret: &str) -> Result<String, HashError> {
    let mut salt = [0_u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| HashError(format!("salt encoding: {e}")))?;
    params
        .argon2()?
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(format!("argon2: {e}")))
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
