//! auth's part of the shared HTTP harness (`constellation_testkit::http`):
//! how to build the auth app on a test platform (on AWS: a fresh table,
//! cursor secret and token key secrets, all named for this test), the
//! handles its tests reach past HTTP, and the fixtures of an auth flow
//! (register, invite, log in, refresh, read the audit log). Its account
//! events go out on the platform's bus, under the name `TestServices` gives
//! it, so a test can start a listening service beside it.
//!
//! auth signs its own tokens, so its tests get their tokens the way a client
//! does, by registering and logging in, rather than from `TestTokens`.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use constellation_auth::signing::{self as tokens, SigningConfig as TokenConfig};
use constellation_auth::{AuthResources, AuthSettings, AuthStore, PasswordHasherParams};
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::load_verifier;
use constellation_platform::{SecretValue, Table};
use constellation_testkit::http::{Call, Reply, TestApp, TestPlatform};
use constellation_web::host::DEFAULT_EVENT_BUS;
use http::{Request, StatusCode};
use serde_json::{Value, json};

/// A password that meets the policy.
pub const PASSWORD: &str = "a long and unusual passphrase";

/// The auth app on one backend. Requests carry no token unless they say so.
pub type AuthApp = TestApp<Auth>;

/// What auth's tests reach past HTTP.
pub struct Auth {
    /// The store behind the router (its password hasher, for the bound).
    pub store: Arc<AuthStore>,
    /// Every EMF metrics line the app emitted.
    pub metrics: Arc<Mutex<Vec<String>>>,
    /// The stored signing-key secret (private key material), for checking
    /// that it never reaches a log.
    pub signing_keys: String,
    /// The table behind the store, for reading (and planting) stored items.
    pub table: Arc<dyn Table>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    /// How many `FailedLogin` EMF records were emitted.
    pub fn failed_login_metrics(&self) -> usize {
        self.metrics
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("FailedLogin").is_some())
            .inspect(|v| {
                assert_eq!(v["Service"], "auth");
                assert_eq!(
                    v["_aws"]["CloudWatchMetrics"][0]["Namespace"],
                    "Constellation"
                );
            })
            .count()
    }
}

/// Builds the auth app on `env` with the default settings and fast password
/// hashing.
pub async fn spawn(env: TestPlatform) -> AuthApp {
    build(env, AuthSettings::default(), fast_hashing()).await
}

/// [`spawn`] with `settings` (limits, trusted proxies):
/// `app = crate::common::spawn_with(SETTINGS);`.
pub fn spawn_with(settings: AuthSettings) -> impl AsyncFnOnce(TestPlatform) -> AuthApp {
    async move |env| build(env, settings, fast_hashing()).await
}

/// [`spawn`] with password hashing on `params`.
pub fn spawn_hashing_with(
    params: PasswordHasherParams,
) -> impl AsyncFnOnce(TestPlatform) -> AuthApp {
    async move |env| build(env, AuthSettings::default(), params).await
}

/// The app on the local backend, for the tests that run there only.
pub async fn spawn_local() -> AuthApp {
    spawn(TestPlatform::local().await).await
}

fn fast_hashing() -> PasswordHasherParams {
    PasswordHasherParams::insecure_fast_for_tests()
}

async fn build(env: TestPlatform, settings: AuthSettings, params: PasswordHasherParams) -> AuthApp {
    let resources = match env.aws_backend() {
        // Locally the store creates the first key pair on a fresh data dir.
        None => AuthResources {
            settings,
            ..AuthResources::local()
        },
        Some(aws) => {
            let resources = AuthResources {
                table: env.name("auth-test"),
                cursor_secret: env.name("auth-test/cursor-key"),
                // The name `TestServices` gives the bus on this platform,
                // so a probe started there hears auth's events.
                event_bus: env.name(DEFAULT_EVENT_BUS),
                tokens: TokenConfig {
                    signing_keys_secret: env.name("auth-test/signing-keys"),
                    public_keys_secret: env.name("auth-test/public-keys"),
                    ..TokenConfig::default()
                },
                settings,
            };
            let cursor_key = SecretValue::new(env.name("cursor"));
            let secrets = env.platform.secrets();
            tokio::try_join!(
                aws.ensure_table(&resources.table),
                aws.ensure_event_bus(&resources.event_bus),
                aws.ensure_secret(&resources.cursor_secret, &cursor_key),
                tokens::ensure_keys(secrets.as_ref(), &resources.tokens, env.clock.as_ref()),
            )
            .unwrap();
            resources
        }
    };
    let metrics = Arc::new(Mutex::new(Vec::new()));
    let lines = metrics.clone();
    let sink = MetricsSink::from_fn(move |line| lines.lock().unwrap().push(line));
    let store = Arc::new(
        constellation_auth::store(&env.platform, &resources, params, sink.clone())
            .await
            .unwrap(),
    );
    let verifier = load_verifier(&env.platform, &resources.tokens.verifier())
        .await
        .unwrap();
    let signing_keys = env
        .platform
        .secrets()
        .get(&resources.tokens.signing_keys_secret)
        .await
        .unwrap()
        .expect("the store created the signing keys")
        .expose()
        .to_owned();
    let table = env
        .platform
        .table(&resources.table, &resources.cursor_secret)
        .await
        .unwrap();
    let router = constellation_auth::app_with(store.clone(), verifier, sink);
    TestApp::new(
        env,
        router,
        Auth {
            store,
            metrics,
            signing_keys,
            table,
        },
    )
}

