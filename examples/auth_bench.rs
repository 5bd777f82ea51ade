//! Measures the cost of the auth hot paths on this machine: issuing and
//! verifying an access token, and hashing / verifying a password with the
//! production argon2id parameters (what one login costs).
//!
//! ```sh
//! cargo run --release --example auth_bench
//! ```

use std::sync::Arc;
use std::time::Instant;

use constellation_auth::PasswordHasherParams;
use constellation_auth::password::PasswordHasher;
use constellation_auth::signing::{SigningConfig, load_issuer};
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Password, Principal, Role};
use constellation_platform::clock::SystemClock;
use constellation_platform::config::Platform;
use constellation_platform::tokens::load_verifier;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        Arc::new(SystemClock),
    )?;
    let config = SigningConfig::default();
    let issuer = load_issuer(&platform, &config).await?;
    let verifier = load_verifier(&platform, &config.verifier()).await?;
    let principal = Principal {
        account: AccountId::from_bytes([1; 16]),
        org: OrgId::parse("bench")?,
        role: Role::Staff,
    };

    const N: u32 = 5000;
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(N as usize);
    for _ in 0..N {
        tokens.push(
            issuer
                .issue(&principal, time::OffsetDateTime::now_utc())
                .token,
        );
    }
    let issue = started.elapsed() / N;
    let started = Instant::now();
    for t in &tokens {
        verifier.verify(t).await?;
    }
    let verify = started.elapsed() / N;
    println!("token issue {issue:?}/op, verify {verify:?}/op ({N} each)");

    let hasher = PasswordHasher::new(PasswordHasherParams::owasp());
    let password = Password::presented("correct horse battery")?;
    let started = Instant::now();
    let phc = hasher.hash(&password).await?;
    let hash = started.elapsed();
    const LOGINS: u32 = 10;
    let started = Instant::now();
    for _ in 0..LOGINS {
        anyhow::ensure!(hasher.verify(&password, Some(&phc)).await?);
    }
    let login = started.elapsed() / LOGINS;
    println!(
        "argon2id (m=19456 KiB, t=2, p=1): hash {hash:?}, verify {login:?}/op ({LOGINS} runs)"
    );
    Ok(())
}
