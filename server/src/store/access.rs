//! Storage of access to accounts: a user's sessions (list, idle use, ending them),
//! password changes with their history, resets, and failed logins with temporary locks.
//! One body of SQL for both engines.

use async_trait::async_trait;
use renkei_protocol::{Millis, UserId};

use super::StoreError;
use renkei_domain::password::HISTORY;

/// One of a user's sessions as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRecord {
    pub token_hash: Vec<u8>,
    pub created_at: Millis,
    pub last_used_at: Millis,
    pub expires_at: Millis,
    pub user_agent: String,
    pub source: String,
}

/// A user's password as stored: its hash, when it was set, and the hashes of the last
/// [`HISTORY`] passwords (the current one included), newest first.
#[derive(Debug, Clone)]
pub struct PasswordState {
    pub hash: String,
    pub changed_at: Option<Millis>,
    pub history: Vec<String>,
}

/// Access to accounts as stored. Every method is one transaction.
#[async_trait]
pub trait Access: Send + Sync {
    /// Marks sessions as used at `now` (a request's, or the sessions of open sockets,
    /// periodically). Returns those of `token_hashes` that have ended (expired or
    /// deleted), whose sockets should close.
    async fn touch_sessions(
        &self,
        token_hashes: &[Vec<u8>],
        now: Millis,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// The user's unexpired sessions, most recently used first.
    async fn user_sessions(
        &self,
        user: UserId,
        now: Millis,
        idle_since: Millis,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// Ends every session of the user but `keep`; returns the ended sessions' hashes.
    async fn end_user_sessions(
        &self,
        user: UserId,
        keep: Option<&[u8]>,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Ends one of the user's sessions; false when the user has no such session.
    async fn end_user_session(&self, user: UserId, token_hash: &[u8]) -> Result<bool, StoreError>;
    /// The session's storage key (for what its browser keeps encrypted): the one it has,
    /// or `fresh` stored as its key when it has none. `None` when the session is gone.
    async fn session_storage_key(
        &self,
        token_hash: &[u8],
        fresh: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Erases the storage keys of sessions that expired (`expires_at <= now`) or went idle
    /// (`last_used_at <= idle_since`) but whose rows remain; returns how many.
    async fn forget_ended_storage_keys(
        &self,
        now: Millis,
        idle_since: Millis,
    ) -> Result<u64, StoreError>;

    /// The user whose unused, unexpired setup code hashes to `token_hash`.
    async fn setup_code_user(
        &self,
        token_hash: &[u8],
        now: Millis,
    ) -> Result<Option<UserId>, StoreError>;
    /// The hashes of the user's last [`HISTORY`] passwords, newest first (kept across an
    /// admin's reset).
    async fn password_history(&self, user: UserId) -> Result<Vec<String>, StoreError>;
    /// The user's password, if they have one.
    async fn password_state(&self, user: UserId) -> Result<Option<PasswordState>, StoreError>;
    /// Sets a new password (its hash): remembers it in the history (keeping the last
    /// [`HISTORY`]), clears failed logins and any lock, and ends every session of the user
    /// but `keep`, which may now do more than change the password. Returns the ended
    /// sessions' hashes.
    async fn change_password(
        &self,
        user: UserId,
        hash: &str,
        at: Millis,
        keep: Option<&[u8]>,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
    /// An admin's reset (a lost device, a leaked password): the password and the second
    /// factor no longer work (a setup code sets the next password), the lock is lifted and
    /// every session ends. Returns the ended sessions' hashes.
    async fn reset_password(&self, user: UserId) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Replaces the hash of the same password by one made at the configured cost.
    async fn rehash_password(&self, user: UserId, old: &str, new: &str) -> Result<(), StoreError>;

    /// Counts a failed login; at `lock_after` consecutive failures the account is locked
    /// until `now + lock_ms` and the count starts again. Returns the lock's end when this
    /// failure locked the account.
    async fn login_failed(
        &self,
        user: UserId,
        now: Millis,
        lock_after: u32,
        lock_ms: Millis,
    ) -> Result<Option<Millis>, StoreError>;
    /// A successful login: failures no longer count.
    async fn login_succeeded(&self, user: UserId) -> Result<(), StoreError>;
    /// Whether the user has a second factor, and how many recovery codes are left.
    async fn two_factor(&self, user: UserId) -> Result<(bool, u32), StoreError>;
    /// Keeps a new TOTP secret (encrypted: `secret::SecretKey::seal_totp`) until a code
    /// confirms it.
    async fn start_totp(&self, user: UserId, secret: &[u8]) -> Result<(), StoreError>;
    /// The TOTP secret being set up, if any.
    async fn pending_totp(&self, user: UserId) -> Result<Option<Vec<u8>>, StoreError>;
    /// Puts the pending secret `secret` in use (`Conflict` if another replaced it), with
    /// `step` as the last accepted step and these recovery codes (hashes) replacing any
    /// earlier; the user's sessions waiting for it may now do everything.
    async fn enable_totp(
        &self,
        user: UserId,
        secret: &[u8],
        step: i64,
        recovery_hashes: &[Vec<u8>],
    ) -> Result<(), StoreError>;
    /// Removes the second factor and its recovery codes.
    async fn disable_totp(&self, user: UserId) -> Result<(), StoreError>;
    /// Accepts TOTP step `step` once: false when it, or a later one, was accepted already.
    async fn use_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError>;
    /// The TOTP secrets in use that are stored encrypted, by account.
    async fn sealed_totp_secrets(&self) -> Result<Vec<(UserId, Vec<u8>)>, StoreError>;
    /// Encrypts with `seal` the TOTP secrets, in use or pending, still stored in the clear
    /// (written before migration 0010), and marks them encrypted, in one transaction;
    /// returns how many accounts. A row another node encrypted meanwhile is left alone.
    async fn encrypt_plain_totp(
        &self,
        seal: &(dyn for<'s> Fn(UserId, &'s [u8]) -> Vec<u8> + Send + Sync),
    ) -> Result<u64, StoreError>;
    /// Uses up an unused recovery code (its hash); false when there is none such.
    async fn use_recovery_code(
        &self,
        user: UserId,
        code_hash: &[u8],
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Who is told when the account is locked: the other active admins of its facility,
    /// or, when it has none (or the account is an operator's), the active operators.
    async fn lock_notice_recipients(&self, user: UserId) -> Result<Vec<UserId>, StoreError>;

    /// The active operators, who are told of a facility's application.
    async fn operators(&self) -> Result<Vec<UserId>, StoreError>;
}

macro_rules! access_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl Access for $store {
            async fn touch_sessions(
                &self,
                token_hashes: &[Vec<u8>],
                now: Millis,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                if token_hashes.is_empty() {
                    return Ok(Vec::new());
                }
                // One statement per chunk, each its own short transaction: SQLite's single
                // writer (the sequencer's too) never waits for the whole list.
                let mut alive = std::collections::HashSet::new();
                for chunk in token_hashes.chunks(500) {
                    let mut update =
                        sqlx::QueryBuilder::<$db>::new("UPDATE sessions SET last_used_at = ");
                    update
                        .push_bind(now)
                        .push(" WHERE expires_at > ")
                        .push_bind(now)
                        .push(" AND token_hash IN (");
                    let mut hashes = update.separated(", ");
                    for hash in chunk {
                        hashes.push_bind(hash.clone());
                    }
                    update.push(") RETURNING token_hash");
                    let rows: Vec<(Vec<u8>,)> =
                        update.build_query_as().fetch_all(&self.pool).await?;
                    alive.extend(rows.into_iter().map(|(hash,)| hash));
                }
                Ok(token_hashes
                    .iter()
                    .filter(|hash| !alive.contains(*hash))
                    .cloned()
                    .collect())
            }

            async fn user_sessions(
                &self,
                user: UserId,
                now: Millis,
                idle_since: Millis,
            ) -> Result<Vec<SessionRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT token_hash, created_at, last_used_at, expires_at, user_agent, \
                     source FROM sessions \
                     WHERE user_id = $1 AND expires_at > $2 AND last_used_at > $3 \
                     ORDER BY last_used_at DESC",
                )
                .bind(user)
                .bind(now)
                .bind(idle_since)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn end_user_sessions(
                &self,
                user: UserId,
                keep: Option<&[u8]>,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                let mut tx = self.begin_write().await?;
                let ended = Self::end_sessions_in(&mut tx, user, keep).await?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn end_user_session(
                &self,
                user: UserId,
                token_hash: &[u8],
            ) -> Result<bool, StoreError> {
                let deleted =
                    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash = $2")
                        .bind(user)
                        .bind(token_hash)
                        .execute(&self.pool)
                        .await?;
                Ok(deleted.rows_affected() > 0)
            }

            async fn session_storage_key(
                &self,
                token_hash: &[u8],
                fresh: &[u8],
            ) -> Result<Option<Vec<u8>>, StoreError> {
                // One statement: two first requests of a session race to the same key.
                let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(
                    "UPDATE sessions SET storage_key = COALESCE(storage_key, $1) \
                     WHERE token_hash = $2 RETURNING storage_key",
                )
                .bind(fresh)
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.and_then(|(key,)| key))
            }

            async fn forget_ended_storage_keys(
                &self,
                now: Millis,
                idle_since: Millis,
            ) -> Result<u64, StoreError> {
                let forgotten = sqlx::query(
                    "UPDATE sessions SET storage_key = NULL WHERE storage_key IS NOT NULL \
                     AND (expires_at <= $1 OR last_used_at <= $2)",
                )
                .bind(now)
                .bind(idle_since)
                .execute(&self.pool)
                .await?;
                Ok(forgotten.rows_affected())
            }

            async fn setup_code_user(
                &self,
                token_hash: &[u8],
                now: Millis,
            ) -> Result<Option<UserId>, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "SELECT user_id FROM password_setups WHERE token_hash = $1 AND expires_at > $2",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(user,)| user))
            }

            async fn password_history(&self, user: UserId) -> Result<Vec<String>, StoreError> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT hash FROM password_history WHERE user_id = $1 \
                     ORDER BY set_at DESC LIMIT $2",
                )
                .bind(user)
                .bind(HISTORY as i64)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(hash,)| hash).collect())
            }

            async fn password_state(
                &self,
                user: UserId,
            ) -> Result<Option<PasswordState>, StoreError> {
                let row: Option<(String, Option<i64>)> = sqlx::query_as(
                    "SELECT password_hash, password_changed_at FROM users WHERE id = $1",
                )
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
                let Some((hash, changed_at)) = row.filter(|(hash, _)| !hash.is_empty()) else {
                    return Ok(None);
                };
                Ok(Some(PasswordState {
                    hash,
                    changed_at,
                    history: self.password_history(user).await?,
                }))
            }

            async fn change_password(
                &self,
                user: UserId,
                hash: &str,
                at: Millis,
                keep: Option<&[u8]>,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                let mut tx = self.begin_write().await?;
                Self::set_password(&mut tx, user, hash, at).await?;
                let ended = Self::end_sessions_in(&mut tx, user, keep).await?;
                sqlx::query("UPDATE sessions SET must_change_password = FALSE WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn reset_password(&self, user: UserId) -> Result<Vec<Vec<u8>>, StoreError> {
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE users SET password_hash = '', failed_logins = 0, \
                     locked_until = NULL WHERE id = $1",
                )
                .bind(user)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                Self::clear_second_factor_in(&mut tx, user).await?;
                let ended = Self::end_sessions_in(&mut tx, user, None).await?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn rehash_password(
                &self,
                user: UserId,
                old: &str,
                new: &str,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
                )
                .bind(user)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE password_history SET hash = $3 WHERE user_id = $1 AND hash = $2",
                )
                .bind(user)
                .bind(old)
                .bind(new)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn login_failed(
                &self,
                user: UserId,
                now: Millis,
                lock_after: u32,
                lock_ms: Millis,
            ) -> Result<Option<Millis>, StoreError> {
                let until = now + lock_ms;
                let row: Option<(Option<i64>,)> = sqlx::query_as(
                    "UPDATE users SET \
                     locked_until = CASE WHEN failed_logins + 1 >= $2 THEN $3 \
                                    ELSE locked_until END, \
                     failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 \
                                     ELSE failed_logins + 1 END \
                     WHERE id = $1 RETURNING locked_until",
                )
                .bind(user)
                .bind(i64::from(lock_after.max(1)))
                .bind(until)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row
                    .and_then(|(locked,)| locked)
                    .filter(|locked| *locked == until))
            }

            async fn two_factor(&self, user: UserId) -> Result<(bool, u32), StoreError> {
                let row: Option<(bool, i64)> = sqlx::query_as(
                    "SELECT totp_secret IS NOT NULL, \
                     (SELECT COUNT(*) FROM recovery_codes r \
                      WHERE r.user_id = u.id AND r.used_at IS NULL) \
                     FROM users u WHERE u.id = $1",
                )
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
                let (enabled, left) = row.ok_or(StoreError::NotFound("user"))?;
                Ok((enabled, u32::try_from(left).unwrap_or(0)))
            }

            async fn start_totp(&self, user: UserId, secret: &[u8]) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE users SET totp_pending = $2, totp_encrypted = TRUE WHERE id = $1",
                )
                .bind(user)
                .bind(secret)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn pending_totp(&self, user: UserId) -> Result<Option<Vec<u8>>, StoreError> {
                let row: Option<(Option<Vec<u8>>,)> =
                    sqlx::query_as("SELECT totp_pending FROM users WHERE id = $1")
                        .bind(user)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.and_then(|(pending,)| pending))
            }

            async fn enable_totp(
                &self,
                user: UserId,
                secret: &[u8],
                step: i64,
                recovery_hashes: &[Vec<u8>],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, \
                     totp_last_step = $3 WHERE id = $1 AND totp_pending = $2",
                )
                .bind(user)
                .bind(secret)
                .bind(step)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::Conflict(
                        "another second factor is being set up",
                    ));
                }
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                for hash in recovery_hashes {
                    sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                        .bind(user)
                        .bind(hash)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "UPDATE sessions SET must_enroll_second_factor = FALSE WHERE user_id = $1",
                )
                .bind(user)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn disable_totp(&self, user: UserId) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                Self::clear_second_factor_in(&mut tx, user).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn use_totp_step(&self, user: UserId, step: i64) -> Result<bool, StoreError> {
                let updated = sqlx::query(
                    "UPDATE users SET totp_last_step = $2 \
                     WHERE id = $1 AND totp_last_step < $2 AND totp_secret IS NOT NULL",
                )
                .bind(user)
                .bind(step)
                .execute(&self.pool)
                .await?;
                Ok(updated.rows_affected() == 1)
            }

            async fn sealed_totp_secrets(&self) -> Result<Vec<(UserId, Vec<u8>)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, totp_secret FROM users \
                     WHERE totp_secret IS NOT NULL AND totp_encrypted = TRUE ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn encrypt_plain_totp(
                &self,
                seal: &(dyn for<'s> Fn(UserId, &'s [u8]) -> Vec<u8> + Send + Sync),
            ) -> Result<u64, StoreError> {
                let mut tx = self.begin_write().await?;
                let plain: Vec<(UserId, Option<Vec<u8>>, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT id, totp_secret, totp_pending FROM users WHERE totp_encrypted = FALSE \
                     AND (totp_secret IS NOT NULL OR totp_pending IS NOT NULL) ORDER BY id",
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut encrypted = 0;
                for (user, secret, pending) in plain {
                    // Conditional: on PostgreSQL a node starting at the same time may have
                    // encrypted the row since (this UPDATE waits for its lock, then finds
                    // the mark set and changes nothing).
                    let updated = sqlx::query(
                        "UPDATE users SET totp_secret = $2, totp_pending = $3, \
                         totp_encrypted = TRUE WHERE id = $1 AND totp_encrypted = FALSE",
                    )
                    .bind(user)
                    .bind(secret.map(|s| seal(user, &s)))
                    .bind(pending.map(|s| seal(user, &s)))
                    .execute(&mut *tx)
                    .await?;
                    encrypted += updated.rows_affected();
                }
                tx.commit().await?;
                Ok(encrypted)
            }

            async fn use_recovery_code(
                &self,
                user: UserId,
                code_hash: &[u8],
                now: Millis,
            ) -> Result<bool, StoreError> {
                let updated = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $3 \
                     WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                )
                .bind(user)
                .bind(code_hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(updated.rows_affected() == 1)
            }

            async fn lock_notice_recipients(
                &self,
                user: UserId,
            ) -> Result<Vec<UserId>, StoreError> {
                let admins: Vec<(i64,)> = sqlx::query_as(
                    "SELECT a.id FROM users a JOIN users u ON u.facility_id = a.facility_id \
                     WHERE u.id = $1 AND a.id <> $1 AND a.role = 'admin' \
                     AND a.status = 'active' ORDER BY a.id",
                )
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
                let recipients = if admins.is_empty() {
                    sqlx::query_as(
                        "SELECT id FROM users WHERE role = 'operator' AND status = 'active' \
                         AND id <> $1 ORDER BY id",
                    )
                    .bind(user)
                    .fetch_all(&self.pool)
                    .await?
                } else {
                    admins
                };
                Ok(recipients.into_iter().map(|(id,)| id).collect())
            }

            async fn operators(&self) -> Result<Vec<UserId>, StoreError> {
                let operators: Vec<(i64,)> = sqlx::query_as(
                    "SELECT id FROM users WHERE role = 'operator' AND status = 'active' \
                     ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(operators.into_iter().map(|(id,)| id).collect())
            }

            async fn login_succeeded(&self, user: UserId) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE users SET failed_logins = 0 WHERE id = $1 AND failed_logins <> 0",
                )
                .bind(user)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }

        impl $store {
            /// Ends every session of `user` but `keep` inside `tx`; the ended hashes.
            async fn end_sessions_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                user: UserId,
                keep: Option<&[u8]>,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                let rows: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "DELETE FROM sessions WHERE user_id = $1 \
                     AND ($2 IS NULL OR token_hash <> $2) RETURNING token_hash",
                )
                .bind(user)
                .bind(keep)
                .fetch_all(&mut **tx)
                .await?;
                Ok(rows.into_iter().map(|(hash,)| hash).collect())
            }

            /// Removes `user`'s second factor, pending or in use, and recovery codes.
            async fn clear_second_factor_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                user: UserId,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE users SET totp_secret = NULL, totp_pending = NULL WHERE id = $1",
                )
                .bind(user)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Sets a password inside a transaction: its hash, when, the history (the last
            /// [`HISTORY`] kept), and no failed logins or lock any more.
            pub(super) async fn set_password(
                tx: &mut sqlx::Transaction<'static, $db>,
                user: UserId,
                hash: &str,
                at: Millis,
            ) -> Result<(), StoreError> {
                let updated = sqlx::query(
                    "UPDATE users SET password_hash = $2, password_changed_at = $3, \
                     failed_logins = 0, locked_until = NULL WHERE id = $1",
                )
                .bind(user)
                .bind(hash)
                .bind(at)
                .execute(&mut **tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                sqlx::query(
                    "INSERT INTO password_history (user_id, hash, set_at) VALUES ($1, $2, $3)",
                )
                .bind(user)
                .bind(hash)
                .bind(at)
                .execute(&mut **tx)
                .await?;
                sqlx::query(
                    "DELETE FROM password_history WHERE user_id = $1 AND set_at < \
                     (SELECT MIN(set_at) FROM (SELECT set_at FROM password_history \
                      WHERE user_id = $1 ORDER BY set_at DESC LIMIT $2) AS kept)",
                )
                .bind(user)
                .bind(HISTORY as i64)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }
    };
}

access_store!(super::SqliteStore, sqlx::Sqlite);
access_store!(super::PgStore, sqlx::Postgres);
