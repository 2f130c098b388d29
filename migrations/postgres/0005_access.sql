-- Access to accounts (art. 13(2)(4)(6)(8), 14(1)): password ageing and history, login
-- failures and temporary locks, two-factor authentication (TOTP, RFC 6238) with recovery
-- codes, and what a user sees of their own sessions.

-- When the password was last set (the `rotated` policy forces a change after 60 days).
ALTER TABLE users ADD COLUMN password_changed_at BIGINT;
UPDATE users SET password_changed_at = created_at WHERE password_hash <> '';
-- Consecutive failed logins since the last success or lock; a lock ends at locked_until.
ALTER TABLE users ADD COLUMN failed_logins BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until BIGINT;

-- TOTP: the secret in use (NULL: no second factor), one being set up, and the last time
-- step accepted (a code of that step or an earlier one is never accepted again).
ALTER TABLE users ADD COLUMN totp_secret BYTEA;
ALTER TABLE users ADD COLUMN totp_pending BYTEA;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;

-- One-time recovery codes for a lost authenticator, stored as SHA-256 hashes.
CREATE TABLE recovery_codes (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BYTEA    NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

-- The hashes of a user's most recent passwords, the current one included: a new password
-- may not equal any of them.
CREATE TABLE password_history (
    user_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash     TEXT    NOT NULL,
    set_at   BIGINT NOT NULL
);
CREATE INDEX password_history_user ON password_history (user_id, set_at);
INSERT INTO password_history (user_id, hash, set_at)
SELECT id, password_hash, created_at FROM users WHERE password_hash <> '';

-- A session's last use (idle timeout), the device it was opened on and from where, and
-- whether it may do nothing but change an expired password or set up a required second
-- factor.
ALTER TABLE sessions ADD COLUMN last_used_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET last_used_at = created_at;
ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN source TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sessions ADD COLUMN must_enroll_second_factor BOOLEAN NOT NULL DEFAULT FALSE;

-- How far each group's events are sealed into the audit trail: a record "events sealed"
-- holds the digest of a range of them (renkei audit verify recomputes it). No foreign key:
-- the mark outlives a purged group, as the records do.
CREATE TABLE audit_seals (
    group_id    BIGINT PRIMARY KEY,
    sealed_seq  BIGINT NOT NULL
);
