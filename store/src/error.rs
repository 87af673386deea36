//! [`StoreError`], the one error enum of the store.

/// Everything that can go wrong opening, feeding or reading the query store.
///
/// No variant carries row contents, so no error message can show a card number.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A [`crate::StoreConfig`] value is outside its bounds (see the `*_LIMIT` constants).
    #[error("invalid store configuration: {reason}")]
    Config {
        /// Which value and which bound.
        reason: &'static str,
    },
    /// The database file could not be created or its permissions set.
    #[error("query store file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused an operation: opening the file, a pragma, a migration or a query.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database could not be switched to write-ahead logging (`journal_mode` stayed `mode`).
    #[error("the database refused WAL mode (journal_mode is {mode:?})")]
    NotWal {
        /// The journal mode SQLite reported instead of `wal`.
        mode: String,
    },
    /// The database's schema version is not one this build can use: written by a newer build
    /// (the writer refuses to downgrade it) or not yet migrated (a reader never migrates).
    #[error(
        "query store schema version {found} in the database, this build uses {expected}{}",
        schema_hint(.found, .expected)
    )]
    SchemaVersion {
        /// The version recorded in the `schema_version` table (0 when there is none).
        found: i64,
        /// The version this build writes and reads.
        expected: i64,
    },
    /// The writer thread could not be started.
    #[error("cannot start the store writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The writer thread has stopped (after [`crate::StoreHandle::shutdown`]): nothing more is
    /// written.
    #[error("the store writer has stopped")]
    Closed,
}

/// What an operator does about a schema version this build cannot use.
fn schema_hint(found: &i64, expected: &i64) -> &'static str {
    if found > expected {
        ": a newer PayMesh build wrote it; start that build (nothing was changed)"
    } else {
        ": open it with the writer first, which migrates it"
    }
}
