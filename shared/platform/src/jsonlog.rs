//! The JSON line of every log event, written straight into the line's
//! buffer.
//!
//! A line is `{"timestamp":…,"level":…,<the event's fields>,"spans":[…]}`,
//! where `spans` lists every span the event is in (its explicit parent's
//! scope, else the current one), from the root, each as its fields plus
//! `"name"`. These are the keys of `tracing-subscriber`'s JSON format
//! (flattened, with the span list), which this replaces because of its
//! cost: it parses each span's stored fields back into a `serde_json::Value`
//! for every line, and collects every event's fields into a map first. Here
//! a span's fields are rendered once, as the members of a JSON object, when
//! the span is made ([`JsonMembers`]), and a line copies them. Members come
//! in the order the code declares them (not sorted), a raw identifier's
//! `r#` is dropped from its key, and bytes are a hex string.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Renders fields as the members of a JSON object without its braces
/// (`"a":1,"b":"x"`); a span's are rendered once, when it is created.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonMembers;

impl<'w> FormatFields<'w> for JsonMembers {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut members = Members::new(&mut writer, true);
        fields.record(&mut members);
        members.result
    }

    /// A value recorded after the span was made (`span.record(...)`): added,
    /// or, for a field that already has one, put in its place (one key per
    /// name; rare, so the fields are re-rendered then).
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        let mut added = String::new();
        let mut members = Members::new(&mut added, true);
        fields.record(&mut members);
        members.result?;
        if added.is_empty() {
            return Ok(());
        }
        let mut names = Names(Vec::new());
        fields.record(&mut names);
        if names.0.iter().any(|name| has_member(&current.fields, name)) {
            let mut merged: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&format!("{{{}}}", current.fields)).map_err(|_| fmt::Error)?;
            let new: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&format!("{{{added}}}")).map_err(|_| fmt::Error)?;
            merged.extend(new);
            let object = serde_json::to_string(&merged).map_err(|_| fmt::Error)?;
            current.fields = object
                .strip_prefix('{')
                .and_then(|o| o.strip_suffix('}'))
                .ok_or(fmt::Error)?
                .to_owned();
            return Ok(());
        }
        if !current.fields.is_empty() {
            current.fields.push(',');
        }
        current.fields.push_str(&added);
        Ok(())
    }
}

/// Whether the members `fields` have one named `name`. Exact: inside a
/// rendered string every `"` follows a `\`, so `"name":` at the start or
/// after a `,` is a key.
fn has_member(fields: &str, name: &str) -> bool {
    let mut key = String::with_capacity(name.len() + 4);
    key.push(',');
    if write_json_str(&mut key, name).is_err() {
        return false;
    }
    key.push(':');
    fields.starts_with(&key[1..]) || fields.contains(&key)
}

/// The names of the fields a record carries a value for.
struct Names(Vec<&'static str>);

impl Visit for Names {
    fn record_debug(&mut self, field: &Field, _: &dyn fmt::Debug) {
        self.0.push(member_name(field));
    }
}

/// A field's JSON key: its name without a raw identifier's `r#`.
fn member_name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

/// The line of each event: timestamp (RFC 3339, UTC, microseconds), level,
/// (the target, if asked for), the event's fields, then the spans it is in.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLine {
    target: bool,
}

impl JsonLine {
    /// Lines that also name the event's `target` (its module, or for the
    /// `log` crate's records their logger's): for tests that tell the SDK's
    /// lines from ours. The binaries leave it out.
    pub fn with_target() -> Self {
        Self { target: true }
    }
}

impl<S> FormatEvent<S, JsonMembers> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonMembers>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut writer, time::OffsetDateTime::now_utc())?;
        write!(writer, "\",\"level\":\"{}\"", event.metadata().level())?;
        if self.target {
            writer.write_str(",\"target\":")?;
            write_json_str(&mut writer, event.metadata().target())?;
        }
        let mut members = Members::new(&mut writer, false);
        event.record(&mut members);
        members.result?;
        if let Some(scope) = ctx.event_scope() {
            writer.write_str(",\"spans\":[")?;
            for (i, span) in scope.from_root().enumerate() {
                if i > 0 {
                    writer.write_char(',')?;
                }
                writer.write_char('{')?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonMembers>>()
                    && !fields.fields.is_empty()
                {
                    writer.write_str(&fields.fields)?;
                    writer.write_char(',')?;
                }
                writer.write_str("\"name\":")?;
                write_json_str(&mut writer, span.metadata().name())?;
                writer.write_char('}')?;
            }
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

fn write_timestamp(out: &mut impl fmt::Write, at: time::OffsetDateTime) -> fmt::Result {
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// Writes each field it visits as a JSON member, a `,` before each but the
/// first (before the first too unless `first`).
struct Members<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<'a, W: fmt::Write> Members<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        Self {
            out,
            first,
            result: Ok(()),
        }
    }

    /// Writes `"name":` then the value `value` writes, unless an earlier
    /// write failed.
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.out.write_char(',')?;
            }
            write_json_str(self.out, member_name(field))?;
            self.out.write_char(':')?;
            value(self.out)
        })();
    }
}

