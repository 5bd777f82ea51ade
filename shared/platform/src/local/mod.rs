//! Local adapters: every port over one SQLite file and a directory of blobs
//! (and a directory of sent mail).
//!
//! `constellation serve` runs all services in one process, but `cargo lambda
//! watch` runs one process per function over the same data directory, so
//! correctness never rests on in-process locks alone: every write commits in
//! a `BEGIN IMMEDIATE` transaction (SQLite's write lock, shared across
//! processes) and a busy timeout absorbs the wait for another process.
//!
//! Within a process, all writes go through one writer thread that commits
//! them in batches ([`writer`]: group commit, one fsync for many requests,
//! `synchronous = FULL`). Reads use their own connections: the database runs
//! in WAL mode, so a reader never waits for the writer. A point read is a few
//! microseconds of SQLite work and runs on the caller's thread; reads that
//! can return many rows run on tokio's blocking pool, except the pages of a
//! table that owns its thread ([`SqliteTable::reading_pages_here`]: the
//! outbox relay's) and every table of a function process, which handles one
//! invocation at a time ([`LocalBackend::reading_pages_here`]). The writer's
//! connection and thread start with the first write, so a process that only
//! reads opens one connection.

mod blob;
mod bus;
pub mod mail;
mod outbox;
mod queue;
mod secrets;
mod table;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, TryLockError};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use writer::Writer;

pub use blob::{FileBlobStore, SigningKeySource};
pub use bus::SqliteBus;
pub use mail::FileMailer;
pub use outbox::SqliteOutbox;
pub use queue::{SqliteQueue, SqliteReceiver};
pub use secrets::SqliteSecrets;
pub use table::SqliteTable;
pub use writer::WriterStats;

use crate::blob::BlobError;
use crate::clock::Clock;
use crate::events::EventsError;
use crate::queue::{QueueError, QueueSpec};
use crate::secrets::SecretsError;
use crate::table::StoreError;

/// How many read connections one [`LocalBackend`] opens at most, each when
/// concurrent reads first need it (the writer has its own).
const POOL_SIZE: usize = 4;
/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`LocalBackend::checkpoint`] waits for other processes.
pub const CHECKPOINT_WAIT: Duration = Duration::from_millis(500);

/// The version of [`SCHEMA`] (SQLite's `user_version`); bump it with every
/// change to the schema.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    gsi1pk TEXT,
    gsi1sk TEXT,
    gsi2pk TEXT,
    gsi2sk TEXT,
    version INTEGER NOT NULL,
    expires_at INTEGER,
    attrs TEXT NOT NULL,
    bytes BLOB,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (tbl, gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
CREATE INDEX IF NOT EXISTS items_gsi2 ON items (tbl, gsi2pk, gsi2sk, pk, sk) WHERE gsi2pk IS NOT NULL;

CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT
);
CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, seq);
CREATE INDEX IF NOT EXISTS messages_receipt ON messages (receipt) WHERE receipt IS NOT NULL;

