//! A service's mail sender as the hosts wire it: `provision` makes the
//! [`ResourceKind::MailSender`] address an SES identity and resolves the
//! variable to it, and [`Context::mailer`] sends from it; locally the
//! variable is the default and mail lands in the data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use constellation_platform::aws::AwsBackend;
use constellation_platform::config::{BackendKind, Platform};
use constellation_platform::local::mail::list;
use constellation_platform::mail::OutgoingMail;
use constellation_platform::observe::MetricsSink;
use constellation_platform::tokens::VerifierConfig;
use constellation_platform::{Clock, SystemClock};
use constellation_testkit::fixtures::{aws_endpoint, emulator_sdk_config};
use constellation_web::host::{Context, ResourceDef, ResourceKind, Resources, provision};

const MAIL_FROM_VAR: &str = "MAIL_FROM_TEST";

const DEFS: &[ResourceDef] = &[ResourceDef {
    var: MAIL_FROM_VAR,
    default: "noreply@web-tests.example.com",
    kind: ResourceKind::MailSender,
}];

fn fx_mail(ctx: &Context) -> OutgoingMail {
    OutgoingMail {
        from: format!("Constellation <{}>", ctx.resource(MAIL_FROM_VAR).unwrap()),
        to: "someone@example.org".into(),
        to_name: None,
        subject: "Hello".into(),
        text: "Hello".into(),
        html: "<p>Hello</p>".into(),
    }
}

#[tokio::test]
async fn provisioning_makes_the_sender_an_identity_the_mailer_can_send_from() {
    let endpoint = aws_endpoint().unwrap();
    let aws = AwsBackend::from_sdk_config(&emulator_sdk_config(&endpoint).await);
    let resources = provision(&aws, DEFS).await.unwrap();
    assert_eq!(
        resources.get(MAIL_FROM_VAR).unwrap(),
        "noreply@web-tests.example.com"
    );
    provision(&aws, DEFS)
        .await
        .expect("provisioning again succeeds");
    let ctx = Context::new(
        Platform::aws(aws, Arc::new(SystemClock) as Arc<dyn Clock>),
        resources,
        MetricsSink::discard(),
        VerifierConfig::default(),
    );
    let id = ctx.mailer().send(&fx_mail(&ctx)).await.unwrap();
    assert!(!id.is_empty());
}

#[tokio::test]
async fn locally_the_sender_is_the_default_and_mail_lands_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::local(
        dir.path().to_path_buf(),
        String::new(),
        Arc::new(SystemClock),
    )
    .unwrap();
    let resources = Resources::from_env(DEFS, BackendKind::Local).unwrap();
    let ctx = Context::new(
        platform,
        resources,
        MetricsSink::discard(),
        VerifierConfig::default(),
    );
    let id = ctx.mailer().send(&fx_mail(&ctx)).await.unwrap();
    let listed = list(&dir.path().join("mail")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].to, "someone@example.org");
}
