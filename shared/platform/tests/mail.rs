//! The Mailer port on both backends, against the real things: the local
//! mailbox on disk, and SES v2 on the moto server (whose record of sent raw
//! messages, `/moto-api/data.json`, shows what arrived). The same bodies run
//! once per backend; what only one backend has (the mailbox listing, SES
//! identities) has its own tests below.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use common::{ENDPOINT_VAR, fx_backend, unique};
use constellation_platform::config::Platform;
use constellation_platform::local::mail::{list, read};
use constellation_platform::mail::{MailError, OutgoingMail, decode_header, header};
use constellation_platform::{Clock, ManualClock};

/// A platform of either backend, and how to see what it delivered.
struct Fx {
    platform: Platform,
    clock: Arc<ManualClock>,
    sender: String,
    keep: Keep,
}

enum Keep {
    Local { dir: tempfile::TempDir },
    Aws { endpoint: String },
}

impl Fx {
    async fn local() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let platform = Platform::local(
            dir.path().to_path_buf(),
            String::new(),
            clock.clone() as Arc<dyn Clock>,
        )
        .unwrap();
        Self {
            platform,
            clock,
            sender: "noreply@example.com".into(),
            keep: Keep::Local { dir },
        }
    }

    /// An AWS platform whose sender (a fresh address) is a verified identity.
    async fn aws() -> Self {
        let backend = fx_backend().await;
        let sender = format!("{}@example.com", unique("sender"));
        backend.ensure_email_identity(&sender).await.unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        Self {
            platform: Platform::aws(backend, clock.clone() as Arc<dyn Clock>),
            clock,
            sender,
            keep: Keep::Aws {
                endpoint: std::env::var(ENDPOINT_VAR).unwrap(),
            },
        }
    }

    fn mail_dir(&self) -> Option<PathBuf> {
        match &self.keep {
            Keep::Local { dir } => Some(dir.path().join("mail")),
            Keep::Aws { .. } => None,
        }
    }

    fn mail(&self, to: &str) -> OutgoingMail {
        OutgoingMail {
            from: format!("Constellation Ünïcode <{}>", self.sender),
            to: to.to_owned(),
            to_name: Some("Zoë Ångström".into()),
            subject: "Grüße: your report is ready".into(),
            text: "Hello Zoë,\nyour report is ready.".into(),
            html: "<p>Hello Zoë,</p><p>your report is ready.</p>".into(),
        }
    }

    /// The raw message delivered under `id`: the mailbox file locally, what
    /// moto recorded for SES.
    async fn delivered(&self, id: &str) -> Option<Vec<u8>> {
        match &self.keep {
            Keep::Local { dir } => read(&dir.path().join("mail"), id).unwrap(),
            Keep::Aws { endpoint } => moto_raw_messages(endpoint)
                .await
                .into_iter()
                .find(|m| m["id"] == id)
                .map(|m| m["raw_data"].as_str().unwrap().as_bytes().to_vec()),
        }
    }
}