CREATE TABLE IF NOT EXISTS blobs (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    length INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS bucket_notifications (
    bucket TEXT NOT NULL,
    prefix TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (bucket, prefix, queue)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS event_routes (
    bus TEXT NOT NULL,
    event_type TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (bus, event_type, queue)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Every local adapter over one data directory. Cheap to clone; clones share
/// the read connections and the writer.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    inner: Arc<Inner>,
    /// Its tables read query and scan pages on the caller's thread (see
    /// [`LocalBackend::reading_pages_here`]).
    pages_here: bool,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// The database, once opened (see [`LocalBackend::open_on_first_use`]).
    db: OnceLock<Db>,
    /// Held while the database is being opened, so it is opened once.
    opening: Mutex<()>,
}

/// The open database: read connections opened as reads need them (one per
/// concurrent read, at most [`POOL_SIZE`]), and the writer, started by the
/// first write.
#[derive(Debug)]
struct Db {
    path: PathBuf,
    readers: Vec<Mutex<Option<Connection>>>,
    next: AtomicUsize,
    writer: OnceLock<Writer>,
    /// Held while the writer is being started, so it is started once.
    starting: Mutex<()>,
}

impl LocalBackend {
    /// Opens (creating if needed) the data directory and its
    /// `constellation.db`, and brings the schema up to date.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let backend = Self::open_on_first_use(data_dir, clock)?;
        backend.inner.db(First::Read)?;
        Ok(backend)
    }

    /// Like [`LocalBackend::open`], but the database is opened (and its
    /// schema checked) by the first operation that needs it, not now: what a
    /// function under `cargo lambda watch` does, so that its cold start and a
    /// health check open no SQLite connection. An operation that cannot open
    /// it fails as a backend error, and the next one tries again.
    pub fn open_on_first_use(data_dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let fresh = !data_dir.exists();
        std::fs::create_dir_all(data_dir.join("blobs"))
            .with_context(|| format!("create data directory {}", data_dir.display()))?;
        if fresh {
            // The database holds generated keys (cursor and blob-URL signing):
            // a new data directory is readable by its owner only.
            restrict_to_owner(data_dir)?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                clock,
                db: OnceLock::new(),
                opening: Mutex::new(()),
            }),
            pages_here: false,
        })
    }

    /// This backend with every table's query pages read on the caller's
    /// thread ([`SqliteTable::reading_pages_here`]): for a function process,
    /// which handles one invocation at a time, so no other request waits
    /// for its async threads, and whose first hop to tokio's blocking pool
    /// would start a thread on its cold start.
    pub fn reading_pages_here(mut self) -> Self {
        self.pages_here = true;
        self
    }

    /// Copies the write-ahead log into the database and empties it
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), if the database is open: for a
    /// process that is done writing, such as `serve` at shutdown. The next
    /// process to open the database then has no log to read back (a function
    /// that finds no other process on the database rebuilds the log's index
    /// from every frame in it, at every start). Waits at most
    /// [`CHECKPOINT_WAIT`] for another process's reads or write; `Ok(false)`
    /// when one kept the log from being emptied (it is emptied later).
    pub async fn checkpoint(&self) -> anyhow::Result<bool> {
        if self.inner.db.get().is_none() {
            return Ok(true);
        }
        let path = self.inner.data_dir.join("constellation.db");
        tokio::task::spawn_blocking(move || {
            let conn = connect(&path)?;
            conn.busy_timeout(CHECKPOINT_WAIT)
                .context("set the checkpoint's busy timeout")?;
            // (busy, frames in the log, frames checkpointed)
            let (busy, _, _): (i64, i64, i64) = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .context("checkpoint the write-ahead log")?;
            Ok(busy == 0)
        })
        .await
        .context("the checkpoint's thread")?
    }

    /// A logical table; many share one SQLite table. `cursor_key` signs its query cursors.
    pub fn table(&self, name: &str, cursor_key: [u8; 32]) -> SqliteTable {
        SqliteTable::new(self.clone(), name, cursor_key)
    }

    /// A bucket stored under `<data_dir>/blobs/<bucket>/`, whose presigned
    /// URLs point at `base_url` (where [`Self::blob_router`] is served) and
    /// are signed with `signing_key`.
    pub fn blob_store(&self, bucket: &str, base_url: &str, signing_key: [u8; 32]) -> FileBlobStore {
        FileBlobStore::new(self.clone(), bucket, base_url, signing_key)
    }

    /// Like [`Self::blob_store`], with the signing key read by `source` when
    /// the store first presigns a URL, not now: reading and writing objects
    /// need no key, and a function's cold start reads no secret.
    pub fn blob_store_on_first_use(
        &self,
        bucket: &str,
        base_url: &str,
        source: SigningKeySource,
    ) -> FileBlobStore {
        FileBlobStore::on_first_use(self.clone(), bucket, base_url, source)
    }

    /// The sending side of queue `name`.
    pub fn queue(&self, name: &str) -> SqliteQueue {
        SqliteQueue::new(self.clone(), name)
    }

    /// The consuming side of the queue `spec` describes.
    pub fn receiver(&self, spec: &QueueSpec) -> SqliteReceiver {
        SqliteReceiver::new(self.clone(), spec.clone())
    }

    /// The event bus `name`, routing by the routes stored for it (see
    /// [`LocalBackend::set_routes`]).
    pub fn event_bus(&self, name: &str) -> SqliteBus {
        SqliteBus::new(self.clone(), name)
    }

    /// Writes to table `table` committed with their events from bus `bus`
    /// in one transaction.
    pub fn outbox(&self, table: &str, bus: &str) -> SqliteOutbox {
        SqliteOutbox::new(self.clone(), table, bus)
    }

    /// Named secrets.
    pub fn secrets(&self) -> SqliteSecrets {
        SqliteSecrets::new(self.clone())
    }

    /// Where [`LocalBackend::mailer`] delivers: `<data_dir>/mail`.
    pub fn mail_dir(&self) -> PathBuf {
        self.inner.data_dir.join(mail::MAIL_DIR)
    }

    /// A mailer writing each message to [`LocalBackend::mail_dir`]; read
    /// them with [`mail::list`] and [`mail::read`].
    pub fn mailer(&self) -> FileMailer {
        FileMailer::new(self.mail_dir(), self.inner.clock.clone())
    }

    /// Serves the presigned blob URLs of every bucket signed with `signing_key`
    /// (`PUT` and `GET` on `/_local/blobs/{bucket}/{*key}`).
    pub fn blob_router(&self, signing_key: [u8; 32]) -> axum::Router {
        blob::router(self.clone(), signing_key)
    }

    /// The clock that table TTLs read.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    fn now(&self) -> time::OffsetDateTime {
        self.inner.clock.now()
    }

    fn blob_dir(&self) -> PathBuf {
        self.inner.data_dir.join("blobs")
    }

    /// Runs the read `f` on a read connection on the blocking pool (for reads
    /// that may return many rows), mapping SQLite and I/O failures to the
    /// port's error type with `op` as context.
    async fn read<T, E, F>(&self, op: &'static str, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: PortError,
        F: FnOnce(&Connection) -> Result<T, Fail<E>> + Send + 'static,
    {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || {
            inner.db(First::Read).map_err(Fail::Other)?.read(f)
        })
        .await
        {
            Ok(result) => result.map_err(|fail| fail.into_port(op)),
            Err(join) => Err(E::backend(anyhow::Error::new(join).context(op))),
        }
    }

    /// Runs the small read `f` (one row by key) here, on the caller's
    /// thread: in WAL mode it never waits for a writer, and it costs less
    /// than a hop to the blocking pool. (The first read of a backend opened
    /// on first use also opens the database here, once: a few milliseconds
    /// of a `cargo lambda watch` process's first request.)
    fn read_now<T, E, F>(&self, op: &'static str, f: F) -> Result<T, E>
    where
        E: PortError,
        F: FnOnce(&Connection) -> Result<T, Fail<E>>,
    {
        self.inner
            .db(First::Read)
            .map_err(Fail::Other)
            .and_then(|db| db.read(f))
            .map_err(|fail| fail.into_port(op))
    }

    /// Queues the write `f` for the writer and waits until it has committed
    /// (see [`writer`]); `f` runs inside the batch's transaction and its
    /// effects are rolled back alone if it fails.
    async fn write<T, E, F>(&self, op: &'static str, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: PortError,
        F: FnOnce(&Connection) -> Result<T, Fail<E>> + Send + 'static,
    {
        let started = self.inner.db.get().and_then(|db| db.writer.get()).is_some();
        if !started {
            // The first write opens the database if it is not open yet (file
            // I/O, perhaps the schema's transaction) and starts the writer
            // (its connection), off the async threads.
            let inner = self.inner.clone();
            match tokio::task::spawn_blocking(move || inner.db(First::Write)?.writer().map(|_| ()))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Fail::<E>::Other(e).into_port(op)),
                Err(join) => return Err(E::backend(anyhow::Error::new(join).context(op))),
            }
        }
        let writer = self
            .inner
            .db(First::Write)
            .and_then(Db::writer)
            .map_err(|e| Fail::<E>::Other(e).into_port(op))?;
        writer.write(f).await.map_err(|fail| fail.into_port(op))
    }

    /// What the writer has done since this backend was opened (nothing
    /// while the database is not open yet).
    pub fn writer_stats(&self) -> WriterStats {
        self.inner
            .db
            .get()
            .and_then(|db| db.writer.get())
            .map(Writer::stats)
            .unwrap_or_default()
    }
}

