-- Deleting posts (art. 10(6), 13(9)): the text leaves the system; who deleted what, when
-- and why stays on record, with a hash of the content, so that an audit can confirm what
-- was removed without keeping it.
CREATE TABLE deletions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id      BIGINT NOT NULL REFERENCES care_groups (id),
    seq           BIGINT NOT NULL,
    author_id     BIGINT REFERENCES users (id),
    deleted_by    BIGINT NOT NULL REFERENCES users (id),
    deleted_at    BIGINT NOT NULL,
    reason        TEXT,
    -- SHA-256 of the deleted text.
    content_hash  BYTEA NOT NULL,
    UNIQUE (group_id, seq)
);

-- Background jobs that must run once across every node: a node runs one when it can move
-- `last_run_at` forward by the job's interval, which only one node can do.
CREATE TABLE jobs (
    name         TEXT   PRIMARY KEY,
    last_run_at  BIGINT NOT NULL
);

-- Members report a post to the admins (別紙(2)(3)); an admin dismisses the report or
-- deletes the post.
CREATE TABLE reports (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id     BIGINT NOT NULL REFERENCES care_groups (id),
    seq          BIGINT NOT NULL,
    reporter_id  BIGINT NOT NULL REFERENCES users (id),
    reason       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    state        TEXT   NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'dismissed', 'deleted')),
    handled_by   BIGINT REFERENCES users (id),
    handled_at   BIGINT
);
CREATE INDEX reports_group ON reports (group_id, state);

-- Retention: archived groups purged for good (off unless RENKEI_RETENTION_DAYS is set).
-- What remains is that it happened: no name, no patient, no text; the number of events
-- and deletions it held and a SHA-256 over its posts' hashes, for an audit.
CREATE TABLE purges (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id           BIGINT NOT NULL,
    owner_facility_id  BIGINT,
    archived_at        BIGINT NOT NULL,
    purged_at          BIGINT NOT NULL,
    events             BIGINT NOT NULL,
    deletions          BIGINT NOT NULL,
    content_digest     BYTEA NOT NULL
);