impl<W: fmt::Write> Visit for Members<'_, W> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json writes it (`2.0`, not `2`); not a number is null.
        self.member(field, |out| match serde_json::Number::from_f64(value) {
            Some(number) => write!(out, "{number}"),
            None => out.write_str("null"),
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| write_json_str(out, value));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.member(field, |out| {
            out.write_char('"')?;
            for b in value {
                write!(out, "{b:02x}")?;
            }
            out.write_char('"')
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value}")?;
            out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `value` as a JSON string, quotes included.
fn write_json_str(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `f` logs, as written.
    fn raw_lines_of(f: impl FnOnce()) -> Vec<String> {
        raw_lines_in(JsonLine::default(), f)
    }

    /// The lines `f` logs in the format `line`, as written.
    fn raw_lines_in(line: JsonLine, f: impl FnOnce()) -> Vec<String> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonMembers)
                .event_format(line)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, f);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines `f` logs, each parsed (so each must be one JSON value).
    fn lines_of(f: impl FnOnce()) -> Vec<Value> {
        raw_lines_of(f)
            .iter()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    #[test]
    fn a_line_has_the_events_fields_and_every_span_from_the_root() {
        let lines = lines_of(|| {
            let outer = tracing::info_span!("request", service = "kv", request_id = %"r-1");
            let _outer = outer.enter();
            let inner = tracing::info_span!("store", r#type = "put", n = 3_u64, ok = true);
            let _inner = inner.enter();
            tracing::info!(
                status = 200_u16,
                latency_ms = 1.25,
                whole = 2.0,
                "GET {} {}",
                "/v1/kv",
                200
            );
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{timestamp}"
        );
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "GET /v1/kv 200");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.25);
        // A float stays a float (`2.0`, which parses back as one, not `2`).
        assert_eq!(line["whole"], json!(2.0));
        assert!(line["whole"].is_f64(), "{line}");
        assert_eq!(
            line["spans"],
            json!([
                {"name": "request", "service": "kv", "request_id": "r-1"},
                {"name": "store", "type": "put", "n": 3, "ok": true},
            ])
        );
    }

    #[test]
    fn hostile_values_stay_inside_their_strings() {
        let nasty = "a\"b\\c\n\r\t\u{1}\u{7f}é\",\"level\":\"ERROR";
        let lines = lines_of(|| {
            let span = tracing::info_span!("request", key = nasty, debug = ?nasty);
            let _span = span.enter();
            tracing::warn!(
                value = nasty,
                nan = f64::NAN,
                bytes = &b"\x00\xff"[..],
                "{nasty}"
            );
        });
        let line = &lines[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], nasty);
        assert_eq!(line["value"], nasty);
        assert_eq!(line["nan"], Value::Null);
        assert_eq!(line["bytes"], "00ff");
        assert_eq!(line["spans"][0]["key"], nasty);
        assert_eq!(line["spans"][0]["debug"], format!("{nasty:?}"));
    }

    #[test]
    fn a_value_recorded_later_is_added_or_replaces_the_old_one() {
        let raw = raw_lines_of(|| {
            let span = tracing::info_span!(
                "login",
                org = tracing::field::Empty,
                account = tracing::field::Empty
            );
            let _span = span.enter();
            tracing::info!("before");
            span.record("org", "o-1");
            tracing::info!("added");
            span.record("org", "o-2");
            span.record("account", "a-1");
            tracing::info!("replaced");
        });
        let lines: Vec<Value> = raw
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["spans"], json!([{"name": "login"}]));
        assert_eq!(lines[1]["spans"], json!([{"name": "login", "org": "o-1"}]));
        assert_eq!(
            lines[2]["spans"],
            json!([{"name": "login", "org": "o-2", "account": "a-1"}])
        );
        // One key per name, not a second "org" that a parser may or may not
        // prefer.
        assert_eq!(raw[2].matches("\"org\"").count(), 1, "{}", raw[2]);
    }

    #[test]
    fn an_explicit_parent_decides_the_span_list() {
        let lines = lines_of(|| {
            let job = tracing::info_span!("job", id = 7_u64);
            let other = tracing::info_span!("other");
            let _other = other.enter();
            tracing::info!(parent: &job, "child of job");
            tracing::info!(parent: None, "a root");
            tracing::info!("in other");
        });
        assert_eq!(lines[0]["spans"], json!([{"name": "job", "id": 7}]));
        assert!(lines[1].get("spans").is_none(), "{}", lines[1]);
        assert_eq!(lines[2]["spans"], json!([{"name": "other"}]));
    }

    #[test]
    fn an_event_outside_any_span_has_no_span_list() {
        let lines = lines_of(|| tracing::error!(code = -1_i64, "alone"));
        assert_eq!(lines[0]["code"], -1);
        assert_eq!(lines[0]["level"], "ERROR");
        assert!(lines[0].get("spans").is_none(), "{}", lines[0]);
    }

    #[test]
    fn the_target_is_written_only_when_asked_for() {
        let raw = raw_lines_in(JsonLine::with_target(), || {
            tracing::info!(target: "aws_smithy_runtime", "sent");
        });
        let line: Value = serde_json::from_str(&raw[0]).unwrap();
        assert_eq!(line["target"], "aws_smithy_runtime");
        let plain = lines_of(|| tracing::info!(target: "aws_smithy_runtime", "sent"));
        assert!(plain[0].get("target").is_none(), "{}", plain[0]);
    }

    #[test]
    fn a_key_is_found_only_where_it_is_a_key() {
        let mut fields = String::from(r#""a":"x,\"org\":1""#);
        assert!(!has_member(&fields, "org"));
        assert!(has_member(&fields, "a"));
        fields.push_str(r#","org":2"#);
        assert!(has_member(&fields, "org"));
    }
}