impl Inner {
    /// The database, opened now if it is not yet (by one caller at a time)
    /// for what `first` does.
    fn db(&self, first: First) -> anyhow::Result<&Db> {
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        let _opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = self.db.get() {
            return Ok(db);
        }
        let db = Db::open(&self.data_dir.join("constellation.db"), first)?;
        Ok(self.db.get_or_init(|| db))
    }
}

/// What the operation that opens the database does: its connection is
/// kept for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum First {
    Read,
    Write,
}

impl Db {
    /// Opens `path` and brings its schema up to date. The connection that
    /// checked the schema is kept: for the writer if `first` writes or the
    /// schema was just written, else as the first reader, and the writer
    /// (its own connection and thread) starts with the first write. So a
    /// process that only reads, such as a function answering a GET, opens
    /// one connection and starts no thread, and one that writes first opens
    /// no reader it does not need.
    fn open(path: &Path, first: First) -> anyhow::Result<Self> {
        let mut conn = connect(path)?;
        // A database already at this schema needs no write (and no fsync)
        // to open: that is most of a local Lambda's cold start.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .context("read the schema version")?;
        // A newer build's database is not rewritten to this one's schema.
        anyhow::ensure!(
            version <= SCHEMA_VERSION,
            "{} has schema version {version}, newer than this build's {SCHEMA_VERSION}: run a newer constellation",
            path.display()
        );
        if version != SCHEMA_VERSION {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .context("lock the database to create the schema")?;
            tx.execute_batch(SCHEMA).context("create the schema")?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .context("record the schema version")?;
            tx.commit().context("commit the schema")?;
        }
        let db = Self {
            path: path.to_owned(),
            readers: (0..POOL_SIZE).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            writer: OnceLock::new(),
            starting: Mutex::new(()),
        };
        if version == SCHEMA_VERSION && first == First::Read {
            make_read_only(&conn)?;
            *db.readers[0].lock().unwrap_or_else(PoisonError::into_inner) = Some(conn);
        } else {
            let writer = Writer::start(conn, path).context("start the SQLite writer")?;
            let _ = db.writer.set(writer);
        }
        Ok(db)
    }

