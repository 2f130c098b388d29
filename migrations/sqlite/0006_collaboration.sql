-- Working together on a post (issue 8): 確認しました acknowledgements join each group's
-- sequence as `post_confirmed` events (`author_id` confirmed the post at `target_seq`),
-- search reads a folded copy of each post's text, mentions (`@name`) are kept per named
-- member, and a post may carry a file (an image, a PDF).
--
-- Files uploaded into a group (添付ファイル); the bytes are in the file store, not here. A
-- file is attached to at most one post (`events.file_id`); deleting the post erases it.
CREATE TABLE files (
    id             INTEGER PRIMARY KEY,
    group_id       INTEGER NOT NULL REFERENCES care_groups (id),
    uploader_id    INTEGER NOT NULL REFERENCES users (id),
    name           TEXT    NOT NULL,
    -- Recognised from the content, never from the name.
    media_type     TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    -- SHA-256 of the bytes: an audit can confirm what was stored, and deleted.
    content_hash   BLOB    NOT NULL,
    has_thumbnail  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    deleted_at     INTEGER
);
CREATE INDEX files_group ON files (group_id);

-- SQLite cannot change a CHECK constraint in place, so the events table is rebuilt once.
CREATE TABLE events_v3 (
    group_id      INTEGER NOT NULL REFERENCES care_groups (id),
    seq           INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('post', 'member_joined', 'member_left',
                      'member_removed', 'group_renamed', 'consent_recorded', 'post_deleted',
                      'group_archived', 'group_restored', 'archive_notice', 'post_confirmed')),
    author_id     INTEGER REFERENCES users (id),
    subject_id    INTEGER REFERENCES users (id),
    client_id     TEXT,
    text          TEXT,
    content_hash  BLOB,
    target_seq    INTEGER,
    deleted_at    INTEGER,
    due_at        INTEGER,
    created_at    INTEGER NOT NULL,
    -- The post's text folded for search (NFKC, lower case) when that differs from the
    -- text; erased with the text when the post is deleted.
    search_text   TEXT,
    -- The file the post carries.
    file_id       INTEGER REFERENCES files (id),
    PRIMARY KEY (group_id, seq)
);
INSERT INTO events_v3 (group_id, seq, kind, author_id, subject_id, client_id, text,
    content_hash, target_seq, deleted_at, due_at, created_at)
SELECT group_id, seq, kind, author_id, subject_id, client_id, text, content_hash, target_seq,
    deleted_at, due_at, created_at FROM events;
DROP TABLE events;
ALTER TABLE events_v3 RENAME TO events;
CREATE UNIQUE INDEX events_client_id ON events (author_id, client_id) WHERE client_id IS NOT NULL;
-- A member confirms a post once.
CREATE UNIQUE INDEX events_confirmation ON events (group_id, target_seq, author_id)
    WHERE kind = 'post_confirmed';
-- A file belongs to one post.
CREATE UNIQUE INDEX events_file ON events (file_id) WHERE file_id IS NOT NULL;

-- Who a post mentions, stored in the post's commit; a member's list of mentions reads it.
CREATE TABLE mentions (
    group_id    INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users (id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, group_id, seq),
    FOREIGN KEY (group_id, seq) REFERENCES events (group_id, seq) ON DELETE CASCADE
);
CREATE INDEX mentions_user_time ON mentions (user_id, created_at);
