//! One HTTP test harness for every service, on both backends.
//!
//! A service's HTTP suite is a list of `async fn name(app: …)` bodies and one
//! [`on_both_backends!`](crate::on_both_backends) line, which runs each body
//! once over a fresh local platform (SQLite and files in a temporary
//! directory) and once over the AWS adapters talking to moto. The suite
//! cannot drift between backends because it is the same code.
//!
//! The split of work:
//! - this module provides the platform per backend ([`TestPlatform`]: a
//!   [`ManualClock`], a fresh data directory or unique AWS names), tokens
//!   for any organization and role ([`TestTokens`]), and the request and
//!   reply helpers ([`TestApp`], [`Call`], [`Reply`]);
//! - each service's `tests/common` provides only the few lines that build
//!   its app on a given [`TestPlatform`] (provisioning its table, queue and
//!   secrets through [`TestPlatform::aws_backend`] when on AWS) and wraps it with
//!   [`TestApp::new`].
//!
//! The harness cannot register accounts through auth: testkit must not
//! depend on function crates. Services other than auth mint their callers'
//! tokens with [`TestTokens`], exactly as auth would sign them.
//!
//! Requests go through `Router::oneshot`, so no socket is needed and a test
//! sees exactly what a client would: status, headers and body bytes.

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use constellation_core::OrgId;
use constellation_core::auth::{AccountId, Principal, Role};
use constellation_core::token::{PublicKeySet, SigningKey, access_claims};
use constellation_platform::aws::AwsBackend;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::tokens::{self, TokenVerifier, VerifierConfig};
use constellation_platform::{Clock, ManualClock};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use rand::RngCore as _;
use serde::Serialize;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::fixtures::{AbortOnDrop, aws_endpoint, emulator_sdk_config};
use crate::s3_gate::S3Gate;

/// Runs each named test body once per backend.
///
/// ```text
/// constellation_testkit::on_both_backends! {
///     app = crate::common::spawn;
///     put_then_get,
///     listing_pages,
/// }
///
/// async fn put_then_get(app: KvApp) { … }
/// ```
///
/// `app` is an expression, written as in the calling module, that can be
/// called with a [`TestPlatform`] and awaited for a `T`: an
/// `async fn(TestPlatform) -> T` such as `crate::common::spawn`, or a call
/// that returns an async closure, such as `crate::common::spawn_with(LIMITS)`
/// for a suite whose tests need particular settings. Each body is
/// `async fn(T)`. Every
/// `name` becomes `name::local` (a fresh SQLite data directory) and
/// `name::aws` (moto at `CONSTELLATION_TEST_AWS_ENDPOINT`; without that
/// variable the test fails, saying how to get one, so that a missing
/// emulator can never pass as a green run). The calling crate needs `tokio`
/// with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! on_both_backends {
    (app = $spawn:expr; $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                // `app` is written in the calling module: its names resolve there.
                #[allow(unused_imports)]
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn local() {
                    let platform = $crate::http::TestPlatform::local().await;
                    super::$name(($spawn)(platform).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn aws() {
                    let platform = $crate::http::TestPlatform::aws().await;
                    super::$name(($spawn)(platform).await).await;
                }
            }
        )+
    };
}

/// What keeps a test platform's backing resources alive.
#[derive(Debug)]
enum Keep {
    Local {
        _dir: tempfile::TempDir,
        _blobs: AbortOnDrop,
    },
    Aws {
        _gate: S3Gate,
    },
}

/// One mail a test platform sent.
#[derive(Debug, Clone)]
pub struct SentMail {
    /// Its recipients.
    pub to: Vec<String>,
    /// The message as sent (RFC 5322).
    pub raw: String,
}

