//! Reading legacy files as rows of text fields, whatever their format:
//! PostgreSQL `COPY ... WITH (FORMAT csv, HEADER)` output and `mongoexport`
//! JSON Lines (canonical or relaxed Extended JSON). Every value arrives as
//! the text it was written with (a Decimal128 or a JSON number as its
//! digits, never through a float), and the rules of [`super::fields`] parse
//! it as the services do.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The longest line (or CSV record) read, in bytes: a row is a handful of
/// short fields, and one unbounded line must not exhaust memory.
pub const MAX_ROW_BYTES: usize = 1 << 20;

/// A file read through a budget: reading more than [`MAX_ROW_BYTES`] (plus
/// a read-ahead buffer) without [`Budget::reset`] fails, so that one record
/// that never ends (an unbalanced quote, a file without newlines) stops the
/// import with a clear error instead of growing in memory.
#[derive(Debug)]
struct Bounded {
    file: File,
    budget: Budget,
}

/// The bytes read since the last record began, shared with the reader.
#[derive(Debug, Clone, Default)]
struct Budget(std::rc::Rc<std::cell::Cell<usize>>);

/// What the CSV reader may read ahead beyond a record.
const READ_AHEAD: usize = 64 * 1024;

impl Budget {
    fn reset(&self) {
        self.0.set(0);
    }
}

impl std::io::Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        let used = self.budget.0.get().saturating_add(n);
        if used > MAX_ROW_BYTES + READ_AHEAD {
            return Err(std::io::Error::other(format!(
                "a record longer than {MAX_ROW_BYTES} bytes (an unbalanced quote?)"
            )));
        }
        self.budget.0.set(used);
        Ok(n)
    }
}

/// One row: its line number in the file (of its first line, for a CSV
/// record spanning several) and its fields by canonical name. A field that
/// is absent, SQL NULL (an empty CSV field) or JSON `null` is not in the map.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// 1-based line number in the file.
    pub line: u64,
    /// Canonical field name → text.
    pub fields: BTreeMap<&'static str, String>,
}

impl Row {
    /// The field's text, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The field's text, or why the row is rejected.
    pub fn require(&self, name: &'static str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("{name}: is missing"))
    }
}

/// One column the importer reads: its canonical name and the names a
/// source may give it (the first present wins).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The name the mapping code uses.
    pub name: &'static str,
    /// The names in the source file.
    pub aliases: &'static [&'static str],
    /// Whether a file without it is refused as a whole.
    pub required: bool,
    /// Read from MongoDB documents only (a CSV column of this name is
    /// reported as not imported).
    pub mongo_only: bool,
}

/// A file read row by row.
pub trait Rows {
    /// The next row, `Ok(Err(reason))` for a row that cannot be read (its
    /// line number with it), `None` at the end.
    fn next_row(&mut self) -> Option<anyhow::Result<Result<Row, (u64, String)>>>;
    /// Columns of the file the importer does not read (for the summary:
    /// a column left behind must not go unnoticed).
    fn unread_columns(&self) -> Vec<String>;
}

/// A CSV file with a header row, as `COPY ... TO STDOUT WITH (FORMAT csv,
/// HEADER)` writes it.
#[derive(Debug)]
pub struct CsvRows {
    path: PathBuf,
    reader: csv::Reader<Bounded>,
    budget: Budget,
    /// Column index of each canonical field.
    positions: Vec<(&'static str, usize)>,
    unread: Vec<String>,
    record: csv::StringRecord,
}

impl CsvRows {
    /// Opens `path` and maps its header to `columns`; a missing required
    /// column refuses the whole file.
    pub fn open(path: &Path, columns: &[Column]) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let budget = Budget::default();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(Bounded {
                file,
                budget: budget.clone(),
            });
        let header: Vec<String> = reader
            .headers()
            .with_context(|| format!("reading the header of {}", path.display()))?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let mut positions = Vec::new();
        for column in columns.iter().filter(|c| !c.mongo_only) {
            match column
                .aliases
                .iter()
                .find_map(|a| header.iter().position(|h| h == a))
            {
                Some(i) => positions.push((column.name, i)),
                None if column.required => bail!(
                    "{}: no `{}` column (the header has: {})",
                    path.display(),
                    column.aliases.join("` or `"),
                    header.join(", ")
                ),
                None => {}
            }
        }
        let unread = header
            .iter()
            .enumerate()
            .filter(|(i, _)| !positions.iter().any(|(_, p)| p == i))
            .map(|(_, h)| h.clone())
            .collect();
        Ok(Self {
            path: path.to_owned(),
            reader,
            positions,
            unread,
            record: csv::StringRecord::new(),
            budget,
        })
    }
}