    /// The writer, started now (its own connection) if it is not yet.
    fn writer(&self) -> anyhow::Result<&Writer> {
        if let Some(writer) = self.writer.get() {
            return Ok(writer);
        }
        let _starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = self.writer.get() {
            return Ok(writer);
        }
        let writer =
            Writer::start(connect(&self.path)?, &self.path).context("start the SQLite writer")?;
        Ok(self.writer.get_or_init(|| writer))
    }

    /// Runs `f` on a read connection: a free one if there is one (opening
    /// it if it is not yet), else the next in turn once it is free.
    fn read<T, E>(&self, f: impl FnOnce(&Connection) -> Result<T, Fail<E>>) -> Result<T, Fail<E>> {
        let mut slot = self
            .readers
            .iter()
            .find_map(|slot| match slot.try_lock() {
                Ok(guard) => Some(guard),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            })
            .unwrap_or_else(|| {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
                self.readers[i]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            });
        let conn = match &mut *slot {
            Some(conn) => conn,
            empty => empty.insert(read_connection(&self.path).map_err(Fail::Other)?),
        };
        f(conn)
    }
}

/// A read-only connection to `db`.
fn read_connection(db: &Path) -> anyhow::Result<Connection> {
    let conn = connect(db)?;
    make_read_only(&conn)?;
    Ok(conn)
}

fn make_read_only(conn: &Connection) -> anyhow::Result<()> {
    conn.execute_batch("PRAGMA query_only = ON")
        .context("make a read connection read-only")
}

