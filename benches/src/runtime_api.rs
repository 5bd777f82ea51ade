//! A fake Lambda Runtime API (version 2018-06-01), enough to start a
//! bootstrap and hand it one invocation.
//!
//! The real service is what a function's runtime client talks to on Lambda:
//! the bootstrap polls `GET /runtime/invocation/next`, gets an event with
//! its request id, deadline and function ARN in headers, and posts the
//! result to `/runtime/invocation/{id}/response` (or `/error`, or
//! `/runtime/init/error` when it cannot start). This one serves a single
//! armed invocation at a time and reports each step, with the instant it
//! happened, to whoever armed it: that is what `coldstart` times. A poll
//! after the invocation was handed out is held open (as Lambda freezes an
//! idle function) and reported, so the meter knows the function finished
//! its invocation and went back to waiting.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

/// The API version prefix of every path.
pub const PREFIX: &str = "/2018-06-01/runtime";

/// What the function did, as the fake API saw it.
#[derive(Debug, Clone)]
pub enum Step {
    /// A `GET /invocation/next`: the first of a run is answered with the
    /// event, later ones are held.
    Poll {
        /// 1 for the first poll of the run.
        number: u32,
        /// When it arrived.
        at: Instant,
    },
    /// The invocation's result.
    Response {
        /// When it arrived.
        at: Instant,
        /// Its body.
        body: Bytes,
    },
    /// The function reported the invocation failed.
    InvocationError {
        /// Its body (an error type and message).
        body: Bytes,
    },
    /// The function reported it could not initialise.
    InitError {
        /// Its body.
        body: Bytes,
    },
}

/// One invocation to hand out.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// `Lambda-Runtime-Invoked-Function-Arn`.
    pub function_arn: String,
    /// The event, as JSON.
    pub event: Bytes,
    /// How long the function has (the deadline header is now + this).
    pub timeout: Duration,
}

#[derive(Debug)]
struct Armed {
    invocation: Invocation,
    polls: u32,
    steps: UnboundedSender<Step>,
}

#[derive(Debug, Clone)]
struct Shared {
    armed: Arc<Mutex<Option<Armed>>>,
    /// Bumped when a run ends, to release held polls.
    generation: watch::Sender<u64>,
}

/// The running fake API.
#[derive(Debug)]
pub struct FakeRuntimeApi {
    addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl FakeRuntimeApi {
    /// Starts it on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Shared {
            armed: Arc::default(),
            generation: watch::Sender::new(0),
        };
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(
                &format!("{PREFIX}/invocation/{{id}}/error"),
                post(invocation_error),
            )
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .fallback(unknown)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the fake Runtime API")?;
        let addr = listener.local_addr().context("its address")?;
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake Runtime API stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Hands `invocation` to the next poll; every step is sent to `steps`.
    pub fn arm(&self, invocation: Invocation, steps: UnboundedSender<Step>) {
        let mut slot = self.shared.armed.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(Armed {
            invocation,
            polls: 0,
            steps,
        });
    }

    /// Ends the run: nothing is handed out any more and held polls are released.
    pub fn disarm(&self) {
        let mut slot = self.shared.armed.lock().unwrap_or_else(|e| e.into_inner());
        *slot = None;
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

impl Drop for FakeRuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn epoch_ms_in(d: Duration) -> u128 {
    (SystemTime::now() + d)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_millis())
}

async fn next(State(shared): State<Shared>) -> Response {
    let at = Instant::now();
    let mut generation = shared.generation.subscribe();
    let handed = {
        let mut slot = shared.armed.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(armed) => {
                armed.polls += 1;
                let _ = armed.steps.send(Step::Poll {
                    number: armed.polls,
                    at,
                });
                (armed.polls == 1).then(|| armed.invocation.clone())
            }
            None => None,
        }
    };
    if let Some(inv) = handed {
        let mut resp = (StatusCode::OK, inv.event).into_response();
        let headers = resp.headers_mut();
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        set("content-type", "application/json".to_owned());
        set("lambda-runtime-aws-request-id", inv.request_id.clone());
        set(
            "lambda-runtime-deadline-ms",
            epoch_ms_in(inv.timeout).to_string(),
        );
        set("lambda-runtime-invoked-function-arn", inv.function_arn);
        set(
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0".to_owned(),
        );
        return resp;
    }
    // Held like a frozen function, until the run ends.
    let _ = generation.changed().await;
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// Records a result for invocation `id`; a result for another id is an error.
fn result(shared: &Shared, id: &str, step: impl FnOnce() -> Step) -> StatusCode {
    let slot = shared.armed.lock().unwrap_or_else(|e| e.into_inner());
    let Some(armed) = slot.as_ref() else {
        return StatusCode::BAD_REQUEST;
    };
    if armed.invocation.request_id != id {
        let _ = armed.steps.send(Step::InvocationError {
            body: Bytes::from(format!("result for unknown request id `{id}`")),
        });
        return StatusCode::BAD_REQUEST;
    }
    let _ = armed.steps.send(step());
    StatusCode::ACCEPTED
}

async fn response(State(shared): State<Shared>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    result(&shared, &id, || Step::Response { at, body })
}

async fn invocation_error(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    result(&shared, &id, || Step::InvocationError { body })
}

async fn init_error(State(shared): State<Shared>, body: Bytes) -> StatusCode {
    let slot = shared.armed.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(armed) = slot.as_ref() {
        let _ = armed.steps.send(Step::InitError { body });
    }
    StatusCode::ACCEPTED
}

async fn unknown(uri: axum::http::Uri) -> StatusCode {
    eprintln!("fake Runtime API: unexpected request {uri}");
    StatusCode::NOT_FOUND
}
