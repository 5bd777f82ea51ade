//! The Mailer port over Amazon SES v2.
//!
//! Each message goes out as raw content (`SendEmail` with
//! `EmailContent::Raw`) built by [`render`], the same bytes the local
//! mailbox stores, so the two backends send the same message. The envelope
//! sender (`FromEmailAddress`) is the bare address of `From`, which must be a
//! verified identity ([`AwsBackend::ensure_email_identity`](super::AwsBackend::ensure_email_identity)
//! provisions it); the envelope recipient is the one `To` address.
//!
//! Failures are sorted for the caller's retry decision: throttling, 5xx,
//! timeouts, an exceeded sending quota and paused sending are
//! [`MailError::Unavailable`]; SES refusing the message itself
//! (`MessageRejected`, `BadRequestException`) is [`MailError::Invalid`];
//! configuration problems (an unverified MAIL FROM domain, a suspended
//! account) and anything else are [`MailError::Backend`].

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sesv2::error::SdkError;
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use aws_smithy_types::error::metadata::ProvideErrorMetadata as _;

use super::is_transient;
use crate::clock::Clock;
use crate::mail::{MailError, Mailer, OutgoingMail, new_message_id, render, sender_address};

/// Sends mail through SES v2 in the configured account and region.
#[derive(Clone, Debug)]
pub struct SesMailer {
    /// Its client is built on first use, not with the adapter (see
    /// [`super::AwsBackend`]): a cold start that does not use it
    /// does not set up the HTTPS connector.
    backend: super::AwsBackend,
    clock: Arc<dyn Clock>,
}

impl SesMailer {
    fn client(&self) -> &aws_sdk_sesv2::Client {
        self.backend.sesv2()
    }

    pub(crate) fn new(backend: super::AwsBackend, clock: Arc<dyn Clock>) -> Self {
        Self { backend, clock }
    }
}

/// Sorts a `SendEmail` failure (see the module docs).
fn classify(err: SdkError<SendEmailError>) -> MailError {
    if is_transient(&err) {
        return MailError::Unavailable(anyhow::Error::new(err).context("SES SendEmail"));
    }
    match err.as_service_error() {
        Some(
            SendEmailError::LimitExceededException(_) | SendEmailError::SendingPausedException(_),
        ) => MailError::Unavailable(anyhow::Error::new(err).context("SES SendEmail")),
        Some(e @ (SendEmailError::MessageRejected(_) | SendEmailError::BadRequestException(_))) => {
            MailError::Invalid(format!(
                "SES refused the message ({}): {}",
                e.code().unwrap_or("unknown"),
                e.message().unwrap_or("no reason given")
            ))
        }
        _ => MailError::Backend(anyhow::Error::new(err).context("SES SendEmail")),
    }
}

#[async_trait]
impl Mailer for SesMailer {
    #[tracing::instrument(skip(self, mail))]
    async fn send(&self, mail: &OutgoingMail) -> Result<String, MailError> {
        let now = self.clock.now();
        let id = new_message_id(now);
        let message = render(mail, &id, now)?;
        let raw = RawMessage::builder()
            .data(Blob::new(message))
            .build()
            .map_err(|e| MailError::Backend(anyhow::Error::new(e).context("SES raw message")))?;
        let out = self
            .client()
            .send_email()
            .from_email_address(sender_address(&mail.from)?)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map_err(classify)?;
        // Sent: without SES's id, ours (in the Message-ID header) still names it.
        Ok(out.message_id().map_or(id, str::to_owned))
    }
}
