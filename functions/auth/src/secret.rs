//! Opaque bearer secrets (refresh tokens, invite tokens): 256 random bits,
//! base64url without padding, stored only as their SHA-256.
//!
//! A [`SecretToken`] never prints itself (`Debug` is redacted), and what the
//! table keeps is [`SecretToken::digest`], so a leaked table or log cannot be
//! replayed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// Length of an encoded token: 32 bytes in unpadded base64url.
pub const TOKEN_CHARS: usize = 43;

/// An opaque secret handed to a client once.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(**redacted**)")
    }
}

impl SecretToken {
    /// 32 fresh random bytes.
    pub fn generate() -> Self {
        let mut raw = [0_u8; 32];
        rand::rng().fill_bytes(&mut raw);
        Self(URL_SAFE_NO_PAD.encode(raw))
    }

    /// A token as presented by a client, if it has the shape of one.
    pub fn presented(raw: &str) -> Option<Self> {
        let ok = raw.len() == TOKEN_CHARS
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(raw.to_owned()))
    }

    /// The token itself, to hand to the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored: the SHA-256 of the token, lowercase hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_well_formed_and_redacted() {
        let a = SecretToken::generate();
        let b = SecretToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), TOKEN_CHARS);
        assert_eq!(SecretToken::presented(a.expose()), Some(a.clone()));
        assert_eq!(a.digest().len(), 64);
        assert_ne!(a.digest(), a.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(SecretToken::presented("short").is_none());
        assert!(SecretToken::presented(&"+".repeat(TOKEN_CHARS)).is_none());
    }
}
