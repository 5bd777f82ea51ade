//! The Mailer port: one message to one recipient, and the one place that
//! turns it into RFC 5322 bytes.
//!
//! Both adapters send what [`render`] builds (SES v2 as raw content; the
//! local mailbox as an `.eml` file), so a message looks the same wherever it
//! went. Rendering is where header injection is stopped: addresses are
//! validated and refused when they could end or extend a header; display
//! names and subjects lose their control characters and are written as
//! RFC 2047 encoded-words when they are not short plain ASCII; bodies are
//! quoted-printable. No caller-supplied text reaches the output raw, so no
//! input can add a header or a MIME part.

use std::fmt::Write as _;

use async_trait::async_trait;
use base64::Engine as _;
use rand::RngCore as _;
use time::OffsetDateTime;

/// The largest rendered message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// The longest address, in bytes (RFC 5321's path limit less the brackets).
pub const MAX_ADDRESS_BYTES: usize = 254;
/// The longest local part of an address, in bytes.
const MAX_LOCAL_PART_BYTES: usize = 64;
/// The longest display name or subject, in characters.
const MAX_PHRASE_CHARS: usize = 1000;
/// The longest message id (left of the `@`), in bytes.
const MAX_MESSAGE_ID_BYTES: usize = 128;
/// UTF-8 bytes per encoded-word: 36 bytes are 48 base64 characters, so a
/// word (`=?UTF-8?B?...?=`) is 60 characters and a `Subject: ` line with one
/// stays within RFC 2047's 76.
const ENCODED_WORD_BYTES: usize = 36;
/// Where plain header text is folded.
const FOLD_AT: usize = 78;
/// Quoted-printable line length, the soft-break `=` included.
const QP_LINE: usize = 76;

/// One message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The sender: a bare address or `Display Name <address>`
    /// (`Constellation <noreply@example.com>`).
    pub from: String,
    /// The recipient's bare address.
    pub to: String,
    /// The recipient's display name.
    pub to_name: Option<String>,
    /// The subject, any Unicode text.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, already escaped by the caller (see [`escape_html`]).
    pub html: String,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The message can never be sent as it is (a bad address, too large,
    /// refused by the provider): do not retry.
    #[error("invalid mail: {0}")]
    Invalid(String),
    /// The provider is throttling or briefly unreachable: retry later.
    #[error("mail temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else (a configuration problem, a local I/O failure).
    #[error("mail backend error")]
    Backend(#[source] anyhow::Error),
}

impl MailError {
    /// Whether sending the same message again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Sends mail.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Sends `mail`; returns the provider's id of the message.
    async fn send(&self, mail: &OutgoingMail) -> Result<String, MailError>;
}

/// `s` with `&`, `<`, `>`, `"` and `'` escaped, for text placed in HTML
/// (element content or a quoted attribute).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Checks a bare address: printable ASCII, one `@`, a local part of 1 to 64
/// bytes and a domain of non-empty dot-separated labels, at most
/// [`MAX_ADDRESS_BYTES`] in all, and none of the characters that delimit or
/// quote in a header (spaces, `<>`, `,;:`, quotes, brackets, backslash).
pub fn validate_address(address: &str) -> Result<(), MailError> {
    let refuse = |why: &str| Err(MailError::Invalid(format!("address {address:?} {why}")));
    if address.is_empty() || address.len() > MAX_ADDRESS_BYTES {
        return refuse(&format!("is not 1 to {MAX_ADDRESS_BYTES} bytes"));
    }
    if let Some(c) = address
        .chars()
        .find(|c| !c.is_ascii_graphic() || "<>,;:\"()[]\\".contains(*c))
    {
        return refuse(&format!("contains {c:?}"));
    }
    let Some((local, domain)) = address.split_once('@') else {
        return refuse("has no @");
    };
    if domain.contains('@') {
        return refuse("has more than one @");
    }
    if local.is_empty() || local.len() > MAX_LOCAL_PART_BYTES {
        return refuse(&format!(
            "has a local part that is not 1 to {MAX_LOCAL_PART_BYTES} bytes"
        ));
    }
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return refuse("has an empty domain label");
    }
    Ok(())
}