impl Rows for CsvRows {
    fn next_row(&mut self) -> Option<anyhow::Result<Result<Row, (u64, String)>>> {
        self.budget.reset();
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => {
                let line = self.record.position().map_or(0, csv::Position::line);
                if self.record.as_slice().len() > MAX_ROW_BYTES {
                    return Some(Ok(Err((
                        line,
                        format!("longer than {MAX_ROW_BYTES} bytes"),
                    ))));
                }
                let mut row = Row {
                    line,
                    ..Row::default()
                };
                for (name, i) in &self.positions {
                    if let Some(value) = self.record.get(*i) {
                        row.fields.insert(name, value.to_owned());
                    }
                }
                Some(Ok(Ok(row)))
            }
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                match e.kind() {
                    // A row with the wrong number of fields, or not UTF-8:
                    // that row is rejected, the next is read.
                    csv::ErrorKind::UnequalLengths { .. } | csv::ErrorKind::Utf8 { .. } => {
                        Some(Ok(Err((line, format!("not a row of this file: {e}")))))
                    }
                    _ => Some(Err(anyhow::Error::new(e).context(format!(
                        "reading {} near line {line}",
                        self.path.display()
                    )))),
                }
            }
        }
    }

    fn unread_columns(&self) -> Vec<String> {
        self.unread.clone()
    }
}

/// A `mongoexport` file: one JSON document per line.
#[derive(Debug)]
pub struct MongoRows {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    columns: &'static [Column],
    unread: std::collections::BTreeSet<String>,
}

impl MongoRows {
    /// Opens `path`; its documents are read for `columns`.
    pub fn open(path: &Path, columns: &'static [Column]) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::new(file),
            line: 0,
            columns,
            unread: std::collections::BTreeSet::new(),
        })
    }

    fn document(&mut self, text: &str) -> Result<Row, String> {
        if text.len() > MAX_ROW_BYTES {
            return Err(format!("longer than {MAX_ROW_BYTES} bytes"));
        }
        // Each value is kept as its raw JSON text, so a number is read as
        // the digits it was written with and never becomes a float.
        let doc: BTreeMap<String, Box<RawValue>> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON document: {e}"))?;
        let mut row = Row {
            line: self.line,
            ..Row::default()
        };
        for key in doc.keys() {
            if !self
                .columns
                .iter()
                .any(|c| c.aliases.contains(&key.as_str()))
            {
                self.unread.insert(key.clone());
            }
        }
        for column in self.columns {
            let Some(raw) = column.aliases.iter().find_map(|a| doc.get(*a)) else {
                continue;
            };
            if let Some(text) =
                extended_json_text(raw).map_err(|e| format!("{}: {e}", column.name))?
            {
                row.fields.insert(column.name, text);
            }
        }
        Ok(row)
    }
}

impl Rows for MongoRows {
    fn next_row(&mut self) -> Option<anyhow::Result<Result<Row, (u64, String)>>> {
        loop {
            let mut bytes = Vec::new();
            let read = (&mut self.reader)
                .take(MAX_ROW_BYTES as u64 + 1)
                .read_until(b'\n', &mut bytes);
            match read {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(anyhow::Error::new(e).context(format!(
                        "reading {} line {}",
                        self.path.display(),
                        self.line + 1
                    ))));
                }
            }
            self.line += 1;
            let number = self.line;
            if bytes.len() > MAX_ROW_BYTES {
                // No end in sight: stop rather than guess where it ends.
                return Some(Err(anyhow::anyhow!(
                    "{} line {number}: longer than {MAX_ROW_BYTES} bytes",
                    self.path.display()
                )));
            }
            let Ok(line) = String::from_utf8(bytes) else {
                return Some(Ok(Err((number, "not UTF-8".to_owned()))));
            };
            if line.trim().is_empty() {
                continue;
            }
            return Some(Ok(self.document(&line).map_err(|reason| (number, reason))));
        }
    }

    fn unread_columns(&self) -> Vec<String> {
        self.unread.iter().cloned().collect()
    }
}

/// The text of one Extended JSON value (canonical or relaxed): a string as
/// it is; a number or a `$numberLong`/`$numberInt`/`$numberDecimal` as its
/// digits; an `$oid` as its hex; a `$date` as RFC 3339; `true`/`false`;
/// `null` as absent. Anything else (a `$numberDouble`, a nested document,
/// an array) is refused: no field the importer reads holds one.
pub fn extended_json_text(raw: &RawValue) -> Result<Option<String>, String> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(text)
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(b'-' | b'0'..=b'9') => Ok(Some(text.to_owned())),
        Some(b't' | b'f') => Ok(Some(text.to_owned())),
        Some(b'n') => Ok(None),
        Some(b'{') => {
            let wrapper: BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(text).map_err(|e| e.to_string())?;
            let mut entries = wrapper.iter();
            let (Some((key, inner)), None) = (entries.next(), entries.next()) else {
                return Err("a document where a value was expected".to_owned());
            };
            match key.as_str() {
                "$oid" => {
                    let hex: String =
                        serde_json::from_str(inner.get()).map_err(|_| "a bad $oid".to_owned())?;
                    if hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        Ok(Some(hex.to_ascii_lowercase()))
                    } else {
                        Err(format!("`{hex}` is not an ObjectId"))
                    }
                }
                "$numberDecimal" | "$numberLong" | "$numberInt" => {
                    serde_json::from_str::<String>(inner.get())
                        .map(Some)
                        .map_err(|_| format!("a bad {key}"))
                }
                "$date" => date_text(inner).map(Some),
                other => Err(format!(
                    "an Extended JSON `{other}`, which this field cannot hold"
                )),
            }
        }
        _ => Err("a value this field cannot hold".to_owned()),
    }
}

