//! What importing one record from elsewhere (a legacy database, another
//! installation) did. Every service's `import_*` operation answers with it,
//! so that re-running an import counts what it skipped instead of writing
//! anything twice.

/// The outcome of importing one record whose id the importer chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Imported {
    /// The record was written.
    Created,
    /// A record with this id was already there (an earlier run of the same
    /// import); nothing was written.
    AlreadyPresent,
}

impl Imported {
    /// Whether the record was written by this call.
    pub fn created(self) -> bool {
        self == Self::Created
    }
}
