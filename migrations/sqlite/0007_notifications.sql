-- Reaching people away from the page (issue 18): Web Push to the devices of live sessions,
-- e-mail notices, each person's settings and muted groups. Nothing here holds a post's
-- text, a patient's or a group's name: a notice names a kind and ids only.

-- Secrets of this installation, shared by every node: the VAPID key (RFC 8292) that push
-- services know the server by. Created once, at the first start.
CREATE TABLE installation_secrets (
    name        TEXT   PRIMARY KEY,
    secret      BLOB   NOT NULL,
    created_at  INTEGER NOT NULL
);

-- A browser's push subscription, tied to the session that made it: it ends with the
-- session (logout, password change or reset, ban, deactivation, suspension) by the cascade.
CREATE TABLE push_subscriptions (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_hash  BLOB   NOT NULL REFERENCES sessions (token_hash) ON DELETE CASCADE,
    endpoint      TEXT   NOT NULL UNIQUE,
    p256dh        BLOB   NOT NULL,
    auth          BLOB   NOT NULL,
    created_at    INTEGER NOT NULL,
    -- The last push its service accepted.
    last_ok_at    INTEGER
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
CREATE INDEX push_subscriptions_session ON push_subscriptions (session_hash);

-- Each person's choices; no row means the defaults (push and e-mail on, no quiet hours).
CREATE TABLE notification_settings (
    user_id        INTEGER  PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    push           INTEGER NOT NULL DEFAULT 1,
    email          INTEGER NOT NULL DEFAULT 1,
    -- Quiet hours (夜間は通知しない), minutes after midnight, Japan time; both or neither.
    quiet_start    INTEGER,
    quiet_end      INTEGER,
    -- When the last digest of unread posts was queued: one per interval.
    last_digest_at INTEGER,
    -- The mail server refused the address: shown to the facility's admins.
    bounced_at     INTEGER,
    bounce_detail  TEXT,
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

CREATE TABLE group_mutes (
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id  INTEGER NOT NULL REFERENCES care_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);

-- Who has a page open and visible, on which node: written when it changes, not renewed.
-- Each node renews its one row of `presence_nodes`; a dead node's rows stop counting when
-- its row expires, and the next node to write clears them. A person looking at the app
-- gets no push.
CREATE TABLE presence_nodes (
    node      TEXT   PRIMARY KEY,
    until_at  INTEGER NOT NULL
);
CREATE TABLE presence (
    user_id   INTEGER NOT NULL,
    node      TEXT   NOT NULL REFERENCES presence_nodes (node) ON DELETE CASCADE,
    PRIMARY KEY (user_id, node)
);

-- How far each group's committed events were turned into notices. Existing groups start
-- at their end: an upgrade notifies nobody of old posts.
CREATE TABLE notice_cursors (
    group_id  INTEGER PRIMARY KEY REFERENCES care_groups (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL
);
INSERT INTO notice_cursors (group_id, seq) SELECT id, last_seq FROM care_groups;
-- The follower reads a group's new mentions by their place (the key starts with the user).
CREATE INDEX mentions_group_seq ON mentions (group_id, seq);

-- One notice to one person: the kind, the group and the newest event it covers.
CREATE TABLE notices (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id    INTEGER REFERENCES care_groups (id) ON DELETE CASCADE,
    kind        TEXT   NOT NULL
        CHECK (kind IN ('post', 'mention', 'invitation', 'account', 'test')),
    seq         INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX notices_user_group ON notices (user_id, group_id, created_at);

-- A notice on its way to one subscription. Claimed by one node at a time (until
-- `claimed_until`), retried at `due_at`; `outcome` is set once it is done.
CREATE TABLE push_deliveries (
    id               INTEGER PRIMARY KEY,
    notice_id        INTEGER NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    subscription_id  INTEGER NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    due_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    claimed_until    INTEGER,
    sent_at          INTEGER,
    outcome          TEXT CHECK (outcome IN ('sent', 'gave_up')),
    -- Why it gave up or was retried last: a status code or an error class, never content.
    detail           TEXT
);
CREATE INDEX push_deliveries_due ON push_deliveries (due_at) WHERE outcome IS NULL;
CREATE INDEX push_deliveries_notice ON push_deliveries (notice_id);

-- A content-free e-mail to one person, sent once across the nodes like a push.
CREATE TABLE mails (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT   NOT NULL CHECK (kind IN ('digest', 'invitation', 'setup_code',
                       'locked', 'password_reset', 'test')),
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
CREATE INDEX mails_due ON mails (due_at) WHERE outcome IS NULL;