/// Every raw message moto's SES has accepted (its model introspection).
async fn moto_raw_messages(endpoint: &str) -> Vec<serde_json::Value> {
    let body = reqwest::get(format!("{endpoint}/moto-api/data.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data: serde_json::Value = serde_json::from_str(&body).unwrap();
    data.as_object()
        .unwrap()
        .values()
        .filter_map(|service| service.get("RawMessage"))
        .flat_map(|messages| messages.as_array().cloned().unwrap_or_default())
        .collect()
}

/// The decoded text part of a rendered message (quoted-printable undone).
fn text_part(message: &str) -> String {
    let part = message
        .split("Content-Type: text/plain; charset=utf-8\r\n")
        .nth(1)
        .unwrap();
    let body = part.split("\r\n\r\n").nth(1).unwrap();
    let body = body.split("\r\n--").next().unwrap();
    let mut bytes = Vec::new();
    let mut rest = body.replace("=\r\n", "").into_bytes().into_iter();
    while let Some(b) = rest.next() {
        if b == b'=' {
            let hex: Vec<u8> = rest.by_ref().take(2).collect();
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).unwrap()
}

async fn sends_one_message_that_arrives_whole(fx: Fx) {
    let mail = fx.mail("zoe@example.org");
    let id = fx.platform.mailer().send(&mail).await.unwrap();
    let raw = fx
        .delivered(&id)
        .await
        .unwrap_or_else(|| panic!("message {id} was not delivered"));
    let message = String::from_utf8(raw).unwrap();
    assert!(message.is_ascii(), "7-bit on the wire");
    let get = |name| decode_header(&header(message.as_bytes(), name).unwrap());
    assert_eq!(
        get("From"),
        format!("Constellation Ünïcode <{}>", fx.sender)
    );
    assert_eq!(get("To"), "Zoë Ångström <zoe@example.org>");
    assert_eq!(get("Subject"), "Grüße: your report is ready");
    assert_eq!(get("MIME-Version"), "1.0");
    assert!(get("Content-Type").starts_with("multipart/alternative; boundary="));
    assert!(get("Message-ID").starts_with('<'));
    // The base64 of the encoded subject decodes on its own too.
    let subject = header(message.as_bytes(), "Subject").unwrap();
    let word = subject
        .strip_prefix("=?UTF-8?B?")
        .and_then(|w| w.split("?=").next())
        .unwrap();
    assert!(
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(word)
                .unwrap()
        )
        .unwrap()
        .starts_with("Grüße")
    );
    assert_eq!(text_part(&message), "Hello Zoë,\r\nyour report is ready.");
    assert!(message.contains("Content-Type: text/html; charset=utf-8\r\n"));
}

async fn a_bad_recipient_is_refused_before_sending(fx: Fx) {
    let err = fx
        .platform
        .mailer()
        .send(&fx.mail("zoe@example.org\r\nBcc: victim@example.net"))
        .await
        .unwrap_err();
    assert!(matches!(err, MailError::Invalid(_)), "{err:?}");
    assert!(!err.is_retryable());
    if let Some(dir) = fx.mail_dir() {
        assert!(list(&dir).unwrap().is_empty(), "nothing was written");
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Fx::local().await).await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Fx::aws().await).await;
                }
            )*
        }
    };
}

on_both_backends!(
    sends_one_message_that_arrives_whole,
    a_bad_recipient_is_refused_before_sending,
);

#[tokio::test]
async fn the_local_mailbox_lists_newest_last_and_reads_by_id() {
    let fx = Fx::local().await;
    let dir = fx.mail_dir().unwrap();
    let mailer = fx.platform.mailer();
    let mut first = fx.mail("first@example.org");
    first.subject = "first".into();
    let first_id = mailer.send(&first).await.unwrap();
    fx.clock.advance(time::Duration::seconds(1));
    let mut second = fx.mail("second@example.org");
    second.subject = "Zweite Nachricht – ✓".into();
    second.to_name = None;
    let second_id = mailer.send(&second).await.unwrap();

    let listed = list(&dir).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|m| (m.id.as_str(), m.to.as_str(), m.subject.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                first_id.as_str(),
                "Zoë Ångström <first@example.org>",
                "first"
            ),
            (
                second_id.as_str(),
                "second@example.org",
                "Zweite Nachricht – ✓"
            ),
        ]
    );
    assert_eq!(
        listed[1].date.unwrap().unix_timestamp(),
        fx.clock.now().unix_timestamp(),
        "dated by the platform's clock"
    );
    let raw = read(&dir, &second_id).unwrap().unwrap();
    assert!(
        std::fs::read_dir(&dir).unwrap().all(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".eml")),
        "no temporary file is left behind"
    );
    assert!(raw.starts_with(b"From: "));
    assert!(matches!(
        read(&dir, "../constellation"),
        Err(MailError::Invalid(_))
    ));
    assert!(
        read(&dir, "0000000000000-0000000000000000")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn ses_refuses_an_unverified_sender_for_good() {
    let fx = Fx::aws().await;
    let mut mail = fx.mail("zoe@example.org");
    mail.from = format!("{}@unverified.example.net", unique("nobody"));
    let err = fx.platform.mailer().send(&mail).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(matches!(err, MailError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn ensure_email_identity_is_idempotent() {
    let backend = fx_backend().await;
    let address = format!("{}@example.com", unique("identity"));
    backend.ensure_email_identity(&address).await.unwrap();
    backend
        .ensure_email_identity(&address)
        .await
        .expect("a second ensure_email_identity succeeds");
}

#[tokio::test]
async fn ses_is_unavailable_when_it_cannot_be_reached() {
    // Nothing listens on port 9 (discard) on the loopback interface.
    let backend =
        constellation_platform::aws::AwsBackend::connect(Some("http://127.0.0.1:9")).await;
    let fx = Fx::local().await;
    let mailer = backend.mailer(fx.clock.clone());
    use constellation_platform::Mailer as _;
    let err = mailer.send(&fx.mail("zoe@example.org")).await.unwrap_err();
    assert!(matches!(err, MailError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
}
