-- A facility's application (様式1) is told to the operators (issue 19): notices and mails
-- get the kind `facility_applied`. SQLite cannot change a CHECK constraint in place, so
-- `notices` and `push_deliveries` (which refers to it) and `mails` are rebuilt: the new
-- tables are filled first and the old ones dropped deliveries first, so no cascade runs;
-- renaming `notices_new` rewrites the reference of `push_deliveries_new` to `notices`.

CREATE TABLE notices_new (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id    INTEGER REFERENCES care_groups (id) ON DELETE CASCADE,
    kind        TEXT   NOT NULL
        CHECK (kind IN ('post', 'mention', 'invitation', 'account', 'test', 'facility_applied')),
    seq         INTEGER,
    created_at  INTEGER NOT NULL
);
INSERT INTO notices_new (id, user_id, group_id, kind, seq, created_at)
    SELECT id, user_id, group_id, kind, seq, created_at FROM notices;

CREATE TABLE push_deliveries_new (
    id               INTEGER PRIMARY KEY,
    notice_id        INTEGER NOT NULL REFERENCES notices_new (id) ON DELETE CASCADE,
    subscription_id  INTEGER NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    due_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    claimed_until    INTEGER,
    sent_at          INTEGER,
    outcome          TEXT CHECK (outcome IN ('sent', 'gave_up')),
    -- Why it gave up or was retried last: a status code or an error class, never content.
    detail           TEXT
);
INSERT INTO push_deliveries_new (id, notice_id, subscription_id, due_at, attempts,
        claimed_until, sent_at, outcome, detail)
    SELECT id, notice_id, subscription_id, due_at, attempts, claimed_until, sent_at, outcome,
        detail
    FROM push_deliveries;

CREATE TABLE mails_new (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT   NOT NULL CHECK (kind IN ('digest', 'invitation', 'setup_code',
                       'locked', 'password_reset', 'test', 'facility_applied')),
    -- The digest's number of unread posts.
    count          INTEGER,
    created_at     INTEGER NOT NULL,
    due_at         INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    claimed_until  INTEGER,
    sent_at        INTEGER,
    outcome        TEXT CHECK (outcome IN ('sent', 'refused', 'gave_up')),
    detail         TEXT
);
INSERT INTO mails_new (id, user_id, kind, count, created_at, due_at, attempts, claimed_until,
        sent_at, outcome, detail)
    SELECT id, user_id, kind, count, created_at, due_at, attempts, claimed_until, sent_at,
        outcome, detail
    FROM mails;

DROP TABLE push_deliveries;
DROP TABLE notices;
DROP TABLE mails;
ALTER TABLE notices_new RENAME TO notices;
ALTER TABLE push_deliveries_new RENAME TO push_deliveries;
ALTER TABLE mails_new RENAME TO mails;

CREATE INDEX notices_user_group ON notices (user_id, group_id, created_at);
CREATE INDEX push_deliveries_due ON push_deliveries (due_at) WHERE outcome IS NULL;
CREATE INDEX push_deliveries_notice ON push_deliveries (notice_id);
CREATE INDEX mails_due ON mails (due_at) WHERE outcome IS NULL;
