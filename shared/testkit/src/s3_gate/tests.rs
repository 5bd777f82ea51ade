//! Tests of the gate and of its SigV4 checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::sigv4::*;
use super::*;

use std::sync::Mutex;
use std::time::{Duration as StdDuration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;

const EXAMPLE_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EXAMPLE_HOST: &str = "examplebucket.s3.amazonaws.com";
/// AWS's published presigned GET example ("Authenticating Requests: Using
/// Query Parameters (AWS Signature Version 4)", Amazon S3 API Reference).
const EXAMPLE_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host";
const EXAMPLE_SIGNATURE: &str = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

fn example_verifier() -> Verifier {
    Verifier {
        access_key_id: EXAMPLE_KEY_ID.to_owned(),
        secret_access_key: EXAMPLE_SECRET.to_owned(),
    }
}

fn host_headers(host: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
    headers
}

fn at(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// 2013-05-24T00:00:00Z, the example's X-Amz-Date.
const EXAMPLE_SIGNED_AT: i64 = 1_369_353_600;

fn example_uri(signature: &str) -> Uri {
    format!("/test.txt?{EXAMPLE_QUERY}&X-Amz-Signature={signature}")
        .parse()
        .unwrap()
}

#[test]
fn canonical_request_matches_the_aws_published_presigned_example() {
    let uri = example_uri(EXAMPLE_SIGNATURE);
    let canonical = canonical_request(
        "GET",
        uri.path(),
        uri.query().unwrap(),
        &host_headers(EXAMPLE_HOST),
        None,
        "host",
        UNSIGNED_PAYLOAD,
    );
    assert_eq!(
        canonical,
        format!("GET\n/test.txt\n{EXAMPLE_QUERY}\nhost:{EXAMPLE_HOST}\n\nhost\nUNSIGNED-PAYLOAD")
    );
    let scope = Scope {
        date: "20130524",
        region: "us-east-1",
    };
    let to_sign = string_to_sign("20130524T000000Z", &scope, &canonical);
    assert_eq!(
        to_sign,
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04"
    );
    let mut mac = keyed_hmac(&signing_key(EXAMPLE_SECRET, &scope));
    mac.update(to_sign.as_bytes());
    assert_eq!(hex::encode(mac.finalize().into_bytes()), EXAMPLE_SIGNATURE);
}

#[test]
fn accepts_the_aws_published_presigned_url_until_it_expires() {
    let verifier = example_verifier();
    let uri = example_uri(EXAMPLE_SIGNATURE);
    let headers = host_headers(EXAMPLE_HOST);
    for now in [
        EXAMPLE_SIGNED_AT,
        EXAMPLE_SIGNED_AT + 3600,
        EXAMPLE_SIGNED_AT + 86_400,
    ] {
        verifier
            .verify(&Method::GET, &uri, &headers, b"", at(now))
            .unwrap();
    }
    let expired = verifier
        .verify(
            &Method::GET,
            &uri,
            &headers,
            b"",
            at(EXAMPLE_SIGNED_AT + 86_401),
        )
        .unwrap_err();
    assert_eq!(expired.status, StatusCode::FORBIDDEN);
    assert_eq!(expired.code, "AccessDenied");
    assert_eq!(expired.message, "Request has expired");
    assert!(
        expired
            .body()
            .contains("<Code>AccessDenied</Code><Message>Request has expired</Message>")
    );

    let early = verifier
        .verify(
            &Method::GET,
            &uri,
            &headers,
            b"",
            at(EXAMPLE_SIGNED_AT - 3600),
        )
        .unwrap_err();
    assert_eq!(early.message, "Request is not valid yet");
}

#[test]
fn refuses_anything_that_differs_from_what_was_signed() {
    let verifier = example_verifier();
    let now = at(EXAMPLE_SIGNED_AT + 60);
    let headers = host_headers(EXAMPLE_HOST);
    let mismatch = |method: &Method, uri: &Uri, headers: &HeaderMap| {
        let rejection = verifier.verify(method, uri, headers, b"", now).unwrap_err();
        assert_eq!(rejection.status, StatusCode::FORBIDDEN, "{rejection:?}");
        assert_eq!(rejection.code, "SignatureDoesNotMatch", "{rejection:?}");
    };

    let mut tampered = EXAMPLE_SIGNATURE.to_owned();
    tampered.replace_range(0..1, "b");
    mismatch(&Method::GET, &example_uri(&tampered), &headers);
    mismatch(&Method::GET, &example_uri("not-hex"), &headers);
    mismatch(&Method::PUT, &example_uri(EXAMPLE_SIGNATURE), &headers);
    mismatch(
        &Method::GET,
        &format!("/other.txt?{EXAMPLE_QUERY}&X-Amz-Signature={EXAMPLE_SIGNATURE}")
            .parse()
            .unwrap(),
        &headers,
    );
    mismatch(
        &Method::GET,
        &format!("/test.txt?{EXAMPLE_QUERY}&versionId=1&X-Amz-Signature={EXAMPLE_SIGNATURE}")
            .parse()
            .unwrap(),
        &headers,
    );
    mismatch(
        &Method::GET,
        &example_uri(EXAMPLE_SIGNATURE),
        &host_headers("otherbucket.s3.amazonaws.com"),
    );

    let wrong_secret = Verifier {
        access_key_id: EXAMPLE_KEY_ID.to_owned(),
        secret_access_key: "not-the-secret".to_owned(),
    };
    let rejection = wrong_secret
        .verify(
            &Method::GET,
            &example_uri(EXAMPLE_SIGNATURE),
            &headers,
            b"",
            now,
        )
        .unwrap_err();
    assert_eq!(rejection.code, "SignatureDoesNotMatch");
    assert!(
        rejection
            .body()
            .contains("<CanonicalRequest>GET\n/test.txt\n")
    );

    let other_key = Verifier {
        access_key_id: "AKIDOTHER".to_owned(),
        secret_access_key: EXAMPLE_SECRET.to_owned(),
    };
    let rejection = other_key
        .verify(
            &Method::GET,
            &example_uri(EXAMPLE_SIGNATURE),
            &headers,
            b"",
            now,
        )
        .unwrap_err();
    assert_eq!(rejection.code, "InvalidAccessKeyId");

    let mut with_amz_header = headers.clone();
    with_amz_header.insert("x-amz-meta-owner", HeaderValue::from_static("mallory"));
    let rejection = verifier
        .verify(
            &Method::GET,
            &example_uri(EXAMPLE_SIGNATURE),
            &with_amz_header,
            b"",
            now,
        )
        .unwrap_err();
    assert_eq!(rejection.code, "AccessDenied");
    assert!(
        rejection
            .body()
            .contains("<HeadersNotSigned>x-amz-meta-owner</HeadersNotSigned>")
    );
}

#[test]
fn refuses_malformed_authentication_parameters() {
    let verifier = example_verifier();
    let now = at(EXAMPLE_SIGNED_AT + 60);
    let headers = host_headers(EXAMPLE_HOST);
    for query in [
        EXAMPLE_QUERY.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
        EXAMPLE_QUERY.replace("%2Fs3%2F", "%2Fsqs%2F"),
        EXAMPLE_QUERY.replace("%2F20130524%2F", "%2F20130525%2F"),
        EXAMPLE_QUERY.replace("%2Faws4_request", ""),
        EXAMPLE_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801"),
        EXAMPLE_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=soon"),
        EXAMPLE_QUERY.replace("X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
        EXAMPLE_QUERY.replace("&X-Amz-SignedHeaders=host", ""),
    ] {
        let uri: Uri = format!("/test.txt?{query}&X-Amz-Signature={EXAMPLE_SIGNATURE}")
            .parse()
            .unwrap();
        let rejection = verifier
            .verify(&Method::GET, &uri, &headers, b"", now)
            .unwrap_err();
        assert_eq!(
            rejection.status,
            StatusCode::BAD_REQUEST,
            "{query}: {rejection:?}"
        );
    }
    let unsigned: Uri = format!("/test.txt?{EXAMPLE_QUERY}").parse().unwrap();
    let rejection = verifier
        .verify(&Method::GET, &unsigned, &headers, b"", now)
        .unwrap_err();
    assert_eq!(rejection.code, "AuthorizationQueryParametersError");
}

#[test]
fn canonicalisation_follows_sigv4_encoding_rules() {
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/b/a%20b/c"), "/b/a%20b/c");
    // A client may leave sub-delimiters unescaped; S3 still encodes them once.
    assert_eq!(canonical_uri("/b/it's(1)!"), "/b/it%27s%281%29%21");
    assert_eq!(canonical_uri("/b/%C3%A9~x"), "/b/%C3%A9~x");
    assert_eq!(
        canonical_query("uploads&b=2&a=%2F+x&X-Amz-Signature=ff&a=1"),
        "a=%2F%2Bx&a=1&b=2&uploads="
    );
    let mut headers = HeaderMap::new();
    headers.append("x-amz-meta-a", HeaderValue::from_static("  one   two  "));
    headers.append("x-amz-meta-a", HeaderValue::from_static("three"));
    assert_eq!(
        canonical_header_value(&headers, "x-amz-meta-a", None),
        "one two,three"
    );
    assert_eq!(canonical_header_value(&headers, "host", Some("h:1")), "h:1");
}

// --- Through the running gate, signed by the real SDK presigner --------

const KEY_ID: &str = "gate-test-key";
const SECRET: &str = "gate-test-secret";

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: String,
    host: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

/// A stand-in upstream that records what reaches it.
async fn fake_upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Arc::clone(&seen);
    let app = Router::new().fallback(move |request: Request| {
        let recorder = Arc::clone(&recorder);
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.unwrap();
            let get_header = |name: header::HeaderName| {
                parts
                    .headers
                    .get(name)
                    .map(|value| value.to_str().unwrap().to_owned())
            };
            recorder.lock().unwrap().push(Seen {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                host: get_header(header::HOST),
                content_type: get_header(header::CONTENT_TYPE),
                body: body.clone(),
            });
            let status = if parts.uri.path() == "/missing" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            (status, [("x-upstream", "moto-stand-in")], body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(KEY_ID, SECRET, None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn presign_put(client: &aws_sdk_s3::Client, presigning: PresigningConfig) -> String {
    client
        .put_object()
        .bucket("bucket")
        .key("dir/photo (1).png")
        .content_length(5)
        .content_type("image/png")
        .presigned(presigning)
        .await
        .unwrap()
        .uri()
        .to_owned()
}

#[tokio::test]
async fn gate_enforces_sdk_presigned_puts_and_forwards_the_rest() {
    let (upstream, seen) = fake_upstream().await;
    let gate = S3Gate::start(&upstream, KEY_ID, SECRET).await.unwrap();
    let client = s3_client(gate.endpoint());
    let url = presign_put(
        &client,
        PresigningConfig::expires_in(StdDuration::from_secs(300)).unwrap(),
    )
    .await;
    assert!(
        url.starts_with(&format!(
            "{}/bucket/dir/photo%20%281%29.png?",
            gate.endpoint()
        )),
        "{url}"
    );
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
        "{url}"
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let put = |content_type: &'static str, body: &'static [u8]| {
        http.put(&url)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };

    let ok = put("image/png", b"12345").await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-upstream"], "moto-stand-in");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, Method::PUT);
        assert!(
            seen[0].uri.starts_with("/bucket/dir/photo%20%281%29.png?"),
            "{:?}",
            seen[0]
        );
        assert_eq!(
            seen[0].host.as_deref(),
            Some(gate.endpoint().trim_start_matches("http://"))
        );
        assert_eq!(seen[0].content_type.as_deref(), Some("image/png"));
        assert_eq!(seen[0].body.as_ref(), b"12345");
    }

    for (content_type, body) in [
        ("image/png", &b"123456"[..]),
        ("image/png", &b"1234"[..]),
        ("text/html", &b"12345"[..]),
    ] {
        let refused = put(content_type, body).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let text = refused.text().await.unwrap();
        assert!(
            text.contains("<Code>SignatureDoesNotMatch</Code>"),
            "{text}"
        );
    }

    let expired_url = presign_put(
        &client,
        PresigningConfig::builder()
            .start_time(SystemTime::now() - StdDuration::from_secs(120))
            .expires_in(StdDuration::from_secs(60))
            .build()
            .unwrap(),
    )
    .await;
    let expired = http
        .put(&expired_url)
        .header(header::CONTENT_TYPE, "image/png")
        .body(&b"12345"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    let text = expired.text().await.unwrap();
    assert!(
        text.contains("<Error><Code>AccessDenied</Code><Message>Request has expired</Message>"),
        "{text}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "refused requests must not reach the upstream"
    );

    // Presigned GET: only `host` is signed.
    let get_url = client
        .get_object()
        .bucket("bucket")
        .key("k")
        .presigned(PresigningConfig::expires_in(StdDuration::from_secs(60)).unwrap())
        .await
        .unwrap()
        .uri()
        .to_owned();
    assert_eq!(
        http.get(&get_url).send().await.unwrap().status(),
        StatusCode::OK
    );

    // Not presigned: forwarded as it is, status and body included.
    let plain = http
        .post(format!("{}/missing?x=1", gate.endpoint()))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::NOT_FOUND);
    assert_eq!(plain.headers()["x-upstream"], "moto-stand-in");
    assert_eq!(plain.text().await.unwrap(), "hello");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].method, Method::POST);
    assert_eq!(seen[2].uri, "/missing?x=1");
    assert_eq!(seen[2].body.as_ref(), b"hello");
}

#[tokio::test]
async fn dropping_the_gate_stops_it() {
    let (upstream, _seen) = fake_upstream().await;
    let gate = S3Gate::start(&upstream, KEY_ID, SECRET).await.unwrap();
    let endpoint = gate.endpoint().to_owned();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    assert_eq!(
        http.get(&endpoint).send().await.unwrap().status(),
        StatusCode::OK
    );
    drop(gate);
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert!(http.get(&endpoint).send().await.is_err());
}

#[tokio::test]
async fn start_rejects_a_bad_upstream() {
    assert!(S3Gate::start("not a url", KEY_ID, SECRET).await.is_err());
    assert!(
        S3Gate::start("ftp://127.0.0.1:1", KEY_ID, SECRET)
            .await
            .is_err()
    );
}
