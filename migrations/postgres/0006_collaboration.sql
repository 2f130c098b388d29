-- Working together on a post (issue 8): 確認しました acknowledgements join each group's
-- sequence as `post_confirmed` events (`author_id` confirmed the post at `target_seq`),
-- search reads a folded copy of each post's text, mentions (`@name`) are kept per named
-- member, and a post may carry a file (an image, a PDF).
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('post', 'member_joined',
    'member_left', 'member_removed', 'group_renamed', 'consent_recorded', 'post_deleted',
    'group_archived', 'group_restored', 'archive_notice', 'post_confirmed'));
-- The post's text folded for search (NFKC, lower case) when that differs from the text;
-- erased with the text when the post is deleted.
ALTER TABLE events ADD COLUMN search_text TEXT;

-- Files uploaded into a group (添付ファイル); the bytes are in the file store, not here. A
-- file is attached to at most one post (`events.file_id`); deleting the post erases it.
CREATE TABLE files (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id       BIGINT NOT NULL REFERENCES care_groups (id),
    uploader_id    BIGINT NOT NULL REFERENCES users (id),
    name           TEXT    NOT NULL,
    -- Recognised from the content, never from the name.
    media_type     TEXT    NOT NULL,
    size           BIGINT NOT NULL,
    -- SHA-256 of the bytes: an audit can confirm what was stored, and deleted.
    content_hash   BYTEA   NOT NULL,
    has_thumbnail  BOOLEAN NOT NULL,
    created_at     BIGINT NOT NULL,
    deleted_at     BIGINT
);
CREATE INDEX files_group ON files (group_id);
-- The file a post carries.
ALTER TABLE events ADD COLUMN file_id BIGINT REFERENCES files (id);
-- A member confirms a post once.
CREATE UNIQUE INDEX events_confirmation ON events (group_id, target_seq, author_id)
    WHERE kind = 'post_confirmed';
-- A file belongs to one post.
CREATE UNIQUE INDEX events_file ON events (file_id) WHERE file_id IS NOT NULL;

-- Who a post mentions, stored in the post's commit; a member's list of mentions reads it.
CREATE TABLE mentions (
    group_id    BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, group_id, seq),
    FOREIGN KEY (group_id, seq) REFERENCES events (group_id, seq) ON DELETE CASCADE
);
CREATE INDEX mentions_user_time ON mentions (user_id, created_at);
