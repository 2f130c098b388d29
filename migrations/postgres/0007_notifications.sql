-- Reaching people away from the page (issue 18): Web Push to the devices of live sessions,
-- e-mail notices, each person's settings and muted groups. Nothing here holds a post's
-- text, a patient's or a group's name: a notice names a kind and ids only.

-- Secrets of this installation, shared by every node: the VAPID key (RFC 8292) that push
-- services know the server by. Created once, at the first start.
CREATE TABLE installation_secrets (
    name        TEXT   PRIMARY KEY,
    secret      BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A browser's push subscription, tied to the session that made it: it ends with the
-- session (logout, password change or reset, ban, deactivation, suspension) by the cascade.
CREATE TABLE push_subscriptions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_hash  BYTEA  NOT NULL REFERENCES sessions (token_hash) ON DELETE CASCADE,
    endpoint      TEXT   NOT NULL UNIQUE,
    p256dh        BYTEA  NOT NULL,
    auth          BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    -- The last push its service accepted.
    last_ok_at    BIGINT
);
CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);
CREATE INDEX push_subscriptions_session ON push_subscriptions (session_hash);

-- Each person's choices; no row means the defaults (push and e-mail on, no quiet hours).
CREATE TABLE notification_settings (
    user_id        BIGINT  PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    push           BOOLEAN NOT NULL DEFAULT TRUE,
    email          BOOLEAN NOT NULL DEFAULT TRUE,
    -- Quiet hours (夜間は通知しない), minutes after midnight, Japan time; both or neither.
    quiet_start    INTEGER,
    quiet_end      INTEGER,
    -- When the last digest of unread posts was queued: one per interval.
    last_digest_at BIGINT,
    -- The mail server refused the address: shown to the facility's admins.
    bounced_at     BIGINT,
    bounce_detail  TEXT,
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

CREATE TABLE group_mutes (
    user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id  BIGINT NOT NULL REFERENCES care_groups (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);

-- Who has a page open and visible, on which node: written when it changes, not renewed.
-- Each node renews its one row of `presence_nodes`; a dead node's rows stop counting when
-- its row expires, and the next node to write clears them. A person looking at the app
-- gets no push.
CREATE TABLE presence_nodes (
    node      TEXT   PRIMARY KEY,
    until_at  BIGINT NOT NULL
);
CREATE TABLE presence (
    user_id   BIGINT NOT NULL,
    node      TEXT   NOT NULL REFERENCES presence_nodes (node) ON DELETE CASCADE,
    PRIMARY KEY (user_id, node)
);

-- How far each group's committed events were turned into notices. Existing groups start
-- at their end: an upgrade notifies nobody of old posts.
CREATE TABLE notice_cursors (
    group_id  BIGINT PRIMARY KEY REFERENCES care_groups (id) ON DELETE CASCADE,
    seq       BIGINT NOT NULL
);
INSERT INTO notice_cursors (group_id, seq) SELECT id, last_seq FROM care_groups;
-- The follower reads a group's new mentions by their place (the key starts with the user).
CREATE INDEX mentions_group_seq ON mentions (group_id, seq);

-- One notice to one person: the kind, the group and the newest event it covers.
CREATE TABLE notices (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id    BIGINT REFERENCES care_groups (id) ON DELETE CASCADE,
    kind        TEXT   NOT NULL
        CHECK (kind IN ('post', 'mention', 'invitation', 'account', 'test')),
    seq         BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX notices_user_group ON notices (user_id, group_id, created_at);

-- A notice on its way to one subscription. Claimed by one node at a time (until
-- `claimed_until`), retried at `due_at`; `outcome` is set once it is done.
CREATE TABLE push_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notice_id        BIGINT NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
    subscription_id  BIGINT NOT NULL REFERENCES push_subscriptions (id) ON DELETE CASCADE,
    due_at           BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    claimed_until    BIGINT,
    sent_at          BIGINT,
    outcome          TEXT CHECK (outcome IN ('sent', 'gave_up')),
    -- Why it gave up or was retried last: a status code or an error class, never content.
    detail           TEXT
);
CREATE INDEX push_deliveries_due ON push_deliveries (due_at) WHERE outcome IS NULL;
CREATE INDEX push_deliveries_notice ON push_deliveries (notice_id);

-- A content-free e-mail to one person, sent once across the nodes like a push.
CREATE TABLE mails (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT   NOT NULL CHECK (kind IN ('digest', 'invitation', 'setup_code',
                       'locked', 'password_reset', 'test')),
    -- The digest's number of unread posts.
    count          BIGINT,
    created_at     BIGINT NOT NULL,
    due_at         BIGINT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    claimed_until  BIGINT,
    sent_at        BIGINT,
    outcome        TEXT CHECK (outcome IN ('sent', 'refused', 'gave_up')),
    detail         TEXT
);
CREATE INDEX mails_due ON mails (due_at) WHERE outcome IS NULL;
