//! The one writer of a [`LocalBackend`](super::LocalBackend): a thread that
//! owns the write connection and applies queued writes in batches (group
//! commit).
//!
//! Each write is a closure over the connection. The thread takes every write
//! that is waiting (up to [`MAX_BATCH`]), opens one `BEGIN IMMEDIATE`
//! transaction, runs each write inside its own savepoint (a failed write is
//! rolled back alone and answered with its error), commits once, and only
//! then answers the writes that succeeded. So many concurrent requests share
//! one commit and one fsync (`synchronous = FULL` stays), a caller is never
//! told "done" before its write is durable, and no two writers of this
//! process race for SQLite's lock. `BEGIN IMMEDIATE` remains the lock between
//! processes sharing the data directory (`cargo lambda watch`), with the busy
//! timeout absorbing the wait.
//!
//! Because writes of one process are applied one after another, a write that
//! reads and then writes (an upsert, a conditional put) sees every write
//! acknowledged before it and cannot lose a race to one of this process.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::Fail;

/// The most writes one transaction takes.
pub(super) const MAX_BATCH: usize = 256;
/// Writes waiting for the writer beyond this make callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

/// A write as the writer thread sees it.
trait Job: Send {
    /// Runs the write inside the open transaction; true if it succeeded (its
    /// effects are kept).
    fn apply(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, commit: Result<(), &rusqlite::Error>);
}

struct Typed<T, E, F> {
    write: Option<F>,
    outcome: Option<Result<T, Fail<E>>>,
    reply: oneshot::Sender<Result<T, Fail<E>>>,
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send,
    E: Send,
    F: FnOnce(&Connection) -> Result<T, Fail<E>> + Send,
{
    fn apply(&mut self, conn: &Connection) -> bool {
        let Some(write) = self.write.take() else {
            return false;
        };
        let outcome = match catch_unwind(AssertUnwindSafe(|| write(conn))) {
            Ok(outcome) => outcome,
            Err(_) => Err(Fail::Other(anyhow::anyhow!("the write panicked"))),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &rusqlite::Error>) {
        let outcome = match (self.outcome, commit) {
            (Some(Ok(_)), Err(e)) => Err(copy_error(e)),
            (Some(outcome), _) => outcome,
            (None, Err(e)) => Err(copy_error(e)),
            (None, Ok(())) => Err(Fail::Other(anyhow::anyhow!("the write never ran"))),
        };
        // The caller may have gone away (its request was cancelled): the
        // write still happened, which is what a cancelled request may find.
        let _ = self.reply.send(outcome);
    }
}

/// The same failure for every write of a batch whose transaction failed.
fn copy_error<E>(e: &rusqlite::Error) -> Fail<E> {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            Fail::Sql(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => Fail::Other(anyhow::anyhow!("commit failed: {other}")),
    }
}

/// The sending side: cheap to share.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// Batch sizes, for tests and the benchmark's curiosity.
    stats: Arc<Mutex<WriterStats>>,
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (or attempted).
    pub batches: u64,
    /// Writes applied in them.
    pub writes: u64,
    /// The largest batch.
    pub largest_batch: usize,
}

impl Writer {
    /// Starts the writer thread over `conn`. The thread ends when the last
    /// [`Writer`] handle is dropped, after finishing what was queued.
    pub(super) fn start(conn: Connection, db: &Path) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        let stats = Arc::new(Mutex::new(WriterStats::default()));
        let thread_stats = stats.clone();
        std::thread::Builder::new()
            .name(format!(
                "sqlite-writer:{}",
                db.file_name().and_then(|n| n.to_str()).unwrap_or("db")
            ))
            .spawn(move || run(conn, rx, &thread_stats))?;
        Ok(Self { jobs, stats })
    }

    /// Queues `write` and waits until its batch has committed.
    pub(super) async fn write<T, E, F>(&self, write: F) -> Result<T, Fail<E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Fail<E>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Typed {
            write: Some(write),
            outcome: None,
            reply,
        });
        if self.jobs.send(job).await.is_err() {
            return Err(Fail::Other(anyhow::anyhow!(
                "the SQLite writer has stopped"
            )));
        }
        answer.await.unwrap_or_else(|_| {
            Err(Fail::Other(anyhow::anyhow!(
                "the SQLite writer has stopped"
            )))
        })
    }

    pub(super) fn stats(&self) -> WriterStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn run(conn: Connection, mut rx: mpsc::Receiver<Box<dyn Job>>, stats: &Mutex<WriterStats>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let commit = apply(&conn, &mut batch);
        {
            let mut s = stats.lock().unwrap_or_else(PoisonError::into_inner);
            s.batches += 1;
            s.writes += batch.len() as u64;
            s.largest_batch = s.largest_batch.max(batch.len());
        }
        for job in batch.drain(..) {
            job.finish(commit.as_ref().map(|_| ()));
        }
    }
}

/// Runs `batch` in one transaction; the commit's outcome.
fn apply(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        for job in batch.iter_mut() {
            conn.execute_batch("SAVEPOINT write")?;
            if job.apply(conn) {
                conn.execute_batch("RELEASE write")?;
            } else {
                conn.execute_batch("ROLLBACK TO write; RELEASE write")?;
            }
        }
        conn.execute_batch("COMMIT")
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use crate::clock::SystemClock;
    use crate::local::LocalBackend;
    use crate::table::{Condition, Item, ItemKey, StoreError, Table as _};

    /// Concurrent writes share transactions, and a write whose condition
    /// fails is answered with its error while the rest of its batch commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path(), Arc::new(SystemClock)).unwrap();
        let table = backend.table("t", [1; 32]);
        table
            .put(&Item::new(ItemKey::new("p", "taken")), Condition::None)
            .await
            .unwrap();
        let before = backend.writer_stats();
        let writes = (0..200).map(|i| {
            let table = table.clone();
            tokio::spawn(async move {
                // Every tenth write collides with the existing item.
                let sk = if i % 10 == 0 {
                    "taken".to_owned()
                } else {
                    format!("k{i}")
                };
                table
                    .put(&Item::new(ItemKey::new("p", sk)), Condition::NotExists)
                    .await
            })
        });
        let results = futures::future::join_all(writes).await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(StoreError::ConditionFailed { .. }))))
            .count();
        let ok = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
        assert_eq!((ok, refused), (180, 20));
        for i in (0..200).filter(|i| i % 10 != 0) {
            assert!(
                table
                    .get(&ItemKey::new("p", format!("k{i}")))
                    .await
                    .unwrap()
                    .is_some(),
                "k{i} missing"
            );
        }
        let after = backend.writer_stats();
        assert_eq!(after.writes - before.writes, 200);
        assert!(
            after.batches - before.batches < 200 && after.largest_batch > 1,
            "no write shared a commit: {before:?} -> {after:?}"
        );
    }
}