/// A sender split into its display name and bare address.
fn parse_mailbox(value: &str) -> Result<(Option<&str>, &str), MailError> {
    let value = value.trim();
    let (name, address) = match value.strip_suffix('>').and_then(|v| v.rsplit_once('<')) {
        Some((name, address)) => {
            let name = name.trim();
            let name = name
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or(name);
            ((!name.is_empty()).then_some(name), address)
        }
        None => (None, value),
    };
    validate_address(address)?;
    Ok((name, address))
}

/// The bare address of a sender given as `address` or `Name <address>`.
pub fn sender_address(from: &str) -> Result<&str, MailError> {
    parse_mailbox(from).map(|(_, address)| address)
}

/// A display name or subject as header text: control characters (CR, LF,
/// tab...) become spaces, so no input can end the header.
fn clean_phrase(s: &str, what: &str) -> Result<String, MailError> {
    if s.chars().count() > MAX_PHRASE_CHARS {
        return Err(MailError::Invalid(format!(
            "the {what} is longer than {MAX_PHRASE_CHARS} characters"
        )));
    }
    Ok(s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect())
}

/// RFC 2047 encoded-words (`=?UTF-8?B?...?=`) for `s`, each of whole
/// characters and at most [`ENCODED_WORD_BYTES`] bytes of UTF-8.
fn encoded_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > ENCODED_WORD_BYTES {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect()
}

/// Whether `s` can be written as it is: printable ASCII and spaces, nothing
/// that looks like an encoded-word, and no word too long to fold.
fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && !s.contains("=?")
        && s.split(' ').all(|w| w.len() <= FOLD_AT - 20)
}

/// Appends one header, folding `tokens` (joined by single spaces, or kept
/// with their own leading spaces for plain text) so that lines stay near
/// [`FOLD_AT`] characters.
fn push_header(out: &mut String, name: &str, tokens: &[String]) {
    out.push_str(name);
    out.push(':');
    let mut line = name.len() + 1;
    for token in tokens {
        if line + 1 + token.len() > FOLD_AT && line > name.len() + 1 && !token.is_empty() {
            out.push_str("\r\n");
            line = 0;
        }
        out.push(' ');
        out.push_str(token);
        line += 1 + token.len();
    }
    out.push_str("\r\n");
}

/// Header tokens for a subject or display name: its words when plain,
/// else encoded-words.
fn phrase_tokens(s: &str) -> Vec<String> {
    if is_plain(s) {
        s.split(' ').map(str::to_owned).collect()
    } else {
        encoded_words(s)
    }
}

/// Header tokens for `Name <address>` or `address`: a short plain name is
/// quoted, any other is encoded.
fn mailbox_tokens(name: Option<&str>, address: &str, what: &str) -> Result<Vec<String>, MailError> {
    let mut tokens = match name {
        None => Vec::new(),
        Some(name) => {
            let name = clean_phrase(name, what)?;
            let name = name.trim();
            if name.is_empty() {
                Vec::new()
            } else if is_plain(name) && name.len() <= 60 {
                let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
                vec![format!("\"{quoted}\"")]
            } else {
                encoded_words(name)
            }
        }
    };
    tokens.push(if tokens.is_empty() {
        address.to_owned()
    } else {
        format!("<{address}>")
    });
    Ok(tokens)
}