#[cfg(unix)]
fn restrict_to_owner(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restrict {} to its owner", dir.display()))
}

#[cfg(not(unix))]
fn restrict_to_owner(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

fn connect(db: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(db).with_context(|| format!("open {}", db.display()))?;
    // The query planner stability guarantee: a statement keeps its plan
    // whatever its parameters. Without it SQLite plans with a bound LIMIT's
    // value and so prepares the statement again every time the limit is
    // bound (every page, each of a relay's 8 shard reads, every queue
    // poll). The plans do not depend on values here: no ANALYZE statistics.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .context("turn on the query planner stability guarantee")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("set busy timeout")?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .context("switch to WAL")?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "journal mode is {mode}, not WAL"
    );
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .context("set pragmas")?;
    Ok(conn)
}

/// Why a blocking local operation failed, before it is mapped to a port error.
enum Fail<E> {
    /// A port-level outcome decided by the operation itself.
    Port(E),
    /// SQLite failed; busy and locked become `Unavailable`.
    Sql(rusqlite::Error),
    /// Anything else (file I/O, corrupt stored JSON).
    Other(anyhow::Error),
}

impl<E> From<rusqlite::Error> for Fail<E> {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl<E> From<std::io::Error> for Fail<E> {
    fn from(e: std::io::Error) -> Self {
        Self::Other(e.into())
    }
}

impl<E> From<serde_json::Error> for Fail<E> {
    fn from(e: serde_json::Error) -> Self {
        Self::Other(e.into())
    }
}

impl<E: PortError> Fail<E> {
    fn into_port(self, op: &'static str) -> E {
        match self {
            Self::Port(e) => e,
            Self::Sql(e) => {
                let busy = matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                );
                let e = anyhow::Error::new(e).context(op);
                if busy {
                    E::unavailable(e)
                } else {
                    E::backend(e)
                }
            }
            Self::Other(e) => E::backend(e.context(op)),
        }
    }
}

/// The two infrastructure variants every port's error enum has.
trait PortError: Send + 'static {
    fn unavailable(e: anyhow::Error) -> Self;
    fn backend(e: anyhow::Error) -> Self;
}

macro_rules! port_error {
    ($($ty:ty),*) => {$(
        impl PortError for $ty {
            fn unavailable(e: anyhow::Error) -> Self {
                Self::Unavailable(e)
            }
            fn backend(e: anyhow::Error) -> Self {
                Self::Backend(e)
            }
        }
    )*};
}

