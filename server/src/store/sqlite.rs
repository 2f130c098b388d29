//! The embedded default: one SQLite file in WAL mode, `synchronous = FULL` so that an
//! acknowledged post survives a power cut, not only a crash.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::StoreError;

/// A [`super::Store`] on a SQLite file.
pub struct SqliteStore {
    /// Readers run in parallel; the sequencer is the only writer of events, so writers
    /// rarely wait on SQLite's single write lock (and `busy_timeout` covers the rest).
    pub(super) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Deleted content is overwritten, not left in free pages (art. 10(6)).
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(StoreError::Unavailable)?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }

    /// After content was erased: copies the write-ahead log into the database and empties
    /// it, so that no old page image holding the text stays in the WAL file. If readers
    /// hold the log, the next checkpoint overwrites it.
    pub(super) async fn erase_residue(&self) {
        let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        if let Err(err) = checkpoint {
            tracing::warn!(error = %err, "WAL checkpoint after an erase failed");
        }
    }

    /// A consistent copy of the whole database in one new file, taken while the server
    /// runs (`VACUUM INTO`: a read transaction, so writers go on). Written beside `to`
    /// first and renamed, so `to` is either complete or absent.
    pub(super) async fn backup_to(&self, to: &std::path::Path) -> Result<(), StoreError> {
        if to.exists() {
            return Err(StoreError::Conflict("the backup file exists already"));
        }
        let partial = to.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        sqlx::query("VACUUM INTO $1")
            .bind(partial.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await?;
        std::fs::rename(&partial, to).map_err(|err| StoreError::Backup(err.to_string()))
    }

    /// Begins a transaction that reads, then writes. `BEGIN IMMEDIATE` takes the write lock
    /// first: a deferred transaction that read before another connection wrote could not
    /// upgrade (SQLITE_BUSY_SNAPSHOT) and `busy_timeout` would not help.
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }
}
