//! Shared helpers of the auth tests: an app over real SQLite with a manual
//! clock, typed request helpers, and fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use constellation_auth::signing::{self as tokens, SigningConfig as TokenConfig};
use constellation_auth::{AuthResources, AuthSettings, AuthStore, PasswordHasherParams};
use constellation_platform::aws::AwsBackend;
use constellation_platform::config::Platform;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::load_verifier;
use constellation_platform::{Clock, ManualClock, SecretValue};
use constellation_testkit::fixtures::{AWS_ENDPOINT_VAR, emulator_sdk_config};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use rand::RngCore as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// A password that meets the policy.
pub const PASSWORD: &str = "a long and unusual passphrase";

/// Runs each named test body (`async fn name(app: TestApp)`) once per
/// backend: `name::local` over SQLite, `name::aws` over moto.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(settings = constellation_auth::AuthSettings::default(); $($name),*);
    };
    // With the given `AuthSettings` (limits, trusted proxies).
    (settings = $settings:expr; $($name:ident),* $(,)?) => {
        $(
            mod $name {
                // The settings expression is written in the parent module.
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn local() {
                    super::$name($crate::common::spawn_app_with_settings($settings).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn aws() {
                    if let Some(app) = $crate::common::spawn_aws_app_with_settings($settings).await {
                        super::$name(app).await;
                    }
                }
            }
        )*
    };
}

pub struct TestApp {
    pub router: Router,
    pub store: Arc<AuthStore>,
    pub clock: Arc<ManualClock>,
    pub metrics: Arc<Mutex<Vec<String>>>,
    /// The stored signing-key secret (private key material), for checking
    /// that it never reaches a log.
    pub signing_keys: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(PasswordHasherParams::insecure_fast_for_tests()).await
}

pub async fn spawn_app_with(params: PasswordHasherParams) -> TestApp {
    spawn_local(params, AuthSettings::default()).await
}

pub async fn spawn_app_with_settings(settings: AuthSettings) -> TestApp {
    spawn_local(PasswordHasherParams::insecure_fast_for_tests(), settings).await
}

async fn spawn_local(params: PasswordHasherParams, settings: AuthSettings) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let platform = Platform::local(
        dir.path().to_path_buf(),
        "http://127.0.0.1:9".into(),
        clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    let res = AuthResources {
        settings,
        ..AuthResources::local()
    };
    build(&platform, &res, params, clock, Some(dir)).await
}

fn unique() -> String {
    let mut raw = [0_u8; 8];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The app over DynamoDB and Secrets Manager as moto emulates them, with a
/// fresh table and fresh key secrets. Without an emulator configured this
/// fails, as every AWS-backend test does.
pub async fn spawn_aws_app() -> Option<TestApp> {
    spawn_aws_app_with_settings(AuthSettings::default()).await
}

/// [`spawn_aws_app`] with the given settings.
pub async fn spawn_aws_app_with_settings(settings: AuthSettings) -> Option<TestApp> {
    let Ok(endpoint) = std::env::var(AWS_ENDPOINT_VAR) else {
        panic!("{AWS_ENDPOINT_VAR} is not set: the AWS-backend tests need moto; run scripts/test");
    };
    let clock = Arc::new(ManualClock::starting_now());
    let backend = AwsBackend::from_sdk_config(&emulator_sdk_config(&endpoint).await);
    let id = unique();
    let res = AuthResources {
        table: format!("auth-test-{id}"),
        cursor_secret: format!("auth-test/{id}/cursor-key"),
        tokens: TokenConfig {
            signing_keys_secret: format!("auth-test/{id}/signing-keys"),
            public_keys_secret: format!("auth-test/{id}/public-keys"),
            ..TokenConfig::default()
        },
        settings,
    };
    backend.ensure_table(&res.table).await.unwrap();
    backend
        .ensure_secret(&res.cursor_secret, &SecretValue::new(unique()))
        .await
        .unwrap();
    let platform = Platform::aws(backend, clock.clone() as Arc<dyn Clock>);
    tokens::ensure_keys(platform.secrets().as_ref(), &res.tokens, clock.as_ref())
        .await
        .unwrap();
    Some(
        build(
            &platform,
            &res,
            PasswordHasherParams::insecure_fast_for_tests(),
            clock,
            None,
        )
        .await,
    )
}

async fn build(
    platform: &Platform,
    res: &AuthResources,
    params: PasswordHasherParams,
    clock: Arc<ManualClock>,
    dir: Option<tempfile::TempDir>,
) -> TestApp {
    let metrics = Arc::new(Mutex::new(Vec::new()));
    let lines = metrics.clone();
    let sink = MetricsSink::from_fn(move |line| lines.lock().unwrap().push(line));
    let store = Arc::new(
        constellation_auth::store(platform, res, params, sink.clone())
            .await
            .unwrap(),
    );
    let verifier = load_verifier(platform, &res.tokens.verifier())
        .await
        .unwrap();
    let signing_keys = platform
        .secrets()
        .get(&res.tokens.signing_keys_secret)
        .await
        .unwrap()
        .expect("the store created the signing keys")
        .expose()
        .to_owned();
    TestApp {
        router: constellation_auth::app_with(store.clone(), verifier, sink),
        store,
        clock,
        metrics,
        signing_keys,
        _dir: dir,
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem body, checking its media type and status.
    pub fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let p = self.json();
        assert_eq!(p["status"].as_u64(), Some(u64::from(self.status.as_u16())));
        p
    }

    /// Asserts a 401 with `WWW-Authenticate: Bearer...`.
    pub fn assert_unauthorized(&self) {
        assert_eq!(
            self.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "401 without WWW-Authenticate: Bearer: {:?}",
            self.headers
        );
        self.problem();
    }

    pub fn field(&self) -> Option<String> {
        self.problem()["field"].as_str().map(str::to_owned)
    }
}

/// A request being built.
pub struct Call<'a> {
    app: &'a TestApp,
    req: http::request::Builder,
    body: Body,
}

impl Call<'_> {
    pub fn bearer(mut self, token: &str) -> Self {
        self.req = self.req.header("authorization", format!("Bearer {token}"));
        self
    }

    /// Sends from `ip`: the socket peer, as `serve` sees it.
    pub fn ip(mut self, ip: &str) -> Self {
        let ip: IpAddr = ip.parse().unwrap();
        self.req = self.req.extension(ConnectInfo(SocketAddr::new(ip, 40_000)));
        self
    }

    /// Adds an `X-Forwarded-For` header (which a client can forge).
    pub fn forwarded_for(mut self, value: &str) -> Self {
        self.req = self.req.header("x-forwarded-for", value);
        self
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.req = self.req.header("content-type", "application/json");
        self.body = Body::from(serde_json::to_vec(body).unwrap());
        self
    }

    pub fn raw(mut self, content_type: &str, body: &str) -> Self {
        self.req = self.req.header("content-type", content_type);
        self.body = Body::from(body.to_owned());
        self
    }

    pub async fn send(self) -> Reply {
        let req = self.req.body(self.body).unwrap();
        self.app.send_request(req).await
    }
}

