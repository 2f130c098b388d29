-- Sending over bad networks (issue 19): each session's storage key. The web client keeps
-- unsent posts and drafts in the browser (IndexedDB) encrypted under it, so that they
-- survive a reload without leaving readable text on a shared device. It lives in the
-- session's own row and goes with it: logout, "end all sessions", a password change or
-- reset, a ban, deactivation, suspension and the idle lock (which logs out) delete the
-- row; an expired or idle session's key is cleared by the keep-alive job (`session.rs`).
-- Made lazily, 32 random bytes, at the session's first `GET /api/v1/session/key`.
ALTER TABLE sessions ADD COLUMN storage_key BYTEA;