port_error!(StoreError, BlobError, QueueError, SecretsError, EventsError);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::table::{Condition, Item, ItemKey, Table as _};

    /// The schema is created once and recorded; a later open of the same
    /// directory finds it (and its data) without writing it again.
    #[tokio::test]
    async fn the_schema_is_recorded_and_reopening_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let key = ItemKey::new("p", "s");
        first
            .table("t", [1; 32])
            .put(&Item::new(key.clone()), Condition::NotExists)
            .await
            .unwrap();
        drop(first);
        let conn = Connection::open(dir.path().join("constellation.db")).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(conn);
        let again = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        assert!(again.table("t", [1; 32]).get(&key).await.unwrap().is_some());
    }

    /// Opened on first use, the database is not touched until an operation
    /// needs it; concurrent first operations all succeed, on one database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_database_opened_on_first_use_serves_racing_first_callers() {
        use crate::secrets::{SecretValue, Secrets as _};
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open_on_first_use(dir.path(), Arc::new(SystemClock)).unwrap();
        assert!(!dir.path().join("constellation.db").exists());
        assert_eq!(backend.writer_stats(), WriterStats::default());

        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let backend = backend.clone();
                tokio::spawn(async move {
                    let secrets = backend.secrets();
                    if i % 2 == 0 {
                        secrets
                            .put(&format!("s{i}"), &SecretValue::new(format!("v{i}")))
                            .await
                            .map(|()| None)
                    } else {
                        secrets.get("absent").await.map(|v| v.map(|_| ()))
                    }
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), None);
        }
        assert!(dir.path().join("constellation.db").exists());
        let secrets = backend.secrets();
        for i in (0..16).step_by(2) {
            let value = secrets.get(&format!("s{i}")).await.unwrap().unwrap();
            assert_eq!(value.expose(), format!("v{i}"));
        }
        assert_eq!(backend.writer_stats().writes, 8);
    }

    /// On a database already at the schema, reads open one connection and
    /// start no writer; the first writes (racing) start one, and every
    /// write goes through it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_writer_starts_with_the_first_write() {
        use crate::secrets::{SecretValue, Secrets as _};
        let dir = tempfile::tempdir().unwrap();
        let first = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        first
            .secrets()
            .put("old", &SecretValue::new("v"))
            .await
            .unwrap();
        drop(first);

        let backend = LocalBackend::open_on_first_use(dir.path(), Arc::new(SystemClock)).unwrap();
        let secrets = backend.secrets();
        assert_eq!(secrets.get("old").await.unwrap().unwrap().expose(), "v");
        let db = backend.inner.db.get().unwrap();
        assert!(db.writer.get().is_none(), "a read started the writer");
        let opened = db
            .readers
            .iter()
            .filter(|r| r.lock().unwrap().is_some())
            .count();
        assert_eq!(opened, 1, "the schema check's connection is the reader");
        let read_only: i64 = db.readers[0]
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .query_row("PRAGMA query_only", [], |row| row.get(0))
            .unwrap();
        assert_eq!(read_only, 1, "the kept reader is read-only");

        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let secrets = backend.secrets();
                tokio::spawn(async move {
                    secrets
                        .put(&format!("s{i}"), &SecretValue::new(format!("v{i}")))
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(backend.writer_stats().writes, 16);
        for i in 0..16 {
            let value = secrets.get(&format!("s{i}")).await.unwrap().unwrap();
            assert_eq!(value.expose(), format!("v{i}"));
        }

        // A process whose first operation writes keeps the schema check's
        // connection for the writer and opens no reader for it.
        let writing = LocalBackend::open_on_first_use(dir.path(), Arc::new(SystemClock)).unwrap();
        writing
            .secrets()
            .put("new", &SecretValue::new("w"))
            .await
            .unwrap();
        let db = writing.inner.db.get().unwrap();
        assert!(db.writer.get().is_some());
        assert!(db.readers.iter().all(|r| r.lock().unwrap().is_none()));
        assert_eq!(
            writing
                .secrets()
                .get("new")
                .await
                .unwrap()
                .unwrap()
                .expose(),
            "w"
        );
    }

    /// A database a newer build has written is refused, not rewritten to
    /// this build's schema, by reads and writes alike.
    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        use crate::secrets::{SecretValue, Secrets as _};
        let dir = tempfile::tempdir().unwrap();
        drop(LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap());
        let conn = Connection::open(dir.path().join("constellation.db")).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let error = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap_err();
        assert!(format!("{error:#}").contains("newer"), "{error:#}");
        let backend = LocalBackend::open_on_first_use(dir.path(), Arc::new(SystemClock)).unwrap();
        assert!(backend.secrets().get("k").await.is_err());
        assert!(
            backend
                .secrets()
                .put("k", &SecretValue::new("v"))
                .await
                .is_err()
        );
        let conn = Connection::open(dir.path().join("constellation.db")).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION + 1);
    }

    /// A database that cannot be opened fails the operation (not the
    /// process), and the next operation tries again.
    #[tokio::test]
    async fn a_failed_first_open_is_an_error_and_is_tried_again() {
        use crate::secrets::{SecretValue, Secrets as _};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("constellation.db");
        std::fs::create_dir(&db).unwrap();
        let backend = LocalBackend::open_on_first_use(dir.path(), Arc::new(SystemClock)).unwrap();
        let secrets = backend.secrets();
        assert!(secrets.put("k", &SecretValue::new("v")).await.is_err());
        assert!(secrets.get("k").await.is_err());
        std::fs::remove_dir(&db).unwrap();
        secrets.put("k", &SecretValue::new("v")).await.unwrap();
        assert_eq!(secrets.get("k").await.unwrap().unwrap().expose(), "v");
    }
}
