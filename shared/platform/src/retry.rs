//! One retry loop for optimistic writes that lose a race.
//!
//! Every read-check-write in the services (kv's conditional put, auth's
//! session rotation, invites, ...) can lose to a concurrent writer: its
//! version condition fails, or DynamoDB cancels the transaction with
//! `TransactionConflict` ([`StoreError::Conflict`]). The answer is always the
//! same: re-read and try again, a bounded number of times, with a short,
//! growing, jittered pause so racing writers spread out. [`retry_on_conflict`]
//! is that loop; the caller says which of its errors are conflicts.

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
