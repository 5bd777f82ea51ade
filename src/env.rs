//! `constellation env`: the environment a function needs, as dotenv lines.
//!
//! A Lambda function reads its resources from the variables template.yaml
//! sets (each service's [`ResourceDef`]s, the token settings of `Globals`,
//! auth's own settings). To run a function outside SAM, with `cargo lambda
//! watch --env-file` or the cold-start benchmark, those variables must name
//! the resources `serve` uses: locally the names [`Resources::from_env`]
//! falls back to, in AWS the ones `serve --provision` creates, queues as
//! their URLs. The whole file is built before anything is printed, so a
//! failure leaves stdout empty; secrets are named, their values never printed.
//!
//! [`ResourceDef`]: constellation_web::host::ResourceDef

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use constellation_auth::config::{AuthSettings, LOGIN_ADDRESS_LIMIT_VAR, TRUSTED_PROXIES_VAR};
use constellation_auth::signing::{SIGNING_KEYS_SECRET_VAR, SigningConfig};
use constellation_platform::aws::AwsBackend;
use constellation_platform::config::{BACKEND_VAR, BackendKind, DATA_DIR_VAR};
use constellation_platform::tokens::{AUDIENCE_VAR, ISSUER_VAR, PUBLIC_KEYS_SECRET_VAR};
use constellation_web::ServiceDef;
use constellation_web::host::{self, Resources};

/// Where the functions' resources are.
#[derive(Debug, Clone)]
pub struct EnvConfig<'a> {
    /// Which backend.
    pub backend: BackendKind,
    /// The local data directory (`--backend local`).
    pub data_dir: &'a Path,
    /// The AWS endpoint (an emulator), when not the configured one.
    pub aws_endpoint: Option<&'a str>,
    /// Create missing AWS resources first, as `serve --provision` does.
    pub provision: bool,
}

/// The variables, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(BTreeMap<String, (String, &'static str)>);

impl Env {
    /// Sets `name` to `value` on behalf of `source` (a service, or what
    /// the setting is); the same name with another value is an error.
    pub fn set(
        &mut self,
        name: &str,
        value: impl Into<String>,
        source: &'static str,
    ) -> anyhow::Result<()> {
        let value = value.into();
        match self.0.get(name) {
            Some((known, by)) if *known != value => anyhow::bail!(
                "{name} would be `{known}` for {by} and `{value}` for {source}: \
                 one environment cannot serve both"
            ),
            Some(_) => Ok(()),
            None => {
                self.0.insert(name.to_owned(), (value, source));
                Ok(())
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|(v, _)| v.as_str())
    }

    /// The dotenv file: `NAME=value` lines sorted by name. A value with
    /// characters a shell would read apart is single-quoted (as both
    /// `source` and dotenv parsers read it); one that cannot be quoted so
    /// (a quote or a line break in it) is an error.
    pub fn to_dotenv(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        for (name, (value, _)) in &self.0 {
            let plain = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:@,+=%".contains(c));
            if plain {
                out.push_str(&format!("{name}={value}\n"));
            } else {
                anyhow::ensure!(
                    !value.contains(['\'', '\n', '\r']),
                    "{name}'s value `{value}` contains a single quote or a line break, which a \
                     single-quoted dotenv value cannot hold"
                );
                out.push_str(&format!("{name}='{value}'\n"));
            }
        }
        Ok(out)
    }
}

/// Every variable the functions of `services` read at start, for the
/// backend `config` names: each service's resources, the backend (and the
/// local data directory, or the AWS endpoint when one is given), token
/// verification, auth's signing secret and settings. In AWS with
/// `provision`, missing resources are created first.
pub async fn env(config: &EnvConfig<'_>, services: &[&ServiceDef]) -> anyhow::Result<Env> {
    // What `serve` reads too: overriding one of these for `serve` and not
    // here would give the functions other keys than the ones provisioned.
    let signing = SigningConfig::from_env()?;
    let settings = AuthSettings::from_env()?;
    let mut env = Env::default();
    let resources: Vec<Resources> = match config.backend {
        BackendKind::Local => {
            let dir = std::path::absolute(config.data_dir)
                .with_context(|| format!("the absolute path of {}", config.data_dir.display()))?;
            let dir = dir
                .to_str()
                .with_context(|| format!("the data dir {} is not UTF-8", dir.display()))?;
            env.set(DATA_DIR_VAR, dir, "the local backend")?;
            services
                .iter()
                .map(|s| Resources::from_env(s.resources, BackendKind::Local))
                .collect::<Result<_, _>>()?
        }
        BackendKind::Aws => {
            // The function must talk to the endpoint the URLs are from.
            if let Some(url) = config.aws_endpoint {
                env.set("AWS_ENDPOINT_URL", url, "--aws-endpoint-url")?;
            }
            let aws = AwsBackend::connect(config.aws_endpoint).await;
            if config.provision {
                crate::serve::provision(&aws, services, &signing.verifier()).await?
            } else {
                let mut all = Vec::with_capacity(services.len());
                for service in services {
                    all.push(
                        host::look_up(&aws, service.resources)
                            .await
                            .with_context(|| format!("the resources of {}", service.name))?,
                    );
                }
                all
            }
        }
    };
    let backend = match config.backend {
        BackendKind::Local => "local",
        BackendKind::Aws => "aws",
    };
    env.set(BACKEND_VAR, backend, "the backend")?;
    for (service, resources) in services.iter().zip(&resources) {
        for def in service.resources {
            env.set(def.var, resources.get(def.var)?, service.name)?;
        }
    }
    env.set(ISSUER_VAR, &signing.issuer, "token verification")?;
    env.set(AUDIENCE_VAR, &signing.audience, "token verification")?;
    env.set(
        PUBLIC_KEYS_SECRET_VAR,
        &signing.public_keys_secret,
        "token verification",
    )?;
    env.set(
        SIGNING_KEYS_SECRET_VAR,
        &signing.signing_keys_secret,
        "auth's token signing",
    )?;
    env.set(
        TRUSTED_PROXIES_VAR,
        settings.trusted_proxies.to_string(),
        "auth's settings",
    )?;
    env.set(
        LOGIN_ADDRESS_LIMIT_VAR,
        settings.login_address_limit.to_string(),
        "auth's settings",
    )?;
    Ok(env)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_name_given_twice_must_have_one_value() {
        let mut env = Env::default();
        env.set("CURSOR_KEY_SECRET_ID", "c", "kv").unwrap();
        env.set("CURSOR_KEY_SECRET_ID", "c", "media").unwrap();
        let err = env
            .set("CURSOR_KEY_SECRET_ID", "d", "orders")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CURSOR_KEY_SECRET_ID") && err.contains("kv") && err.contains("orders"),
            "{err}"
        );
        assert_eq!(env.get("CURSOR_KEY_SECRET_ID"), Some("c"));
    }

    #[test]
    fn lines_are_sorted_and_quoted_only_when_needed() {
        let mut env = Env::default();
        env.set("B", "http://127.0.0.1:5077/123456789012/q-dlq", "x")
            .unwrap();
        env.set("A", "/tmp/my data", "x").unwrap();
        env.set("C", "constellation/cursor-key", "x").unwrap();
        assert_eq!(
            env.to_dotenv().unwrap(),
            "A='/tmp/my data'\nB=http://127.0.0.1:5077/123456789012/q-dlq\n\
             C=constellation/cursor-key\n"
        );
        env.set("D", "it's", "x").unwrap();
        assert!(env.to_dotenv().is_err());
    }
}