/// Every mail this platform has sent, as raw RFC 5322 text: the local
/// mailbox's files, or what moto's SES recorded (`/moto-api/data.json`;
/// moto is shared, so filter by recipient).
pub async fn sent_mail(platform: &Platform) -> Vec<SentMail> {
    match platform.local_backend() {
        Some(local) => {
            let dir = local.mail_dir();
            let list = constellation_platform::local::mail::list(&dir)
                .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
            list.into_iter()
                .map(|m| {
                    let raw = constellation_platform::local::mail::read(&dir, &m.id)
                        .unwrap_or_else(|e| panic!("read mail {}: {e}", m.id))
                        .unwrap_or_default();
                    SentMail {
                        to: vec![m.to],
                        raw: String::from_utf8_lossy(&raw).into_owned(),
                    }
                })
                .collect()
        }
        None => {
            let endpoint = aws_endpoint().unwrap_or_else(|e| panic!("{e:#}"));
            // moto builds this document from its live state: while other
            // tests write to the same server it can fail (a collection
            // changed as it was read), so a failed read is tried again.
            let mut data = None;
            for attempt in 0..10 {
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
                let Ok(response) = reqwest::get(format!("{endpoint}/moto-api/data.json")).await
                else {
                    continue;
                };
                if !response.status().is_success() {
                    continue;
                }
                let Ok(body) = response.text().await else {
                    continue;
                };
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    data = Some(v);
                    break;
                }
            }
            let data = data.unwrap_or_else(|| panic!("moto's /moto-api/data.json did not answer"));
            data.as_object()
                .into_iter()
                .flat_map(|services| services.values())
                .filter_map(|service| service.get("RawMessage"))
                .flat_map(|messages| messages.as_array().cloned().unwrap_or_default())
                .map(|m| SentMail {
                    to: m["destinations"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect(),
                    raw: m["raw_data"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        }
    }
}

/// A fresh platform for one test, on one backend, with a clock the test moves.
#[derive(Debug)]
pub struct TestPlatform {
    /// The ports, wired to this backend.
    pub platform: Platform,
    /// The clock every port and the app read.
    pub clock: Arc<ManualClock>,
    /// Which backend this is.
    pub kind: BackendKind,
    /// Unique to this test; [`TestPlatform::name`] builds resource names from it.
    pub id: String,
    aws: Option<AwsBackend>,
    keep: Keep,
}

impl TestPlatform {
    /// A local platform over a fresh temporary data directory. Its presigned
    /// blob URLs are served on a loopback port for as long as it lives.
    pub async fn local() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary data dir: {e}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind the local blob server: {e}"));
        let public_url = match listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(e) => panic!("local blob server address: {e}"),
        };
        let clock = Arc::new(ManualClock::starting_now());
        let platform = Platform::local(
            PathBuf::from(dir.path()),
            public_url,
            clock.clone() as Arc<dyn Clock>,
        )
        .unwrap_or_else(|e| panic!("local platform: {e:#}"));
        let blob_router = platform
            .local_blob_router()
            .await
            .unwrap_or_else(|e| panic!("local blob router: {e:#}"))
            .unwrap_or_default();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, blob_router).await;
        });
        Self {
            platform,
            clock,
            kind: BackendKind::Local,
            id: unique_id(),
            aws: None,
            keep: Keep::Local {
                _dir: dir,
                _blobs: AbortOnDrop(server),
            },
        }
    }

    /// An AWS platform over moto at `CONSTELLATION_TEST_AWS_ENDPOINT`, through
    /// an [`S3Gate`] that checks presigned URLs as S3 does. It has no
    /// resources yet: the service provisions its own with
    /// [`TestPlatform::aws_backend`]
    /// and names from [`TestPlatform::name`].
    ///
    /// Panics, naming the variable and how to set it, when it is missing.
    pub async fn aws() -> Self {
        let upstream = aws_endpoint().unwrap_or_else(|e| panic!("{e:#}"));
        let gate = S3Gate::start(&upstream, "test", "test")
            .await
            .unwrap_or_else(|e| panic!("start the S3 gate in front of {upstream}: {e:#}"));
        let backend = AwsBackend::from_sdk_config(&emulator_sdk_config(gate.endpoint()).await);
        let clock = Arc::new(ManualClock::starting_now());
        Self {
            platform: Platform::aws(backend.clone(), clock.clone() as Arc<dyn Clock>),
            clock,
            kind: BackendKind::Aws,
            id: unique_id(),
            aws: Some(backend),
            keep: Keep::Aws { _gate: gate },
        }
    }

    /// The AWS backend, for provisioning (`ensure_table`, `ensure_queue`,
    /// `ensure_secret`, `ensure_bucket`); `None` locally, where resources
    /// are created on first use.
    pub fn aws_backend(&self) -> Option<&AwsBackend> {
        self.aws.as_ref()
    }

    /// `prefix-<id>`: a resource name no other test uses. Valid as a table,
    /// queue, bucket or secret name for prefixes that are (lowercase letters,
    /// digits, `-`; `/` for secrets), and short enough for each with a
    /// prefix of up to 30 characters.
    pub fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.id)
    }

    /// `local` or `aws`, for messages.
    pub fn label(&self) -> &'static str {
        match self.kind {
            BackendKind::Local => "local",
            BackendKind::Aws => "aws",
        }
    }
}

fn unique_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Access tokens for any organization and role, signed as auth signs them
/// (`constellation_core::token`) with a key of this test's own, whose public
/// half is published where verifiers read it.
#[derive(Debug)]
pub struct TestTokens {
    /// Where the public keys live: the default secret name locally, a unique one on AWS.
    pub config: VerifierConfig,
    /// Signs the tokens.
    key: SigningKey,
    clock: Arc<ManualClock>,
}

