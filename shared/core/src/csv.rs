//! RFC 4180 CSV output, hardened against formula injection, for exports
//! written one row at a time.
//!
//! Each row is written with [`write_row`]: cells separated by `,`, the row
//! ended by `\r\n`, and a cell quoted (`"`, with inner quotes doubled) when
//! its text needs it.
//!
//! # Formula injection
//!
//! Spreadsheets (Excel, LibreOffice Calc, Google Sheets) evaluate a cell
//! that starts with `=`, `+`, `-` or `@` as a formula, so a description such
//! as `=HYPERLINK("http://evil","click")` typed by one user would run in the
//! spreadsheet of whoever opens the export. Following the OWASP "CSV
//! Injection" guidance, a cell is prefixed with a single quote `'` (which
//! spreadsheets read as "this cell is text" and do not display) when:
//!
//! - its first character is one of [`FORMULA_TRIGGERS`]: `=` `+` `-` `@`,
//!   tab, carriage return, or NUL (listed by OWASP ASVS 5.0, V1.2.10); or
//! - it starts with whitespace ([`char::is_whitespace`]) and the first
//!   character that is not whitespace is `=`, `+`, `-` or `@`. Some
//!   importers trim leading spaces before deciding what a cell is, so
//!   `" =1+1"` is neutralised too; the price is an extra `'` on such
//!   unusual cells.
//!
//! The prefix is part of the cell: a program reading the export back sees
//! `'=1+1`, not `=1+1`. That is the accepted cost of the defence; values the
//! export writes itself (amounts, dates, ids) never start with these
//! characters, so only user text is affected.
//!
//! A cell is quoted when it contains `,`, `"`, `\r` or `\n` (RFC 4180), and
//! also `;`: Excel in many European locales splits CSV files on `;`, which
//! would otherwise let `a;=1+1` start a new cell with a formula in it.
//! Quoting is decided after the prefix is added.

/// The characters that make a spreadsheet treat a cell as a formula (or
/// that OWASP lists as dangerous) when they come first.
pub const FORMULA_TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r', '\0'];

/// The characters that start a formula once leading whitespace is trimmed.
const TRIMMED_TRIGGERS: &[char] = &['=', '+', '-', '@'];

/// Appends one CSV row to `out`: the `cells` separated by `,`, then `\r\n`.
///
/// Each cell is neutralised against formula injection and quoted when
/// needed (see the module documentation). An empty slice writes an empty
/// line; an empty cell is written as nothing.
pub fn write_row(out: &mut String, cells: &[&str]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_cell(out, cell);
    }
    out.push_str("\r\n");
}

/// Appends one neutralised, possibly quoted, cell to `out`.
fn write_cell(out: &mut String, cell: &str) {
    let prefix = if needs_prefix(cell) { "'" } else { "" };
    // The prefix is a quote mark, not one of the characters below, so the
    // decision can look at `cell` alone.
    let quote = cell.contains([',', ';', '"', '\r', '\n']);
    if quote {
        out.push('"');
        out.push_str(prefix);
        for c in cell.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(prefix);
        out.push_str(cell);
    }
}

