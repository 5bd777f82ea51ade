//! Per-caller rate limits for `constellation serve`: the limits
//! template.yaml gives API Gateway's routes, applied to each caller (the
//! bearer token, else the connection's address) with a token bucket, and
//! answered with 429 `too-many-requests` and `Retry-After`.
//!
//! In AWS, API Gateway throttles before a function runs, so Lambda hosts do
//! not use this layer.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A sustained rate and a burst, as API Gateway's throttling settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests per second, sustained.
    pub rate_per_sec: u32,
    /// Requests at once.
    pub burst: u32,
}

/// The limits of every route: a default and stricter ones by method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    /// Every route not listed.
    pub default: Limit,
    /// Exact method and path.
    pub routes: &'static [(&'static str, &'static str, Limit)],
}

/// The limits template.yaml sets on the HTTP API (`DefaultRouteSettings`
/// and `RouteSettings`): order placement stricter than reads.
pub const PLATFORM_LIMITS: RateLimits = RateLimits {
    default: Limit {
        rate_per_sec: 100,
        burst: 200,
    },
    routes: &[(
        "POST",
        "/v1/orders",
        Limit {
            rate_per_sec: 10,
            burst: 20,
        },
    )],
};

/// Past this many buckets, idle ones are dropped (memory stays bounded
/// whatever the number of callers).
const MAX_BUCKETS: usize = 50_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The buckets of every caller.
#[derive(Debug, Clone)]
pub struct Throttle {
    limits: RateLimits,
    buckets: Arc<Mutex<HashMap<(u64, usize), Bucket>>>,
}

impl Throttle {
    /// A throttle with `limits` and no history.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `caller` on the route `(method, path)`; `Err`
    /// holds the seconds until one is free.
    pub fn admit(&self, caller: u64, method: &Method, path: &str, now: Instant) -> Result<(), u64> {
        let (route, limit) = self
            .limits
            .routes
            .iter()
            .enumerate()
            .find(|(_, (m, p, _))| method.as_str() == *m && path == *p)
            .map_or((usize::MAX, self.limits.default), |(i, (_, _, l))| (i, *l));
        let rate = f64::from(limit.rate_per_sec.max(1));
        let burst = f64::from(limit.burst.max(1));
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| now.duration_since(b.last) < Duration::from_secs(10));
        }
        let bucket = buckets.entry((caller, route)).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / rate).ceil();
            // At least a second; a bucket refills at one token per 1/rate s.
            Err(if wait.is_finite() && wait >= 1.0 {
                wait as u64
            } else {
                1
            })
        }
    }
}

/// Who is calling: the bearer token (hashed; never kept), else the peer.
fn caller(request: &Request) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
    {
        Some(token) => {
            0_u8.hash(&mut h);
            token.hash(&mut h);
        }
        None => {
            1_u8.hash(&mut h);
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.ip())
                .hash(&mut h);
        }
    }
    h.finish()
}

/// The middleware: 429 with `Retry-After` past a caller's limit.
pub async fn throttle(throttle: Throttle, request: Request, next: Next) -> Response {
    let key = caller(&request);
    match throttle.admit(key, request.method(), request.uri().path(), Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => ApiError::TooManyRequests { retry_after }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_the_rate() {
        let t = Throttle::new(PLATFORM_LIMITS);
        let start = Instant::now();
        let post = Method::POST;
        for _ in 0..20 {
            assert!(t.admit(1, &post, "/v1/orders", start).is_ok());
        }
        assert_eq!(t.admit(1, &post, "/v1/orders", start), Err(1));
        assert!(
            t.admit(2, &post, "/v1/orders", start).is_ok(),
            "another caller has its own bucket"
        );
        assert!(
            t.admit(1, &Method::GET, "/v1/orders", start).is_ok(),
            "reads have their own limit"
        );
        let later = start + Duration::from_millis(100);
        assert!(
            t.admit(1, &post, "/v1/orders", later).is_ok(),
            "10/s: one back after 100 ms"
        );
        assert!(t.admit(1, &post, "/v1/orders", later).is_err());
    }
}
