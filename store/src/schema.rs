//! The schema, its migrations and how connections are opened.
//!
//! `MIGRATIONS[i]` takes the database from version `i` to `i + 1`; the `schema_version` table
//! holds one row with the current version. A writer applies the missing steps in one
//! transaction at open; a reader only checks the version.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::config::{BUSY_TIMEOUT_MS, WRITER_CACHE_KIB};
use crate::error::StoreError;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 4;

/// Step `i` migrates version `i` to `i + 1`. Append, never edit: a shipped step is history.
const MIGRATIONS: [&str; 4] = [
    r#"
-- One row per payment, holding its latest state. No column can hold a full card number:
-- masked_pan refuses a run of more than 10 digits (the writer also checks the digit total).
CREATE TABLE transactions (
    server_txn_id          INTEGER PRIMARY KEY,
    merchant_id            TEXT NOT NULL,
    order_id               TEXT NOT NULL,
    kind                   TEXT NOT NULL,
    result_code            INTEGER NOT NULL,
    state                  INTEGER,
    amount                 INTEGER,
    currency               INTEGER,
    authorized_amount      INTEGER,
    captured_amount        INTEGER,
    refunded_amount        INTEGER,
    approval_code          TEXT,
    rrn                    TEXT,
    upstream_response_code TEXT,
    masked_pan             TEXT CHECK (masked_pan NOT GLOB
                               '*[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]*'),
    token                  TEXT,
    updated_at_ms          INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX transactions_merchant_order ON transactions (merchant_id, order_id);
CREATE INDEX transactions_merchant_updated ON transactions (merchant_id, updated_at_ms);

CREATE TABLE merchants (
    id                 TEXT PRIMARY KEY,
    enabled            INTEGER NOT NULL,
    single_limit_minor INTEGER NOT NULL,
    daily_limit_minor  INTEGER NOT NULL
) STRICT;

-- Networks (clients): never the credential nor its hash.
CREATE TABLE networks (
    id          TEXT PRIMARY KEY,
    description TEXT NOT NULL
) STRICT;
"#,
    r#"
-- The network that created each payment: INQUIRY from the store is answered only to a network
-- that may see the payment. NULL: not recorded (rows of older builds).
ALTER TABLE transactions ADD COLUMN network TEXT;
"#,
    r#"
-- Installment months (할부) of a card payment: 0 a lump sum (every row of older builds).
ALTER TABLE transactions ADD COLUMN installment_months INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- Rows are stored in arrival order (row_id), with server_txn_id a unique key beside it. Server
-- transaction ids are a keyed permutation (not enumerable), so keyed by them every new row
-- landed at a random place of the table's B-tree, splitting pages of whole rows; now the table
-- grows at its end and only the small index entry lands at random.
CREATE TABLE transactions_v4 (
    row_id                 INTEGER PRIMARY KEY,
    server_txn_id          INTEGER NOT NULL UNIQUE,
    merchant_id            TEXT NOT NULL,
    order_id               TEXT NOT NULL,
    kind                   TEXT NOT NULL,
    result_code            INTEGER NOT NULL,
    state                  INTEGER,
    amount                 INTEGER,
    currency               INTEGER,
    authorized_amount      INTEGER,
    captured_amount        INTEGER,
    refunded_amount        INTEGER,
    approval_code          TEXT,
    rrn                    TEXT,
    upstream_response_code TEXT,
    masked_pan             TEXT CHECK (masked_pan NOT GLOB
                               '*[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]*'),
    token                  TEXT,
    updated_at_ms          INTEGER NOT NULL,
    network                TEXT,
    installment_months     INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO transactions_v4 (server_txn_id, merchant_id, order_id, kind, result_code, state,
    amount, currency, authorized_amount, captured_amount, refunded_amount, approval_code, rrn,
    upstream_response_code, masked_pan, token, updated_at_ms, network, installment_months)
SELECT server_txn_id, merchant_id, order_id, kind, result_code, state, amount, currency,
    authorized_amount, captured_amount, refunded_amount, approval_code, rrn,
    upstream_response_code, masked_pan, token, updated_at_ms, network, installment_months
FROM transactions ORDER BY updated_at_ms, server_txn_id;
DROP TABLE transactions;
ALTER TABLE transactions_v4 RENAME TO transactions;
CREATE UNIQUE INDEX transactions_merchant_order ON transactions (merchant_id, order_id);
CREATE INDEX transactions_merchant_updated ON transactions (merchant_id, updated_at_ms);
"#,
];

/// Permissions of the database file: its owner's only (it holds transactions, masked card
/// numbers and tokens). SQLite gives the `-wal` and `-shm` files it creates the database file's
/// permissions, so creating that one right is enough.
pub const FILE_MODE: u32 = 0o600;

/// Creates the database file with [`FILE_MODE`] when missing, before SQLite would create it with
/// the process's default; narrows an existing one (and its `-wal` and `-shm`) that group or
/// others may read. A narrowing that fails (not our file) is logged, not fatal.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            for suffix in ["", "-wal", "-shm"] {
                let mut name = path.as_os_str().to_owned();
                name.push(suffix);
                narrow(Path::new(&name));
            }
            Ok(())
        }
        Err(source) => Err(StoreError::File {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(unix)]
fn narrow(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(metadata) = std::fs::metadata(path) else {
        return;
    };
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0
        && let Err(error) =
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(FILE_MODE))
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:04o}", mode & 0o7777),
            %error,
            "query store file is open to group or others and cannot be narrowed: chmod 600 it"
        );
    }
}