/// Whether `cell` must be prefixed with `'` to be read as text.
fn needs_prefix(cell: &str) -> bool {
    if cell.starts_with(FORMULA_TRIGGERS) {
        return true;
    }
    let trimmed = cell.trim_start();
    trimmed.len() != cell.len() && trimmed.starts_with(TRIMMED_TRIGGERS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> String {
        let mut out = String::new();
        write_row(&mut out, cells);
        out
    }

    #[test]
    fn plain_cells_are_written_as_is() {
        assert_eq!(row(&["date", "amount", "note"]), "date,amount,note\r\n");
        assert_eq!(
            row(&["2024-05-01", "12.34", "EUR", "Lunch"]),
            "2024-05-01,12.34,EUR,Lunch\r\n"
        );
        assert_eq!(row(&["a b", "x'y", "it's"]), "a b,x'y,it's\r\n");
        assert_eq!(
            row(&["a=b", "1+1", "x-y", "me@example.com"]),
            "a=b,1+1,x-y,me@example.com\r\n"
        );
    }

    #[test]
    fn empty_cells_and_rows() {
        assert_eq!(row(&[]), "\r\n");
        assert_eq!(row(&[""]), "\r\n");
        assert_eq!(row(&["", ""]), ",\r\n");
        assert_eq!(row(&["a", "", "b"]), "a,,b\r\n");
    }

    #[test]
    fn special_characters_are_quoted() {
        assert_eq!(row(&["a,b"]), "\"a,b\"\r\n");
        assert_eq!(row(&["say \"hi\""]), "\"say \"\"hi\"\"\"\r\n");
        assert_eq!(row(&["\""]), "\"\"\"\"\r\n");
        assert_eq!(row(&["line1\nline2"]), "\"line1\nline2\"\r\n");
        assert_eq!(row(&["line1\r\nline2"]), "\"line1\r\nline2\"\r\n");
        assert_eq!(row(&["a;b"]), "\"a;b\"\r\n");
        assert_eq!(row(&["a;=1+1"]), "\"a;=1+1\"\r\n");
        assert_eq!(row(&["x", "a,b", "y"]), "x,\"a,b\",y\r\n");
    }

    #[test]
    fn each_formula_trigger_is_prefixed() {
        assert_eq!(row(&["=1+1"]), "'=1+1\r\n");
        assert_eq!(row(&["+1"]), "'+1\r\n");
        assert_eq!(row(&["-1"]), "'-1\r\n");
        assert_eq!(row(&["@SUM(A1)"]), "'@SUM(A1)\r\n");
        assert_eq!(row(&["\t=1"]), "'\t=1\r\n");
        assert_eq!(row(&["\tplain"]), "'\tplain\r\n");
        assert_eq!(row(&["\r=1"]), "\"'\r=1\"\r\n");
        assert_eq!(row(&["\0x"]), "'\0x\r\n");
        assert_eq!(row(&["="]), "'=\r\n");
        assert_eq!(row(&["-"]), "'-\r\n");
        for trigger in FORMULA_TRIGGERS {
            let cell = format!("{trigger}x");
            assert!(
                row(&[&cell]).trim_start_matches('"').starts_with('\''),
                "{cell:?}"
            );
        }
    }

    #[test]
    fn whitespace_before_a_trigger_is_prefixed_too() {
        assert_eq!(row(&[" =1+1"]), "' =1+1\r\n");
        assert_eq!(row(&["   -2"]), "'   -2\r\n");
        assert_eq!(row(&["\n=1"]), "\"'\n=1\"\r\n");
        assert_eq!(row(&["\u{a0}@x"]), "'\u{a0}@x\r\n");
        assert_eq!(row(&["\u{3000}+1"]), "'\u{3000}+1\r\n");
        // Whitespace before harmless text, or only whitespace, is left alone.
        assert_eq!(row(&[" hello"]), " hello\r\n");
        assert_eq!(row(&["  "]), "  \r\n");
        assert_eq!(row(&["\n"]), "\"\n\"\r\n");
    }

    #[test]
    fn formulas_are_prefixed_then_quoted() {
        assert_eq!(
            row(&["=HYPERLINK(\"http://x\",\"y\")"]),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\r\n"
        );
        assert_eq!(row(&["=cmd|' /C calc'!A0"]), "'=cmd|' /C calc'!A0\r\n");
        assert_eq!(row(&["-1,5"]), "\"'-1,5\"\r\n");
        assert_eq!(row(&["ok", "=1", "@x,y"]), "ok,'=1,\"'@x,y\"\r\n");
    }

    #[test]
    fn a_leading_quote_is_not_a_trigger() {
        assert_eq!(row(&["'=1"]), "'=1\r\n");
        assert_eq!(row(&["'"]), "'\r\n");
    }

    #[test]
    fn unicode_is_kept() {
        assert_eq!(
            row(&["café", "日本語", "١٢", "🙂"]),
            "café,日本語,١٢,🙂\r\n"
        );
        assert_eq!(row(&["naïve, \"quoted\""]), "\"naïve, \"\"quoted\"\"\"\r\n");
        // Full-width look-alikes are not formula triggers.
        assert_eq!(row(&["＝1+1"]), "＝1+1\r\n");
    }

    #[test]
    fn rows_append() {
        let mut out = String::from("h1,h2\r\n");
        write_row(&mut out, &["a", "b"]);
        write_row(&mut out, &["=c", "d"]);
        assert_eq!(out, "h1,h2\r\na,b\r\n'=c,d\r\n");
    }
}