impl TestTokens {
    /// Creates a signing key for this test and publishes its public half.
    pub async fn new(env: &TestPlatform) -> Self {
        let config = match env.kind {
            BackendKind::Local => VerifierConfig::default(),
            BackendKind::Aws => VerifierConfig {
                public_keys_secret: env.name("test/public-keys"),
                ..VerifierConfig::default()
            },
        };
        Self::on_platform(&env.platform, env.clock.clone(), config).await
    }

    /// [`TestTokens::new`] on a platform built by hand: the public half is
    /// published where `config` says, and tokens are stamped with `clock`.
    pub async fn on_platform(
        platform: &Platform,
        clock: Arc<ManualClock>,
        config: VerifierConfig,
    ) -> Self {
        let mut seed = [0_u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_seed(seed);
        // Beside the keys already published (auth's own, when a test made
        // them first), so that both the test's tokens and auth's verify.
        let secrets = platform.secrets();
        let mut set = tokens::read_public_keys(secrets.as_ref(), &config.public_keys_secret)
            .await
            .unwrap_or_else(|e| panic!("read the public keys: {e:#}"))
            .unwrap_or_default();
        set.keys
            .extend(PublicKeySet::of(&key.public_key(), clock.now()).keys);
        tokens::write_public_keys(
            platform.secrets().as_ref(),
            &config.public_keys_secret,
            &set,
        )
        .await
        .unwrap_or_else(|e| panic!("publish the test public key: {e:#}"));
        Self { config, key, clock }
    }

    /// A verifier of these tokens, as a service builds it at cold start.
    pub async fn verifier(&self, platform: &Platform) -> Arc<TokenVerifier> {
        tokens::load_verifier(platform, &self.config)
            .await
            .unwrap_or_else(|e| panic!("load the token verifier: {e:#}"))
    }

    /// A token of a new account with `role` in `org`, valid now.
    pub fn token(&self, org: &str, role: Role) -> String {
        let org = OrgId::parse(org).unwrap_or_else(|e| panic!("fixture org {org:?}: {e}"));
        let principal = Principal {
            account: AccountId::from_bytes(*uuid::Uuid::new_v4().as_bytes()),
            org,
            role,
        };
        self.token_for(&principal)
    }

    /// A token of `principal`, valid now.
    pub fn token_for(&self, principal: &Principal) -> String {
        let jti = uuid::Uuid::new_v4().simple().to_string();
        let claims = access_claims(self.config.expected(), principal, self.clock.now(), jti);
        self.key.sign(&claims)
    }
}

/// A service's app on one backend, with the request helpers.
///
/// `S` is whatever else the service's tests need to reach (its store, a
/// queue receiver, its [`TestTokens`]); see [`TestApp::service`].
#[derive(Debug)]
pub struct TestApp<S = ()> {
    /// The complete app, shared layers included.
    pub router: Router,
    /// The clock the app reads; move it with [`TestApp::advance`].
    pub clock: Arc<ManualClock>,
    /// The platform the app was built on.
    pub platform: Platform,
    /// Which backend this is.
    pub kind: BackendKind,
    /// The service's own test handles.
    pub service: S,
    /// Sent as `Authorization: Bearer …` on every request that names no
    /// authorization of its own (see [`Call::bearer`], [`Call::anonymous`]).
    pub default_bearer: Option<String>,
    _keep: Keep,
}

impl<S> TestApp<S> {
    /// Wraps the app a service built on `env`.
    pub fn new(env: TestPlatform, router: Router, service: S) -> Self {
        Self {
            router,
            clock: env.clock,
            platform: env.platform,
            kind: env.kind,
            service,
            default_bearer: None,
            _keep: env.keep,
        }
    }

    /// Every mail the app's platform has sent ([`sent_mail`]).
    pub async fn sent_mail(&self) -> Vec<SentMail> {
        sent_mail(&self.platform).await
    }

    /// Sends `token` on every request that names no authorization of its own.
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.default_bearer = Some(token.into());
        self
    }

