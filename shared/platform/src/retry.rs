//! One retry loop for optimistic writes that lose a race.
//!
//! Every read-check-write in the services (kv's conditional put, auth's
//! session rotation, invites, ...) can lose to a concurrent writer: its
//! version condition fails, or DynamoDB cancels the transaction with
//! `TransactionConflict` ([`StoreError::Conflict`]). The answer is always the
//! same: re-read and try again, a bounded number of times, with a short,
//! growing, jittered pause so racing writers spread out. [`retry_on_conflict`]
//! is that loop; the caller says which of its errors are conflicts.
//!
//! Batch writes fail differently: the backend takes part of a batch and hands
//! the rest back (DynamoDB's `UnprocessedItems` under throttling). The answer
//! is to send that rest again after a growing, jittered pause, a bounded
//! number of times: [`resend_unprocessed`].

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

use crate::table::StoreError;

/// How many times an attempt runs before its last conflict is returned.
pub const MAX_ATTEMPTS: usize = 8;

/// Runs `attempt` until it succeeds, fails with an error `is_conflict` does
/// not accept, or has run [`MAX_ATTEMPTS`] times (then the last conflict is
/// returned, for the caller to map to "too much contention").
pub async fn retry_on_conflict<T, E, Fut>(
    mut attempt: impl FnMut() -> Fut,
    is_conflict: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut n = 0;
    loop {
        match attempt().await {
            Err(e) if is_conflict(&e) && n + 1 < MAX_ATTEMPTS => {
                n += 1;
                tokio::time::sleep(backoff(n)).await;
            }
            other => return other,
        }
    }
}

/// The pause before retry `n` (1-based): 5 ms doubling up to 160 ms, plus up
/// to as much again at random.
pub fn backoff(n: usize) -> Duration {
    let base = 5_u64 << n.min(5);
    Duration::from_millis(base + rand::rng().random_range(0..base))
}

/// How [`resend_unprocessed`] paces its sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The most sends, the first included.
    pub attempts: usize,
    /// The pause before the first re-send, before jitter.
    pub base: Duration,
    /// The longest pause before jitter.
    pub cap: Duration,
}

impl Backoff {
    /// The pause before re-send `n` (1-based): `base` doubling up to `cap`,
    /// plus up to as much again at random.
    pub fn pause(&self, n: usize) -> Duration {
        let shift = u32::try_from(n.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        let step = self.base.saturating_mul(1 << shift).min(self.cap);
        step + step.mul_f64(rand::rng().random_range(0.0..1.0))
    }
}

/// Sends `batch` with `send`, which answers the part the backend left
/// unprocessed (empty when it took everything), and sends that part again
/// after [`Backoff::pause`] until nothing is left, `send` fails (its error is
/// returned at once: a whole request refused is the caller's to judge), or
/// `policy.attempts` sends have left something; then `gave_up` turns what is
/// left into the error. An empty batch is never sent.
pub async fn resend_unprocessed<T, E, Fut>(
    batch: Vec<T>,
    policy: Backoff,
    mut send: impl FnMut(Vec<T>) -> Fut,
    gave_up: impl FnOnce(Vec<T>) -> E,
) -> Result<(), E>
where
    Fut: Future<Output = Result<Vec<T>, E>>,
{
    let mut pending = batch;
    let mut sent = 0;
    while !pending.is_empty() {
        if sent == policy.attempts {
            return Err(gave_up(pending));
        }
        if sent > 0 {
            tokio::time::sleep(policy.pause(sent)).await;
        }
        pending = send(pending).await?;
        sent += 1;
    }
    Ok(())
}

/// Whether a table error is a lost race: a concurrent transaction
/// ([`StoreError::Conflict`]) or a failed condition on the write at `index`
/// of a transaction (or of a single write, `None`), which for an optimistic
/// write means the item changed since it was read.
pub fn is_lost_race(e: &StoreError, index: usize) -> bool {
    match e {
        StoreError::Conflict(_) => true,
        StoreError::ConditionFailed { index: i } => i.is_none_or(|i| i == index),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn retries_conflicts_until_success_and_stops_at_other_errors() {
        let runs = AtomicUsize::new(0);
        let r: Result<usize, &str> = retry_on_conflict(
            || async {
                match runs.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err("conflict"),
                    n => Ok(n),
                }
            },
            |e| *e == "conflict",
        )
        .await;
        assert_eq!(r, Ok(2));

        let runs = AtomicUsize::new(0);
        let r: Result<(), &str> = retry_on_conflict(
            || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err("precondition")
            },
            |e| *e == "conflict",
        )
        .await;
        assert_eq!((r, runs.load(Ordering::SeqCst)), (Err("precondition"), 1));
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_conflict() {
        let runs = AtomicUsize::new(0);
        let r: Result<(), &str> = retry_on_conflict(
            || async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err("conflict")
            },
            |e| *e == "conflict",
        )
        .await;
        assert_eq!(
            (r, runs.load(Ordering::SeqCst)),
            (Err("conflict"), MAX_ATTEMPTS)
        );
    }

