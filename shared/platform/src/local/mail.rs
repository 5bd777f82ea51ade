//! The Mailer port over a directory: every message is written, as the bytes
//! SES would have been handed ([`render`]), to `<data_dir>/mail/<id>.eml`,
//! where a developer reads it (`constellation mail list|show`, or any mail
//! client).
//!
//! Ids are `<unix millis, 13 digits>-<16 hex digits>` ([`new_message_id`]),
//! so sorting the file names sorts the mailbox oldest first. A message is
//! written to a hidden temporary file, flushed to disk and renamed into
//! place, so a reader sees it whole or not at all.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::mail::{MailError, Mailer, OutgoingMail, decode_header, header, new_message_id, render};

/// The directory of the data directory that local mail goes to.
pub const MAIL_DIR: &str = "mail";

/// The extension of a stored message.
const EXTENSION: &str = "eml";

/// A [`Mailer`] that delivers into a directory.
#[derive(Debug, Clone)]
pub struct FileMailer {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
}

impl FileMailer {
    /// A mailer writing into `dir` (created on the first send), dating
    /// messages by `clock`.
    pub fn new(dir: PathBuf, clock: Arc<dyn Clock>) -> Self {
        Self { dir, clock }
    }

    /// The directory messages go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait]
impl Mailer for FileMailer {
    #[tracing::instrument(skip(self, mail), fields(dir = %self.dir.display()))]
    async fn send(&self, mail: &OutgoingMail) -> Result<String, MailError> {
        let now = self.clock.now();
        let id = new_message_id(now);
        let message = render(mail, &id, now)?;
        let dir = self.dir.clone();
        let name = id.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &message))
            .await
            .map_err(|e| MailError::Backend(anyhow::Error::new(e).context("writing mail")))?
            .map_err(MailError::Backend)?;
        tracing::info!(id = %id, "mail written to the local mailbox");
        Ok(id)
    }
}

/// Writes `<dir>/<id>.eml` through a temporary file, renamed into place
/// once its bytes are on disk.
fn write_atomically(dir: &Path, id: &str, message: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("{id}.{EXTENSION}"));
    let tmp = dir.join(format!(".{id}.{EXTENSION}.tmp"));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(message)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::new(e).context(format!("write {}", path.display())));
    }
    sync_dir(dir);
    Ok(())
}

/// Makes the rename durable; a failure only risks losing a development
/// mailbox entry on a crash, so it is not reported.
#[cfg(unix)]
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) {}

/// One stored message, as `constellation mail list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSummary {
    /// Its id (the file name without `.eml`).
    pub id: String,
    /// The `To` header, encoded-words decoded.
    pub to: String,
    /// The `Subject` header, encoded-words decoded.
    pub subject: String,
    /// The `Date` header, when it parses.
    pub date: Option<OffsetDateTime>,
}

/// Every message in `dir`, oldest first; an absent directory is an empty
/// mailbox. Files that are not messages (temporary files, anything not
/// named `<id>.eml`) are skipped.
pub fn list(dir: &Path) -> Result<Vec<MailSummary>, MailError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(MailError::Backend(
                anyhow::Error::new(e).context(format!("read {}", dir.display())),
            ));
        }
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| MailError::Backend(anyhow::Error::new(e).context("read mailbox")))?;
        let name = entry.file_name();
        if let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_suffix(&format!(".{EXTENSION}")))
            .filter(|id| validate_id(id).is_ok())
        {
            ids.push(id.to_owned());
        }
    }
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // A message removed since the listing is skipped.
        let Some(message) = read(dir, &id)? else {
            continue;
        };
        let decoded = |name| {
            header(&message, name)
                .map(|v| decode_header(&v))
                .unwrap_or_default()
        };
        let date = header(&message, "Date").and_then(|d| {
            OffsetDateTime::parse(&d, &time::format_description::well_known::Rfc2822).ok()
        });
        out.push(MailSummary {
            to: decoded("To"),
            subject: decoded("Subject"),
            date,
            id,
        });
    }
    Ok(out)
}

/// The raw bytes of message `id` in `dir`, `None` if there is none. An id
/// with a path separator, `..` or other characters ids never have is
/// refused as [`MailError::Invalid`].
pub fn read(dir: &Path, id: &str) -> Result<Option<Vec<u8>>, MailError> {
    validate_id(id)?;
    let path = dir.join(format!("{id}.{EXTENSION}"));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MailError::Backend(
            anyhow::Error::new(e).context(format!("read {}", path.display())),
        )),
    }
}

/// Ids are 1 to 128 ASCII letters, digits, `-` and `_`, not starting with
/// `-`: no separator, no dot, so never a path outside the directory.
fn validate_id(id: &str) -> Result<(), MailError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(MailError::Invalid(format!("bad message id {id:?}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_leave_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for id in [
            "../x",
            "..",
            "a/b",
            "a\\b",
            "/etc/passwd",
            ".hidden",
            "",
            "-rf",
            "a.eml",
        ] {
            assert!(
                matches!(read(dir.path(), id), Err(MailError::Invalid(_))),
                "{id:?}"
            );
        }
        assert!(read(dir.path(), "0001-ab").unwrap().is_none());
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }
}