/// Quoted-printable (RFC 2045) of `text`, whose line breaks (`\n`, `\r\n`
/// or `\r`) become CRLF hard breaks; lines are at most [`QP_LINE`] characters.
fn quoted_printable(text: &str) -> String {
    let normal = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(normal.len() + normal.len() / 8);
    for (i, line) in normal.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let bytes = line.as_bytes();
        let mut width = 0;
        for (j, &b) in bytes.iter().enumerate() {
            let last = j + 1 == bytes.len();
            let literal =
                (b.is_ascii_graphic() && b != b'=') || (matches!(b, b' ' | b'\t') && !last);
            let len = if literal { 1 } else { 3 };
            // Room for the piece and a soft break's `=` unless it ends the line.
            let room = if last { QP_LINE } else { QP_LINE - 1 };
            if width + len > room {
                out.push_str("=\r\n");
                width = 0;
            }
            if literal {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "={b:02X}");
            }
            width += len;
        }
    }
    out
}

/// A random MIME boundary. It begins with `=_`, which quoted-printable
/// never produces (`=` is always followed by hex digits or a line break), so
/// no body can contain it.
fn boundary() -> String {
    let mut raw = [0_u8; 16];
    rand::rng().fill_bytes(&mut raw);
    format!("=_constellation_{}", hex::encode(raw))
}

/// Checks a message id: 1 to 128 bytes of letters, digits and `.-_+=`,
/// with at most one `@`.
fn validate_message_id(id: &str) -> Result<(), MailError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID_BYTES
        && id.matches('@').count() <= 1
        && !id.starts_with('@')
        && !id.ends_with('@')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_+=@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(MailError::Invalid(format!("bad message id {id:?}")))
    }
}

/// A new time-ordered id: `<unix millis, 13 digits>-<16 hex digits>`, so
/// that ids sort in the order they were made.
pub fn new_message_id(now: OffsetDateTime) -> String {
    let millis = now.unix_timestamp_nanos() / 1_000_000;
    let mut raw = [0_u8; 8];
    rand::rng().fill_bytes(&mut raw);
    format!("{millis:013}-{}", hex::encode(raw))
}

/// Renders `mail` as an RFC 5322 message (CRLF line endings): `From`, `To`,
/// `Subject`, `Date`, `Message-ID` (`<message_id@sender domain>`, or
/// `<message_id>` when it has an `@`), and a `multipart/alternative` body
/// with a text and an HTML part, both UTF-8 in quoted-printable.
pub fn render(
    mail: &OutgoingMail,
    message_id: &str,
    date: OffsetDateTime,
) -> Result<Vec<u8>, MailError> {
    let body_bytes = mail.text.len() + mail.html.len() + mail.subject.len();
    if body_bytes > MAX_MESSAGE_BYTES {
        return Err(MailError::Invalid(format!(
            "the message is larger than {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    let (from_name, from) = parse_mailbox(&mail.from)?;
    validate_address(&mail.to)?;
    validate_message_id(message_id)?;
    let subject = clean_phrase(&mail.subject, "subject")?;
    let date = date
        .to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc2822)
        .map_err(|e| MailError::Invalid(format!("date {date}: {e}")))?;
    let message_id = if message_id.contains('@') {
        format!("<{message_id}>")
    } else {
        let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        format!("<{message_id}@{domain}>")
    };
    let boundary = boundary();

    let mut out = String::with_capacity(body_bytes + body_bytes / 8 + 1024);
    push_header(
        &mut out,
        "From",
        &mailbox_tokens(from_name, from, "sender name")?,
    );
    push_header(
        &mut out,
        "To",
        &mailbox_tokens(mail.to_name.as_deref(), &mail.to, "recipient name")?,
    );
    push_header(&mut out, "Subject", &phrase_tokens(&subject));
    push_header(&mut out, "Date", &[date]);
    push_header(&mut out, "Message-ID", &[message_id]);
    push_header(&mut out, "MIME-Version", &["1.0".to_owned()]);
    push_header(
        &mut out,
        "Content-Type",
        &[
            "multipart/alternative;".to_owned(),
            format!("boundary=\"{boundary}\""),
        ],
    );
    out.push_str("\r\n");
    for (subtype, body) in [("plain", &mail.text), ("html", &mail.html)] {
        let _ = write!(
            out,
            "--{boundary}\r\n\
             Content-Type: text/{subtype}; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             {}\r\n",
            quoted_printable(body)
        );
    }
    let _ = write!(out, "--{boundary}--\r\n");
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(MailError::Invalid(format!(
            "the rendered message is larger than {MAX_MESSAGE_BYTES} bytes"
        )));
    }
    Ok(out.into_bytes())
}

/// The unfolded value of the first header `name` of a rendered message.
pub fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        match (&mut value, line.starts_with([' ', '\t'])) {
            (Some(v), true) => v.push_str(line),
            (Some(_), false) => break,
            (None, true) => {}
            (None, false) => {
                if let Some((n, v)) = line.split_once(':')
                    && n.eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim_start().to_owned());
                }
            }
        }
    }
    value
}

