//! Reading legacy files as rows of text fields, whatever their format:
//! PostgreSQL `COPY ... WITH (FORMAT csv, HEADER)` output and `mongoexport`
//! JSON Lines (canonical or relaxed Extended JSON). Every value arrives as
//! the text it was written with (a Decimal128 or a JSON number as its
//! digits, never through a float), and the rules of [`super::fields`] parse
//! it as the services do.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The longest line (or CSV record) read, in bytes: a row is a handful of
/// short fields, and one unbounded line must not exhaust memory.
pub const MAX_ROW_BYTES: usize = 1 << 20;

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
    reader: csv::Reader<File>,
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
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(file);
        let header: Vec<String> = reader
            .headers()
            .with_context(|| format!("reading the header of {}", path.display()))?
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        let mut positions = Vec::new();
        for column in columns {
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
        })
    }
}

impl Rows for CsvRows {
    fn next_row(&mut self) -> Option<anyhow::Result<Result<Row, (u64, String)>>> {
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
    lines: std::io::Lines<BufReader<File>>,
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
            lines: BufReader::new(file).lines(),
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
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => {
                    return Some(Err(anyhow::Error::new(e).context(format!(
                        "reading {} line {}",
                        self.path.display(),
                        self.line + 1
                    ))));
                }
            };
            self.line += 1;
            if line.trim().is_empty() {
                continue;
            }
            let number = self.line;
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
/// (`{"$numberLong": "<millis>"}`) or a bare millisecond count.
fn date_text(inner: &RawValue) -> Result<String, String> {
    let millis = match extended_json_text(inner)? {
        Some(text) if text.contains(['T', 't', ' ']) => {
            return OffsetDateTime::parse(&text, &Rfc3339)
                .map_err(|_| format!("`{text}` is not an RFC 3339 date"))
                .and_then(|t| t.format(&Rfc3339).map_err(|e| e.to_string()));
        }
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| format!("`{text}` is not a date"))?,
        None => return Err("a null $date".to_owned()),
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
        assert!(text(r#"{"$numberDouble": "1.5"}"#).is_err());
        assert!(text(r#"{"a": 1, "b": 2}"#).is_err());
        assert!(text("[1]").is_err());
    }
}
