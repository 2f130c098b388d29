-- TOTP secrets are stored encrypted under the key of RENKEI_SECRET_KEY_FILE, which lives
-- outside the database (AES-256-GCM bound to the account: see server/src/secret.rs). SQL
-- cannot encrypt with a key it never sees, so this only marks which rows are encrypted:
-- existing ones are in the clear (0), and the server encrypts them at its next start, once,
-- in one transaction, before it serves. Both totp_secret and totp_pending follow the mark.
ALTER TABLE users ADD COLUMN totp_encrypted BOOLEAN NOT NULL DEFAULT FALSE;