/// `value` with its RFC 2047 encoded-words (`B` or `Q`, UTF-8 or ASCII)
/// decoded; whitespace between adjacent encoded-words is dropped, as the
/// RFC says. Words that do not decode are kept as they are.
pub fn decode_header(value: &str) -> String {
    let mut out = String::new();
    let mut after_word = false;
    for (i, token) in value.split(' ').enumerate() {
        let decoded = decode_word(token);
        if i > 0 && !(after_word && decoded.is_some()) {
            out.push(' ');
        }
        after_word = decoded.is_some();
        out.push_str(decoded.as_deref().unwrap_or(token));
    }
    out
}

fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let text = parts.next()?;
    if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")) {
        return None;
    }
    let bytes = match encoding {
        "B" | "b" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        "Q" | "q" => {
            let mut bytes = Vec::with_capacity(text.len());
            let mut rest = text.as_bytes();
            while let Some((&b, tail)) = rest.split_first() {
                match b {
                    b'_' => bytes.push(b' '),
                    b'=' => {
                        let hex = tail.get(..2)?;
                        bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                        rest = &tail[2..];
                        continue;
                    }
                    b => bytes.push(b),
                }
                rest = tail;
            }
            bytes
        }
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn fx_mail() -> OutgoingMail {
        OutgoingMail {
            from: "Constellation <noreply@example.com>".into(),
            to: "ada@example.org".into(),
            to_name: Some("Ada Lovelace".into()),
            subject: "Your weekly report".into(),
            text: "Hello Ada,\nall is well.".into(),
            html: "<p>Hello Ada,</p><p>all is well.</p>".into(),
        }
    }

    fn fx_date() -> OffsetDateTime {
        time::macros::datetime!(2026-03-01 12:34:56 UTC)
    }

    fn render_str(mail: &OutgoingMail) -> String {
        String::from_utf8(render(mail, "0001-abc", fx_date()).unwrap()).unwrap()
    }

    /// The header block as (name, unfolded value) pairs.
    fn headers(message: &str) -> Vec<(String, String)> {
        let head = message.split("\r\n\r\n").next().unwrap();
        let mut out: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with(' ') || line.starts_with('\t') {
                out.last_mut().unwrap().1.push_str(line);
            } else {
                let (n, v) = line.split_once(':').expect("every header line has a colon");
                out.push((n.to_owned(), v.trim_start().to_owned()));
            }
        }
        out
    }

    /// Decodes `=?UTF-8?B?...?=` words on its own (not with [`decode_header`]).
    fn decode_b_words(value: &str) -> String {
        value
            .split(' ')
            .map(|w| {
                let b64 = w
                    .strip_prefix("=?UTF-8?B?")
                    .and_then(|w| w.strip_suffix("?="))
                    .unwrap_or_else(|| panic!("{w:?} is not a B encoded-word"));
                String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap(),
                )
                .unwrap()
            })
            .collect()
    }

    /// Whether `s` is one quoted-string (with `\\` escapes) or a run of
    /// encoded-words: one display name, with nothing a parser could read as
    /// another address.
    fn is_one_phrase(s: &str) -> bool {
        if let Some(inner) = s.strip_prefix('"') {
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => return chars.next().is_none(),
                    _ => {}
                }
            }
            false
        } else {
            s.split(' ')
                .all(|w| w.starts_with("=?UTF-8?B?") && w.ends_with("?="))
        }
    }

    fn assert_well_formed(message: &str) {
        for line in message.split("\r\n") {
            assert!(
                !line.contains('\r') && !line.contains('\n'),
                "bare CR or LF in {line:?}"
            );
            assert!(line.len() <= 998, "a line of {} octets", line.len());
        }
        let names: Vec<String> = headers(message).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "MIME-Version",
                "Content-Type"
            ],
            "exactly the headers render writes"
        );
    }

    #[test]
    fn a_message_has_its_headers_and_both_parts() {
        let message = render_str(&fx_mail());
        assert_well_formed(&message);
        let h = headers(&message);
        let get = |name: &str| h.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(get("From"), "\"Constellation\" <noreply@example.com>");
        assert_eq!(get("To"), "\"Ada Lovelace\" <ada@example.org>");
        assert_eq!(get("Subject"), "Your weekly report");
        assert_eq!(get("Date"), "Sun, 01 Mar 2026 12:34:56 +0000");
        assert_eq!(get("Message-ID"), "<0001-abc@example.com>");
        assert_eq!(get("MIME-Version"), "1.0");
        let content_type = get("Content-Type");
        let boundary = content_type
            .split("boundary=\"")
            .nth(1)
            .and_then(|b| b.strip_suffix('"'))
            .unwrap();
        assert!(content_type.starts_with("multipart/alternative;"));
        let parts: Vec<&str> = message.split(&format!("--{boundary}")).collect();
        assert_eq!(parts.len(), 4, "preamble, two parts, epilogue: {message}");
        assert!(parts[1].contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(parts[1].contains("Content-Transfer-Encoding: quoted-printable\r\n"));
        assert!(parts[1].contains("Hello Ada,\r\nall is well."));
        assert!(parts[2].contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(parts[2].contains("<p>Hello Ada,</p><p>all is well.</p>"));
        assert_eq!(parts[3], "--\r\n");
        assert_eq!(header(message.as_bytes(), "to").unwrap(), get("To"));
    }

    #[test]
    fn the_boundary_is_random() {
        let a = render_str(&fx_mail());
        let b = render_str(&fx_mail());
        assert_ne!(a, b);
    }

    #[test]
    fn a_bare_sender_has_no_name() {
        let mut mail = fx_mail();
        mail.from = "noreply@example.com".into();
        mail.to_name = None;
        let message = render_str(&mail);
        assert!(message.starts_with("From: noreply@example.com\r\nTo: ada@example.org\r\n"));
        assert_eq!(
            sender_address(&fx_mail().from).unwrap(),
            "noreply@example.com"
        );
    }

    #[test]
    fn subject_line_breaks_cannot_add_headers() {
        for subject in [
            "Hi\r\nBcc: victim@example.net",
            "Hi\nBcc: victim@example.net",
            "Hi\rBcc: victim@example.net",
            "Hi\r\n\r\n--boundary\r\nContent-Type: text/html",
            "Hi\u{0}\u{b}\u{c}\u{85}Bcc: x@y.z",
        ] {
            let mut mail = fx_mail();
            mail.subject = subject.into();
            let message = render_str(&mail);
            assert_well_formed(&message);
            let subject_value = header(message.as_bytes(), "Subject").unwrap();
            assert!(
                decode_header(&subject_value).starts_with("Hi "),
                "{subject:?} -> {subject_value:?}"
            );
            assert!(!message.to_ascii_lowercase().contains("\r\nbcc:"));
        }
    }

    #[test]
    fn display_names_cannot_add_headers() {
        for name in [
            "Ada\r\nBcc: victim@example.net",
            "Ada\" <evil@example.net>, \"x",
            "Ada <evil@example.net>",
            "Ada\nContent-Type: text/html",
        ] {
            let mut mail = fx_mail();
            mail.to_name = Some(name.into());
            let message = render_str(&mail);
            assert_well_formed(&message);
            let to = header(message.as_bytes(), "To").unwrap();
            let display = to
                .strip_suffix(" <ada@example.org>")
                .unwrap_or_else(|| panic!("{name:?} -> {to}"));
            assert!(is_one_phrase(display), "{name:?} -> {to}");
        }
        let mut mail = fx_mail();
        mail.from = "Evil\r\nBcc: x@y.z <noreply@example.com>".into();
        let message = render_str(&mail);
        assert_well_formed(&message);
    }

    #[test]
    fn quotes_in_plain_names_are_escaped() {
        let mut mail = fx_mail();
        mail.to_name = Some("Ada \"Countess\" L\\".into());
        let to = header(render_str(&mail).as_bytes(), "To").unwrap();
        assert_eq!(to, "\"Ada \\\"Countess\\\" L\\\\\" <ada@example.org>");
    }

    #[test]
    fn bad_addresses_are_refused() {
        for address in [
            "victim@example.net\r\nBcc: x@y.z",
            "a@b.c\nx",
            "a@b.c, other@d.e",
            "Name <a@b.c>",
            "a b@c.d",
            "a@@b.c",
            "a@b@c.d",
            "ab.c",
            "@b.c",
            "a@",
            "a@b..c",
            "a@.b",
            "\"a\"@b.c",
            "a;b@c.d",
            "ä@b.c",
            "a\u{0}@b.c",
            &format!("{}@b.c", "a".repeat(65)),
            &format!("a@{}.com", "b".repeat(260)),
        ] {
            let mut mail = fx_mail();
            mail.to = address.to_owned();
            assert!(
                matches!(render(&mail, "1", fx_date()), Err(MailError::Invalid(_))),
                "recipient {address:?}"
            );
            let mut mail = fx_mail();
            mail.from = format!("Sender <{address}>");
            assert!(
                matches!(render(&mail, "1", fx_date()), Err(MailError::Invalid(_))),
                "sender {address:?}"
            );
        }
        for bad_id in ["", "a b", "a\r\nb", "<x>", "a@b@c"] {
            assert!(matches!(
                render(&fx_mail(), bad_id, fx_date()),
                Err(MailError::Invalid(_))
            ));
        }
    }

    #[test]
    fn a_non_ascii_subject_is_encoded_and_round_trips() {
        let subject =
            "Grüße aus Köln – 日本語の件名 with some length to it, enough to need folding 🚀";
        let mut mail = fx_mail();
        mail.subject = subject.into();
        let message = render_str(&mail);
        assert_well_formed(&message);
        assert!(message.is_ascii(), "the header block is 7-bit");
        let raw = message
            .split("\r\n")
            .skip_while(|l| !l.starts_with("Subject:"))
            .take_while(|l| l.starts_with("Subject:") || l.starts_with(' '))
            .collect::<Vec<_>>();
        assert!(raw.len() > 1, "a long subject is folded: {raw:?}");
        assert!(raw.iter().all(|l| l.len() <= 76), "{raw:?}");
        let value = header(message.as_bytes(), "Subject").unwrap();
        assert_eq!(decode_b_words(&value), subject);
        assert_eq!(decode_header(&value), subject);
    }

    #[test]
    fn a_non_ascii_name_is_encoded() {
        let mut mail = fx_mail();
        mail.to_name = Some("Zoë Ångström".into());
        let to = header(render_str(&mail).as_bytes(), "To").unwrap();
        let (words, address) = to.rsplit_once(' ').unwrap();
        assert_eq!(address, "<ada@example.org>");
        assert_eq!(decode_b_words(words), "Zoë Ångström");
    }

    #[test]
    fn long_plain_subjects_are_folded_at_spaces() {
        let subject = "word ".repeat(60).trim_end().to_owned();
        let mut mail = fx_mail();
        mail.subject = subject.clone();
        let message = render_str(&mail);
        assert_well_formed(&message);
        assert!(message.split("\r\n").all(|l| l.len() <= 78));
        assert_eq!(header(message.as_bytes(), "Subject").unwrap(), subject);
        let mut mail = fx_mail();
        mail.subject = "x".repeat(900);
        let message = render_str(&mail);
        assert_well_formed(&message);
        assert_eq!(
            decode_header(&header(message.as_bytes(), "Subject").unwrap()),
            "x".repeat(900)
        );
        let mut mail = fx_mail();
        mail.subject = "=?UTF-8?B?SGk=?=".into();
        let value = header(render_str(&mail).as_bytes(), "Subject").unwrap();
        assert_eq!(
            decode_b_words(&value),
            "=?UTF-8?B?SGk=?=",
            "never taken for an encoded-word"
        );
    }

    #[test]
    fn bodies_are_quoted_printable_with_short_lines() {
        let mut mail = fx_mail();
        mail.text = format!("{}\r\nnaïve = café \nend  ", "é".repeat(2000));
        mail.html = "<p>".to_owned() + &"a".repeat(5000) + "</p>";
        let message = render_str(&mail);
        assert_well_formed(&message);
        assert!(message.split("\r\n").all(|l| l.len() <= 78));
        assert!(
            message.contains("na=C3=AFve =3D caf=C3=A9=20\r\nend =20\r\n"),
            "{message}"
        );
    }

    #[test]
    fn quoted_printable_decodes_back() {
        let text = "line one\nline two with trailing space \n\ttab\n=equals=\n".to_owned()
            + &"ü".repeat(100);
        let encoded = quoted_printable(&text);
        let mut decoded = Vec::new();
        let mut bytes = encoded.as_bytes();
        while let Some((&b, rest)) = bytes.split_first() {
            if b == b'=' {
                if rest.starts_with(b"\r\n") {
                    bytes = &rest[2..];
                    continue;
                }
                let hex = std::str::from_utf8(&rest[..2]).unwrap();
                decoded.push(u8::from_str_radix(hex, 16).unwrap());
                bytes = &rest[2..];
            } else {
                decoded.push(b);
                bytes = rest;
            }
        }
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            text.replace('\n', "\r\n")
        );
    }

    #[test]
    fn oversized_messages_are_refused() {
        let mut mail = fx_mail();
        mail.text = "a".repeat(MAX_MESSAGE_BYTES);
        assert!(matches!(
            render(&mail, "1", fx_date()),
            Err(MailError::Invalid(_))
        ));
        let mut mail = fx_mail();
        // Fits before encoding, not after (every byte becomes `=XX`).
        mail.text = "\u{1}".repeat(MAX_MESSAGE_BYTES / 2);
        assert!(matches!(
            render(&mail, "1", fx_date()),
            Err(MailError::Invalid(_))
        ));
        let mut mail = fx_mail();
        mail.subject = "s".repeat(MAX_PHRASE_CHARS + 1);
        assert!(matches!(
            render(&mail, "1", fx_date()),
            Err(MailError::Invalid(_))
        ));
    }

    #[test]
    fn html_escaping() {
        assert_eq!(
            escape_html("<a href=\"x\">Tom & Jerry's</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;"
        );
    }

    #[test]
    fn only_unavailable_is_retryable() {
        assert!(MailError::Unavailable(anyhow::anyhow!("x")).is_retryable());
        assert!(!MailError::Backend(anyhow::anyhow!("x")).is_retryable());
        assert!(!MailError::Invalid("x".into()).is_retryable());
    }

    #[test]
    fn message_ids_sort_by_time() {
        let early = new_message_id(fx_date());
        let late = new_message_id(fx_date() + time::Duration::milliseconds(1));
        assert!(early < late);
        assert_eq!(early.len(), 13 + 1 + 16);
        validate_message_id(&early).unwrap();
    }
}
