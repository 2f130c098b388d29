//! The scale-out store: PostgreSQL, shared by every node. The row lock taken by
//! `UPDATE care_groups SET last_seq = last_seq + 1` orders concurrent posts to one group,
//! so sequence numbers follow commit order on every node.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use super::StoreError;

/// A [`super::Store`] on PostgreSQL.
pub struct PgStore {
    /// Sized for the sequencer's parallel writers plus catch-up reads and logins.
    pub(super) pool: PgPool,
}

impl PgStore {
    /// Connects and runs the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(StoreError::Unavailable)?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// After content was erased. PostgreSQL keeps the old row version until VACUUM
    /// reclaims it (autovacuum does, in time); what SQL can read is erased at commit.
    pub(super) async fn erase_residue(&self) {}

    /// PostgreSQL's own tools back it up (`pg_dump`, or the cluster's base backups and
    /// WAL archive): see `docs/operations.md`.
    pub(super) async fn backup_to(&self, _to: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Backup(
            "on PostgreSQL use pg_dump --format=custom (docs/operations.md)".into(),
        ))
    }

    /// Begins a transaction that reads, then writes. The row lock of the group's sequence
    /// orders concurrent writers; nothing more is needed.
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}