/// Opens (creating if needed) the database for the writer: WAL, `synchronous=NORMAL`, migrated.
///
/// `synchronous=NORMAL` in WAL mode may lose the last transactions on power loss but never
/// corrupts the file: the journal is the durable record and the store can be rebuilt from it.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    create_private(path)?;
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal { mode });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // A negative cache_size is in KiB.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Opens the database read-only and checks that its schema is the one this build reads.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    let found = schema_version(&conn)?;
    if found != SCHEMA_VERSION {
        return Err(StoreError::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

/// The version recorded in the database; 0 for a database without a `schema_version` table.
pub fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if has_table.is_none() {
        return Ok(0);
    }
    let version: Option<i64> = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?;
    Ok(version.unwrap_or(0))
}

/// Applies the missing migration steps in one transaction; refuses a newer database.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found = schema_version(&tx)?;
    if !(0..=SCHEMA_VERSION).contains(&found) {
        return Err(StoreError::SchemaVersion {
            found,
            expected: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let first = usize::try_from(found).unwrap_or(usize::MAX);
    for step in MIGRATIONS.iter().skip(first) {
        tx.execute_batch(step)?;
    }
    tx.execute("DELETE FROM schema_version", [])?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    tracing::info!(
        from = found,
        to = SCHEMA_VERSION,
        "query store schema migrated"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_migration_per_version() {
        assert_eq!(MIGRATIONS.len() as i64, SCHEMA_VERSION);
    }

    #[test]
    fn version_3_rows_move_to_arrival_order_and_keep_their_keys() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in MIGRATIONS.iter().take(3) {
            conn.execute_batch(step).unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (3);
             INSERT INTO transactions (server_txn_id, merchant_id, order_id, kind, result_code,
                 masked_pan, updated_at_ms, network, installment_months)
             VALUES (900, 'M1', 'O-late', 'AUTHORIZE', 0, '411111******1111', 20, 'VAN', 3),
                    (100, 'M1', 'O-early', 'SALE', 0, NULL, 10, NULL, 0);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        let rows: Vec<(i64, i64, String, Option<String>, i64)> = conn
            .prepare(
                "SELECT row_id, server_txn_id, order_id, network, installment_months                  FROM transactions ORDER BY row_id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, 100, "O-early".into(), None, 0),
                (2, 900, "O-late".into(), Some("VAN".into()), 3)
            ]
        );
        // The keys still hold: the same transaction id, or the same order, is one row.
        let again = conn.execute(
            "INSERT INTO transactions (server_txn_id, merchant_id, order_id, kind, result_code, \
             updated_at_ms) VALUES (900, 'M1', 'O-other', 'AUTHORIZE', 0, 30)",
            [],
        );
        assert!(again.is_err());
        let same_order = conn.execute(
            "INSERT INTO transactions (server_txn_id, merchant_id, order_id, kind, result_code, \
             updated_at_ms) VALUES (901, 'M1', 'O-late', 'AUTHORIZE', 0, 30)",
            [],
        );
        assert!(same_order.is_err());
        // The masked-PAN guard survived the rebuild.
        let pan = conn.execute(
            "UPDATE transactions SET masked_pan = '4111111111111111' WHERE server_txn_id = 900",
            [],
        );
        assert!(pan.is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_database_and_its_wal_and_shm_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let mode = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(name).unwrap().permissions().mode() & 0o777
        };
        let conn = open_writer(&path).unwrap();
        conn.execute(
            "INSERT INTO networks (id, description) VALUES ('n', 'd')",
            [],
        )
        .unwrap();
        for suffix in ["", "-wal", "-shm"] {
            assert_eq!(mode(suffix), 0o600, "s.db{suffix}");
        }
        drop(conn);
        // A database an older build left readable by all is narrowed at open.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _conn = open_writer(&path).unwrap();
        assert_eq!(mode(""), 0o600);
    }

    #[test]
    fn the_masked_pan_check_refuses_a_full_pan_in_sql() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("s.db")).unwrap();
        let insert = |pan: &str| {
            conn.execute(
                "INSERT INTO transactions (server_txn_id, merchant_id, order_id, kind, \
                 result_code, masked_pan, updated_at_ms) VALUES (1, 'm', 'o', 'SALE', 0, ?1, 1)",
                [pan],
            )
        };
        assert!(insert("4111111111111111").is_err());
        assert!(insert("411111******1111").is_ok());
    }
}
