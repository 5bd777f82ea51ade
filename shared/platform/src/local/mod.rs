//! Local adapters: every port over one SQLite file and a directory of blobs.
//!
//! `constellation serve` runs all services in one process, but `cargo lambda
//! watch` runs one process per function over the same data directory, so
//! correctness never rests on in-process locks: every write is a
//! `BEGIN IMMEDIATE` transaction (SQLite's write lock, shared across
//! processes), the database runs in WAL mode so readers never wait, and a
//! busy timeout absorbs brief contention. SQLite calls block, so each runs on
//! tokio's blocking pool over a small set of mutex-guarded connections.

mod blob;
mod bus;
mod queue;
mod secrets;
mod table;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

pub use blob::FileBlobStore;
pub use bus::SqliteBus;
pub use queue::{SqliteQueue, SqliteReceiver};
pub use secrets::SqliteSecrets;
pub use table::SqliteTable;

use crate::blob::BlobError;
use crate::clock::Clock;
use crate::events::EventsError;
use crate::queue::{QueueError, QueueSpec};
use crate::secrets::SecretsError;
use crate::table::StoreError;

/// How many SQLite connections one [`LocalBackend`] keeps open.
const POOL_SIZE: usize = 4;
/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
/// the connection pool.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    pool: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl LocalBackend {
    /// Opens (creating if needed) the data directory and its
    /// `constellation.db`, and brings the schema up to date.
    pub fn open(data_dir: &Path, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let fresh = !data_dir.exists();
        std::fs::create_dir_all(data_dir.join("blobs"))
            .with_context(|| format!("create data directory {}", data_dir.display()))?;
        if fresh {
            // The database holds generated keys (cursor and blob-URL signing):
            // a new data directory is readable by its owner only.
            restrict_to_owner(data_dir)?;
        }
        let db = data_dir.join("constellation.db");
        let pool = (0..POOL_SIZE)
            .map(|_| connect(&db).map(Mutex::new))
            .collect::<anyhow::Result<_>>()?;
        let backend = Self {
            inner: Arc::new(Inner {
                data_dir: data_dir.to_owned(),
                clock,
                pool,
                next: AtomicUsize::new(0),
            }),
        };
        let mut conn = backend.inner.connection();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("lock the database to create the schema")?;
        tx.execute_batch(SCHEMA).context("create the schema")?;
        tx.commit().context("commit the schema")?;
        drop(conn);
        Ok(backend)
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

    /// Named secrets.
    pub fn secrets(&self) -> SqliteSecrets {
        SqliteSecrets::new(self.clone())
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

    /// Runs `f` on a pooled connection on the blocking pool, mapping SQLite
    /// and I/O failures to the port's error type with `op` as context.
    async fn run<T, E, F>(&self, op: &'static str, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: PortError,
        F: FnOnce(&mut Connection) -> Result<T, Fail<E>> + Send + 'static,
    {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&mut inner.connection())).await {
            Ok(result) => result.map_err(|fail| fail.into_port(op)),
            Err(join) => Err(E::backend(anyhow::Error::new(join).context(op))),
        }
    }
}

impl Inner {
    /// A free connection if there is one, else waits for one in turn.
    fn connection(&self) -> MutexGuard<'_, Connection> {
        for conn in &self.pool {
            match conn.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].lock().unwrap_or_else(PoisonError::into_inner)
    }
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

/// Runs `f` in a `BEGIN IMMEDIATE` transaction, committing only if it succeeds.
fn write_tx<T, E>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, Fail<E>>,
) -> Result<T, Fail<E>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
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