/// A `$date`'s value: relaxed (`"2024-01-02T03:04:05Z"`), canonical
/// (`{"$numberLong": "<millis>"}`) or a bare millisecond count. Nothing
/// else, and never another `$date`: a value nested without end must not
/// recurse without end.
fn date_text(inner: &RawValue) -> Result<String, String> {
    let text = inner.get().trim();
    let millis: i64 = match text.as_bytes().first() {
        Some(b'"') => {
            let relaxed: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            return OffsetDateTime::parse(&relaxed, &Rfc3339)
                .map_err(|_| format!("`{relaxed}` is not an RFC 3339 date"))
                .and_then(|t| t.format(&Rfc3339).map_err(|e| e.to_string()));
        }
        Some(b'-' | b'0'..=b'9') => text
            .parse()
            .map_err(|_| format!("`{text}` is not a date"))?,
        Some(b'{') => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Canonical {
                #[serde(rename = "$numberLong")]
                millis: String,
            }
            let canonical: Canonical =
                serde_json::from_str(text).map_err(|_| "a $date that is not a date".to_owned())?;
            canonical
                .millis
                .parse()
                .map_err(|_| format!("`{}` is not a date", canonical.millis))?
        }
        _ => return Err("a $date that is not a date".to_owned()),
    };
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|_| format!("{millis} ms is out of range"))
        .and_then(|t| t.format(&Rfc3339).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(json: &str) -> Result<Option<String>, String> {
        let raw: Box<RawValue> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        extended_json_text(&raw)
    }

    #[test]
    fn a_record_that_never_ends_stops_the_import_instead_of_filling_memory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("users.csv");
        // An unbalanced quote: the rest of the file reads as one field.
        let mut text = String::from("id,email\n1,\"a@example.com\n");
        text.push_str(&"x".repeat(MAX_ROW_BYTES + 2 * READ_AHEAD));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let columns = [
            Column {
                name: "id",
                aliases: &["id"],
                required: true,
                mongo_only: false,
            },
            Column {
                name: "email",
                aliases: &["email"],
                required: true,
                mongo_only: false,
            },
        ];
        let mut rows = CsvRows::open(&path, &columns).unwrap_or_else(|e| panic!("{e}"));
        match rows.next_row() {
            Some(Err(e)) => assert!(format!("{e:#}").contains("longer than"), "{e:#}"),
            other => panic!("expected the import to stop, got {other:?}"),
        }
    }

    #[test]
    fn a_mongo_line_without_end_or_not_utf8_is_no_document() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("users.json");
        let mut bytes = b"{\"_id\": \"\xff\"}\n".to_vec();
        bytes.extend(std::iter::repeat_n(b' ', MAX_ROW_BYTES + 1));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
        static COLUMNS: [Column; 1] = [Column {
            name: "id",
            aliases: &["_id"],
            required: true,
            mongo_only: false,
        }];
        let mut rows = MongoRows::open(&path, &COLUMNS).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(rows.next_row(), Some(Ok(Err((1, _))))),
            "not UTF-8: rejected"
        );
        assert!(matches!(rows.next_row(), Some(Err(_))), "no end: stops");
    }

    #[test]
    fn extended_json_values_arrive_as_their_text() {
        assert_eq!(text(r#""a""#), Ok(Some("a".to_owned())));
        // Never through a float: the digits as written.
        assert_eq!(text("12.10"), Ok(Some("12.10".to_owned())));
        assert_eq!(
            text(r#"{"$numberDecimal": "0.30"}"#),
            Ok(Some("0.30".to_owned()))
        );
        assert_eq!(
            text(r#"{"$numberLong": "9007199254740993"}"#),
            Ok(Some("9007199254740993".to_owned()))
        );
        assert_eq!(
            text(r#"{"$oid": "65A1B2C3D4E5F60718293A4B"}"#),
            Ok(Some("65a1b2c3d4e5f60718293a4b".to_owned()))
        );
        assert_eq!(
            text(r#"{"$date": "2024-01-02T03:04:05.5+01:00"}"#),
            Ok(Some("2024-01-02T03:04:05.5+01:00".to_owned()))
        );
        assert_eq!(
            text(r#"{"$date": {"$numberLong": "1704164645000"}}"#),
            Ok(Some("2024-01-02T03:04:05Z".to_owned()))
        );
        assert_eq!(text("null"), Ok(None));
        assert!(text(r#"{"$oid": "xyz"}"#).is_err());
        // A $date in a $date, however deep, is refused without recursing.
        let deep = format!("{}1{}", r#"{"$date":"#.repeat(20_000), "}".repeat(20_000));
        assert!(text(&deep).is_err());
        assert!(text(r#"{"$numberDouble": "1.5"}"#).is_err());
        assert!(text(r#"{"a": 1, "b": 2}"#).is_err());
        assert!(text("[1]").is_err());
    }
}