/// Where a request comes from, as the hosts tell auth.
pub trait CallFrom {
    /// Sends from `ip`: the socket peer, as `serve` sees it.
    fn ip(self, ip: &str) -> Self;
    /// Adds an `X-Forwarded-For` header (which a client can forge).
    fn forwarded_for(self, value: &str) -> Self;
}

impl CallFrom for Call<'_> {
    fn ip(self, ip: &str) -> Self {
        let ip: IpAddr = ip.parse().unwrap();
        self.extension(ConnectInfo(SocketAddr::new(ip, 40_000)))
    }

    fn forwarded_for(self, value: &str) -> Self {
        self.header("x-forwarded-for", value)
    }
}

/// The steps of an auth flow, as a client takes them.
#[allow(async_fn_in_trait)]
pub trait AuthFixtures {
    /// Registers `email` as the owner of a new organization; the token response.
    async fn fx_register(&self, email: &str) -> Value;
    /// Invites `email` with `role` into the inviter's organization; the invite token.
    async fn fx_invite(&self, inviter_token: &str, email: &str, role: &str) -> String;
    /// Invites and accepts: the new account's token response.
    async fn fx_member(&self, inviter_token: &str, email: &str, role: &str) -> Value;
    /// `POST /v1/auth/login`.
    async fn login(&self, email: &str, password: &str) -> Reply;
    /// `POST /v1/auth/login` from the socket peer `ip`.
    async fn login_from(&self, ip: &str, email: &str, password: &str) -> Reply;
    /// `POST /v1/auth/refresh`.
    async fn refresh(&self, refresh_token: &str) -> Reply;
    /// The whole audit log, newest first, read with `token`.
    async fn audit(&self, token: &str) -> Vec<Value>;
    /// Sends an API Gateway (HTTP API, payload 2.0) event through the same
    /// conversion `lambda_http::run` applies.
    async fn send_lambda_event(&self, event: &Value) -> Reply;
}

impl AuthFixtures for AuthApp {
    async fn fx_register(&self, email: &str) -> Value {
        let r = self
            .post("/v1/auth/register")
            .json(&json!({"organization": "Acme", "email": email, "password": PASSWORD}))
            .await;
        r.assert_status(StatusCode::CREATED);
        r.json()
    }

    async fn fx_invite(&self, inviter_token: &str, email: &str, role: &str) -> String {
        let r = self
            .post("/v1/auth/invites")
            .json(&json!({"email": email, "role": role}))
            .bearer(inviter_token)
            .await;
        r.assert_status(StatusCode::CREATED);
        r.json()["invite_token"].as_str().unwrap().to_owned()
    }

    async fn fx_member(&self, inviter_token: &str, email: &str, role: &str) -> Value {
        let invite = self.fx_invite(inviter_token, email, role).await;
        let r = self
            .post("/v1/auth/accept-invite")
            .json(&json!({"invite_token": invite, "password": PASSWORD}))
            .await;
        r.assert_status(StatusCode::CREATED);
        r.json()
    }

    async fn login(&self, email: &str, password: &str) -> Reply {
        self.post("/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .await
    }

    async fn login_from(&self, ip: &str, email: &str, password: &str) -> Reply {
        self.post("/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .ip(ip)
            .await
    }

    async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post("/v1/auth/refresh")
            .json(&json!({ "refresh_token": refresh_token }))
            .await
    }

    async fn audit(&self, token: &str) -> Vec<Value> {
        let r = self.get("/v1/auth/audit?limit=1000").bearer(token).await;
        r.assert_status(StatusCode::OK);
        r.json()["items"].as_array().unwrap().clone()
    }

    async fn send_lambda_event(&self, event: &Value) -> Reply {
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        let (parts, body) = req.into_parts();
        self.send_request(Request::from_parts(parts, Body::from(body.to_vec())))
            .await
    }
}

/// The access token of a token response.
pub fn access(tokens: &Value) -> &str {
    tokens["access_token"].as_str().unwrap()
}

/// The refresh token of a token response.
pub fn refresh_token(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().unwrap()
}

/// The account id of a token response.
pub fn account_id(tokens: &Value) -> &str {
    tokens["account"]["id"].as_str().unwrap()
}
