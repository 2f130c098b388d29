-- The messaging core: facilities, users, sessions, groups, memberships and each group's
-- event sequence. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE facilities (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    facility_id    BIGINT REFERENCES facilities (id),
    login          TEXT    NOT NULL UNIQUE,
    display_name   TEXT    NOT NULL,
    profession     TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('operator', 'admin', 'staff')),
    password_hash  TEXT    NOT NULL,
    created_at     BIGINT NOT NULL
);

-- Only a SHA-256 of each session token is stored: a copy of the database opens no session.
CREATE TABLE sessions (
    token_hash  BYTEA    PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE care_groups (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               TEXT    NOT NULL CHECK (kind IN ('patient', 'free')),
    name               TEXT    NOT NULL,
    patient_name       TEXT,
    owner_facility_id  BIGINT REFERENCES facilities (id),
    archived_at        BIGINT,
    -- The last sequence number handed out; bumped in the same transaction as the event.
    last_seq           BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    CHECK ((kind = 'patient') = (patient_name IS NOT NULL))
);

CREATE TABLE memberships (
    group_id   BIGINT NOT NULL REFERENCES care_groups (id),
    user_id    BIGINT NOT NULL REFERENCES users (id),
    joined_at  BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Each group's sequence: consecutive seq from 1, no gaps, in commit order.
CREATE TABLE events (
    group_id      BIGINT NOT NULL REFERENCES care_groups (id),
    seq           BIGINT NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('post')),
    author_id     BIGINT REFERENCES users (id),
    client_id     TEXT,
    text          TEXT,
    -- SHA-256 of the post's text: the idempotency check compares it, and it outlives the
    -- text when a post is deleted.
    content_hash  BYTEA,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (group_id, seq)
);
CREATE UNIQUE INDEX events_client_id ON events (author_id, client_id) WHERE client_id IS NOT NULL;