    const FX_FAST: Backoff = Backoff {
        attempts: 5,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
    };

    #[tokio::test]
    async fn unprocessed_items_are_resent_until_none_are_left() {
        let sends = std::sync::Mutex::new(Vec::new());
        let r: Result<(), String> = resend_unprocessed(
            vec![1, 2, 3, 4, 5],
            FX_FAST,
            |batch: Vec<i32>| {
                let n = {
                    let mut sends = sends.lock().unwrap();
                    sends.push(batch.clone());
                    sends.len()
                };
                async move {
                    // The backend leaves the last two unprocessed, twice.
                    Ok(if n <= 2 {
                        batch[batch.len() - 2..].to_vec()
                    } else {
                        Vec::new()
                    })
                }
            },
            |left| format!("{} left", left.len()),
        )
        .await;
        assert_eq!(r, Ok(()));
        assert_eq!(
            sends.into_inner().unwrap(),
            vec![vec![1, 2, 3, 4, 5], vec![4, 5], vec![4, 5]],
            "only the unprocessed part is sent again"
        );
    }

    #[tokio::test]
    async fn a_batch_that_never_drains_gives_up_after_the_bound() {
        let sends = AtomicUsize::new(0);
        let r: Result<(), StoreError> = resend_unprocessed(
            vec!["a", "b"],
            FX_FAST,
            |batch| {
                sends.fetch_add(1, Ordering::SeqCst);
                async move { Ok(batch[..1].to_vec()) }
            },
            |left| StoreError::Unavailable(anyhow::anyhow!("{} unprocessed", left.len())),
        )
        .await;
        assert!(
            matches!(&r, Err(StoreError::Unavailable(e)) if e.to_string() == "1 unprocessed"),
            "{r:?}"
        );
        assert_eq!(sends.load(Ordering::SeqCst), FX_FAST.attempts);
    }

    #[tokio::test]
    async fn an_empty_batch_is_not_sent_and_a_refused_send_ends_the_loop() {
        let sends = AtomicUsize::new(0);
        let r: Result<(), &str> = resend_unprocessed(
            Vec::<u8>::new(),
            FX_FAST,
            |_| {
                sends.fetch_add(1, Ordering::SeqCst);
                async { Ok(Vec::new()) }
            },
            |_| "gave up",
        )
        .await;
        assert_eq!((r, sends.load(Ordering::SeqCst)), (Ok(()), 0));

        let r: Result<(), &str> = resend_unprocessed(
            vec![1],
            FX_FAST,
            |_| {
                sends.fetch_add(1, Ordering::SeqCst);
                async { Err("validation") }
            },
            |_| "gave up",
        )
        .await;
        assert_eq!((r, sends.load(Ordering::SeqCst)), (Err("validation"), 1));
    }

    #[test]
    fn batch_pauses_double_up_to_the_cap_with_jitter() {
        let policy = Backoff {
            attempts: 8,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(1),
        };
        let first = policy.pause(1);
        assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
        let third = policy.pause(3);
        assert!(third >= Duration::from_millis(200) && third < Duration::from_millis(400));
        let late = policy.pause(usize::MAX);
        assert!(late >= Duration::from_secs(1) && late < Duration::from_secs(2));
    }

    #[test]
    fn lost_races_are_conflicts_and_this_writes_condition() {
        let conflict = StoreError::Conflict(anyhow::anyhow!("TransactionConflict"));
        assert!(is_lost_race(&conflict, 0));
        assert!(is_lost_race(&StoreError::condition_failed(), 0));
        assert!(is_lost_race(
            &StoreError::ConditionFailed { index: Some(0) },
            0
        ));
        assert!(!is_lost_race(
            &StoreError::ConditionFailed { index: Some(1) },
            0
        ));
        assert!(!is_lost_race(
            &StoreError::Unavailable(anyhow::anyhow!("throttled")),
            0
        ));
        assert!(backoff(1) >= Duration::from_millis(10) && backoff(9) < Duration::from_millis(320));
    }
}
