//! Random bytes for identifiers that must be unique, not secret: request
//! ids, trace ids, span ids.
//!
//! Each thread has a small fast generator (`SmallRng`), seeded once from
//! the operating system, so an id costs no system call. `rand`'s thread
//! generator would do too, but its first use probes the CPU's SIMD features
//! (ChaCha's dispatch: a dozen `CPUID` instructions, each a trap to the
//! hypervisor in a virtual machine), about 70 µs of every cold start on our
//! 2-core VM for an id nobody needs to be unpredictable. Keys, tokens and
//! salts do not come from here: they come from the OS or `rand::rng()`.

use std::cell::RefCell;

use rand::rngs::SmallRng;
use rand::{RngCore as _, SeedableRng as _};

thread_local! {
    static IDS: RefCell<SmallRng> = RefCell::new(seeded());
}

/// `N` random bytes for an identifier: unique, not secret (never a key,
/// token, nonce or anything whose unpredictability matters).
pub fn unique<const N: usize>() -> [u8; N] {
    let mut bytes = [0_u8; N];
    IDS.with_borrow_mut(|rng| rng.fill_bytes(&mut bytes));
    bytes
}

/// A generator seeded by the OS; if the OS has no randomness to give (which
/// Linux does not refuse after boot), by the clock, the process and the
/// thread, hashed with fixed keys (no other draw on the OS), which still
/// keeps ids apart.
fn seeded() -> SmallRng {
    SmallRng::try_from_os_rng().unwrap_or_else(|_| {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::hash::DefaultHasher::new();
        std::time::SystemTime::now().hash(&mut hasher);
        std::process::id().hash(&mut hasher);
        std::thread::current().id().hash(&mut hasher);
        SmallRng::seed_from_u64(hasher.finish())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Ids drawn on several threads at once never repeat: each thread's
    /// generator has a seed of its own.
    #[test]
    fn ids_from_many_threads_are_distinct() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..5_000).map(|_| unique::<8>()).collect::<Vec<_>>()))
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(seen.insert(id), "an id repeated");
            }
        }
        assert_eq!(seen.len(), 20_000);
    }

    /// Every byte position takes many values: the bytes are not a constant
    /// or a counter in disguise.
    #[test]
    fn every_byte_varies() {
        let ids: Vec<[u8; 16]> = (0..256).map(|_| unique()).collect();
        for i in 0..16 {
            let values: HashSet<u8> = ids.iter().map(|id| id[i]).collect();
            assert!(values.len() > 100, "byte {i} took {} values", values.len());
        }
    }
}