    /// `local` or `aws`, for messages.
    pub fn label(&self) -> &'static str {
        match self.kind {
            BackendKind::Local => "local",
            BackendKind::Aws => "aws",
        }
    }

    /// The app's current time.
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// Moves the app's clock forward.
    pub fn advance(&self, by: time::Duration) {
        self.clock.advance(by);
    }

    /// A request with `method` to `path`.
    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            router: &self.router,
            req: Request::builder().method(method).uri(path),
            body: Body::empty(),
            auth: Auth::Default(self.default_bearer.clone()),
        }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    /// `PUT path` (add a body with [`Call::body`] or [`Call::json`]).
    pub fn put(&self, path: &str) -> Call<'_> {
        self.call(Method::PUT, path)
    }

    /// `POST path` (add a body with [`Call::body`] or [`Call::json`]).
    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    /// `PATCH path` (add a body with [`Call::body`] or [`Call::json`]).
    pub fn patch(&self, path: &str) -> Call<'_> {
        self.call(Method::PATCH, path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// Sends a request built elsewhere exactly as it is (no default bearer),
    /// for example one converted from a Lambda event the way
    /// `lambda_http::run` converts it, extensions included.
    pub async fn send_request(&self, req: Request<Body>) -> Reply {
        oneshot(&self.router, req).await
    }
}

#[derive(Debug)]
enum Auth {
    /// The app's default bearer, if any.
    Default(Option<String>),
    /// Whatever the request's own headers say (possibly nothing).
    Explicit,
}

/// A request being built; `.await` it (or call [`Call::send`]) for the [`Reply`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is awaited"]
pub struct Call<'a> {
    router: &'a Router,
    req: http::request::Builder,
    body: Body,
    auth: Auth,
}

impl Call<'_> {
    /// Sends `Authorization: Bearer <token>` instead of the default.
    pub fn bearer(mut self, token: &str) -> Self {
        self.req = self.req.header("authorization", format!("Bearer {token}"));
        self.auth = Auth::Explicit;
        self
    }

    /// Sends no `Authorization` at all.
    pub fn anonymous(mut self) -> Self {
        self.auth = Auth::Explicit;
        self
    }

    /// Adds a header. An `Authorization` header replaces the default bearer.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if name.eq_ignore_ascii_case("authorization") {
            self.auth = Auth::Explicit;
        }
        self.req = self.req.header(name, value);
        self
    }

    /// Adds each header, as [`Call::header`].
    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        headers
            .iter()
            .fold(self, |call, (name, value)| call.header(name, value))
    }

    /// Attaches a request extension, as a host would: for example
    /// `axum::extract::ConnectInfo(peer)` for the socket peer `serve` sees,
    /// or the Lambda request context.
    pub fn extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.req = self.req.extension(value);
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(mut self, body: &impl Serialize) -> Self {
        let bytes = serde_json::to_vec(body).unwrap_or_else(|e| panic!("fixture JSON: {e}"));
        self.req = self.req.header("content-type", "application/json");
        self.body = Body::from(bytes);
        self
    }

    /// A body of `content_type`.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.req = self.req.header("content-type", content_type);
        self.body = Body::from(body.into());
        self
    }

    /// A body without `Content-Type`.
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::from(body.into());
        self
    }

    /// Sends the request through the router.
    pub async fn send(self) -> Reply {
        let mut req = self
            .req
            .body(self.body)
            .unwrap_or_else(|e| panic!("fixture request: {e}"));
        if let Auth::Default(Some(token)) = &self.auth {
            let value = format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|e| panic!("bearer token as a header: {e}"));
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        oneshot(self.router, req).await
    }
}

/// Sends `req` through `router` and collects the whole reply.
async fn oneshot(router: &Router, req: Request<Body>) -> Reply {
    let res = match router.clone().oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let status = res.status();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("read the response body: {e}"))
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

impl<'a> IntoFuture for Call<'a> {
    type Output = Reply;
    type IntoFuture = Pin<Box<dyn Future<Output = Reply> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON; panics, showing the body, when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, expected: StatusCode) -> &Self {
        assert_eq!(self.status, expected, "body: {}", self.text());
        self
    }

    /// The problem+json body, after checking its media type and that its
    /// `status` member agrees with the response's.
    #[track_caller]
    pub fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "not a problem: {} {}",
            self.status,
            self.text()
        );
        let p = self.json();
        assert_eq!(
            p["status"].as_u64(),
            Some(u64::from(self.status.as_u16())),
            "{p}"
        );
        p
    }

    /// The `field` a problem names, if any.
    #[track_caller]
    pub fn field(&self) -> Option<String> {
        self.problem()["field"].as_str().map(str::to_owned)
    }

    /// Asserts a 401 problem with `WWW-Authenticate: Bearer…`.
    #[track_caller]
    pub fn assert_unauthorized(&self) {
        self.assert_status(StatusCode::UNAUTHORIZED);
        assert!(
            self.header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "401 without WWW-Authenticate: Bearer: {:?}",
            self.headers
        );
        self.problem();
    }
}
