//! Opaque, tamper-evident query and scan cursors, shared by both table adapters.
//!
//! A cursor carries the position after which the next page starts (the key of
//! the last item returned) and is bound to the query it came from: table,
//! index, partition, sort condition and direction. It is sealed with
//! ChaCha20-Poly1305 under a key only the service holds, with that query
//! shape as associated data: a client can neither read the position (keys
//! of the partition stay private), nor forge one, nor carry a cursor over to
//! another partition or query. A scan's cursor is bound the same way to
//! "scan of this table", so it continues no query and no query's cursor
//! continues a scan. Anything that fails to open is
//! [`StoreError::InvalidCursor`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::table::{Query, StoreError};

const NONCE_LEN: usize = 12;

/// Where a page ended: the primary key of its last item and, for index
/// queries, that item's index key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Table partition key of the last item.
    pub pk: String,
    /// Table sort key of the last item.
    pub sk: String,
    /// Index partition key of the last item (index queries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipk: Option<String>,
    /// Index sort key of the last item (index queries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isk: Option<String>,
}

/// Seals and opens cursors for one table.
#[derive(Clone)]
pub struct CursorSealer {
    key: [u8; 32],
    table: String,
}

impl std::fmt::Debug for CursorSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorSealer")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl CursorSealer {
    /// A sealer for `table` under a 32-byte secret key.
    pub fn new(key: [u8; 32], table: impl Into<String>) -> Self {
        Self {
            key,
            table: table.into(),
        }
    }

    fn scope(&self, query: &Query) -> Vec<u8> {
        // Everything that shapes the result set, so that a cursor only ever
        // continues the query it was issued for.
        format!(
            "{}\u{0}{:?}\u{0}{}\u{0}{:?}\u{0}{}",
            self.table,
            query.index.map(|i| i.name()),
            query.pk,
            query.sort,
            query.descending
        )
        .into_bytes()
    }

    fn scan_scope(&self) -> Vec<u8> {
        // A query's scope has `None` or `Some("gsi…")` where this has `scan`,
        // so the two never coincide.
        format!("{}\u{0}scan", self.table).into_bytes()
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.key))
    }

    /// Seals the position after which `query` continues.
    pub fn seal(&self, query: &Query, position: &Position) -> String {
        self.seal_in(&self.scope(query), position)
    }

    /// Opens a cursor given back with `query`; fails unless this sealer made it for the same query.
    pub fn open(&self, query: &Query, cursor: &str) -> Result<Position, StoreError> {
        let position = self.open_in(&self.scope(query), cursor)?;
        // Belt and braces: the position must lie in the queried partition.
        let in_partition = match query.index {
            None => position.pk == query.pk,
            Some(_) => position.ipk.as_deref() == Some(query.pk.as_str()),
        };
        if in_partition {
            Ok(position)
        } else {
            Err(StoreError::InvalidCursor)
        }
    }

    /// Seals the table key after which a scan of this table continues.
    pub fn seal_scan(&self, position: &Position) -> String {
        self.seal_in(&self.scan_scope(), position)
    }

    /// Opens a cursor given back to a scan; fails unless this sealer made it
    /// for a scan (of the same table, since the table is part of the sealer).
    pub fn open_scan(&self, cursor: &str) -> Result<Position, StoreError> {
        let position = self.open_in(&self.scan_scope(), cursor)?;
        // Belt and braces: a scan continues after a table key only.
        if position.ipk.is_none() && position.isk.is_none() {
            Ok(position)
        } else {
            Err(StoreError::InvalidCursor)
        }
    }

    fn seal_in(&self, aad: &[u8], position: &Position) -> String {
        let payload = serde_json::to_vec(position).unwrap_or_default();
        let mut nonce = [0_u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce only fails past 256 GiB of input.
        let sealed = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: &payload, aad })
            .unwrap_or_default();
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn open_in(&self, aad: &[u8], cursor: &str) -> Result<Position, StoreError> {
        if cursor.len() > 8192 {
            return Err(StoreError::InvalidCursor);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(cursor)
            .map_err(|_| StoreError::InvalidCursor)?;
        if raw.len() <= NONCE_LEN {
            return Err(StoreError::InvalidCursor);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let payload = self
            .cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| StoreError::InvalidCursor)?;
        serde_json::from_slice(&payload).map_err(|_| StoreError::InvalidCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Index, SortKey};

    fn fx_query(pk: &str) -> Query {
        Query::partition(pk)
    }

    #[test]
    fn a_sealed_cursor_opens_for_its_own_query_only() {
        let sealer = CursorSealer::new([7; 32], "t");
        let q = fx_query("p1");
        let pos = Position {
            pk: "p1".into(),
            sk: "s9".into(),
            ipk: None,
            isk: None,
        };
        let c = sealer.seal(&q, &pos);
        assert_eq!(sealer.open(&q, &c).ok(), Some(pos));

        let other_partition = fx_query("p2");
        assert!(matches!(
            sealer.open(&other_partition, &c),
            Err(StoreError::InvalidCursor)
        ));
        let mut other_sort = fx_query("p1");
        other_sort.sort = SortKey::Prefix("x".into());
        assert!(sealer.open(&other_sort, &c).is_err());
        let mut other_index = fx_query("p1");
        other_index.index = Some(Index::Gsi1);
        assert!(sealer.open(&other_index, &c).is_err());
        let other_key = CursorSealer::new([8; 32], "t");
        assert!(other_key.open(&q, &c).is_err());
    }

    #[test]
    fn scan_and_query_cursors_do_not_open_as_each_other() {
        let sealer = CursorSealer::new([7; 32], "t");
        let pos = Position {
            pk: "p1".into(),
            sk: "s9".into(),
            ipk: None,
            isk: None,
        };
        let scan = sealer.seal_scan(&pos);
        assert_eq!(sealer.open_scan(&scan).ok(), Some(pos.clone()));

        let q = fx_query("p1");
        assert!(matches!(
            sealer.open(&q, &scan),
            Err(StoreError::InvalidCursor)
        ));
        let query_cursor = sealer.seal(&q, &pos);
        assert!(matches!(
            sealer.open_scan(&query_cursor),
            Err(StoreError::InvalidCursor)
        ));
        let other_table = CursorSealer::new([7; 32], "u");
        assert!(other_table.open_scan(&scan).is_err());
        let other_key = CursorSealer::new([8; 32], "t");
        assert!(other_key.open_scan(&scan).is_err());
    }

    #[test]
    fn cursors_do_not_reveal_the_position() {
        let sealer = CursorSealer::new([7; 32], "t");
        let q = fx_query("NS#acme#secret-partition");
        let c = sealer.seal(
            &q,
            &Position {
                pk: "NS#acme#secret-partition".into(),
                sk: "private-key-name".into(),
                ipk: None,
                isk: None,
            },
        );
        let raw = URL_SAFE_NO_PAD.decode(&c).unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains("private-key-name") && !text.contains("acme"),
            "{text}"
        );
        assert_ne!(
            c,
            sealer.seal(
                &q,
                &Position {
                    pk: "NS#acme#secret-partition".into(),
                    sk: "private-key-name".into(),
                    ipk: None,
                    isk: None
                }
            ),
            "nonces differ"
        );
    }

    #[test]
    fn altered_or_garbage_cursors_are_rejected() {
        let sealer = CursorSealer::new([7; 32], "t");
        let q = fx_query("p1");
        let c = sealer.seal(
            &q,
            &Position {
                pk: "p1".into(),
                sk: "a".into(),
                ipk: None,
                isk: None,
            },
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&c).unwrap_or_default();
        if let Some(last) = raw.last_mut() {
            *last ^= 1;
        }
        let tampered = URL_SAFE_NO_PAD.encode(raw);
        for bad in [tampered.as_str(), "", "!!", "abc", &"A".repeat(9000)] {
            assert!(
                matches!(sealer.open(&q, bad), Err(StoreError::InvalidCursor)),
                "{bad}"
            );
        }
    }
}