impl TestApp {
    /// Sends a request as it is.
    pub async fn send_request(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends an API Gateway (HTTP API, payload 2.0) event through the same
    /// conversion `lambda_http::run` applies.
    pub async fn send_lambda_event(&self, event: &Value) -> Reply {
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        let (parts, body) = req.into_parts();
        self.send_request(Request::from_parts(parts, Body::from(body.to_vec())))
            .await
    }

    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            req: Request::builder().method(method).uri(path),
            body: Body::empty(),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> Call<'_> {
        self.call(Method::POST, path).json(body)
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn patch(&self, path: &str, body: &Value) -> Call<'_> {
        self.call(Method::PATCH, path).json(body)
    }

    pub fn clock_now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub fn advance(&self, by: time::Duration) {
        self.clock.advance(by);
    }

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

    // -- fixtures -------------------------------------------------------------

    /// Registers `email` as the owner of a new organization; the token response.
    pub async fn fx_register(&self, email: &str) -> Value {
        let r = self
            .post(
                "/v1/auth/register",
                &json!({"organization": "Acme", "email": email, "password": PASSWORD}),
            )
            .send()
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Invites `email` with `role` into the inviter's organization; the invite token.
    pub async fn fx_invite(&self, inviter_token: &str, email: &str, role: &str) -> String {
        let r = self
            .post("/v1/auth/invites", &json!({"email": email, "role": role}))
            .bearer(inviter_token)
            .send()
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["invite_token"].as_str().unwrap().to_owned()
    }

    /// Invites and accepts: the new account's token response.
    pub async fn fx_member(&self, inviter_token: &str, email: &str, role: &str) -> Value {
        let invite = self.fx_invite(inviter_token, email, role).await;
        let r = self
            .post(
                "/v1/auth/accept-invite",
                &json!({"invite_token": invite, "password": PASSWORD}),
            )
            .send()
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .send()
        .await
    }

    pub async fn login_from(&self, ip: &str, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .ip(ip)
        .send()
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/v1/auth/refresh",
            &json!({ "refresh_token": refresh_token }),
        )
        .send()
        .await
    }

    pub async fn audit(&self, token: &str) -> Vec<Value> {
        let r = self
            .get("/v1/auth/audit?limit=1000")
            .bearer(token)
            .send()
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["items"].as_array().unwrap().clone()
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
