-- The city's operating rules: facility applications (様式1) and pledges (様式2), account
-- states and staff pledges (様式4), patients and their consent (様式3), the admins' room
-- (MCS管理者の部屋), invitations, and membership changes as events of a group's sequence.

-- A facility (事業所) applies, and the city operator (市) decides. Rows that existed
-- before applications were recorded are facilities already approved.
ALTER TABLE facilities ADD COLUMN status TEXT NOT NULL DEFAULT 'approved'
    CHECK (status IN ('applied', 'approved', 'rejected', 'suspended', 'withdrawn'));
ALTER TABLE facilities ADD COLUMN address TEXT NOT NULL DEFAULT '';
-- The application as submitted (contact, admins, staff roster): JSON.
ALTER TABLE facilities ADD COLUMN application TEXT NOT NULL DEFAULT '{}';
-- Dates are calendar dates, 'YYYY-MM-DD'.
ALTER TABLE facilities ADD COLUMN pledge_received_on TEXT;
ALTER TABLE facilities ADD COLUMN decided_at BIGINT;
ALTER TABLE facilities ADD COLUMN status_reason TEXT;

-- The login is the person's e-mail address: one account per person (art. 13(1)).
ALTER TABLE users ADD COLUMN kana TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'restricted', 'banned', 'deactivated'));
ALTER TABLE users ADD COLUMN status_reason TEXT;
ALTER TABLE users ADD COLUMN pledge_received_on TEXT;

CREATE TABLE user_photos (
    user_id       BIGINT PRIMARY KEY REFERENCES users (id),
    content_type  TEXT   NOT NULL,
    bytes         BYTEA  NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- How far each member has read their group (the client reports it), for the membership
-- review (定期的に精査).
ALTER TABLE memberships ADD COLUMN last_read_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE memberships ADD COLUMN last_read_at BIGINT;

-- One-time codes with which a new account sets its first password; only a hash is kept.
CREATE TABLE password_setups (
    token_hash  BYTEA  PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX password_setups_user ON password_setups (user_id);

ALTER TABLE care_groups ADD COLUMN patient_kana TEXT;
ALTER TABLE care_groups ADD COLUMN patient_birth_date TEXT;
ALTER TABLE care_groups ADD COLUMN patient_notes TEXT;
-- 様式3: who signed ('patient', 'family', 'patient_and_family'), when, and when the copy
-- went to the city. Nobody posts in a patient group before it is on file.
ALTER TABLE care_groups ADD COLUMN consent_signed_by TEXT
    CHECK (consent_signed_by IN ('patient', 'family', 'patient_and_family'));
ALTER TABLE care_groups ADD COLUMN consent_signed_on TEXT;
ALTER TABLE care_groups ADD COLUMN consent_copy_sent_on TEXT;
-- A group the system keeps (the admins' room); NULL for every other group.
ALTER TABLE care_groups ADD COLUMN system TEXT;
-- When the archive process told the group it will be archived for inactivity, and for when.
ALTER TABLE care_groups ADD COLUMN archive_notice_at BIGINT;
ALTER TABLE care_groups ADD COLUMN archive_due_at BIGINT;
CREATE UNIQUE INDEX care_groups_system ON care_groups (system) WHERE system IS NOT NULL;

INSERT INTO care_groups (kind, name, system, created_at)
VALUES ('free', 'MCS管理者の部屋', 'admins_room', 0);
INSERT INTO memberships (group_id, user_id, joined_at)
SELECT g.id, u.id, 0 FROM users u, care_groups g
WHERE g.system = 'admins_room' AND u.role IN ('operator', 'admin');

-- An invitation becomes a membership when the invitee accepted (招待の受理) and an admin of
-- the invitee's facility approved (招待承認). 'pending' past expires_at is expired.
CREATE TABLE invitations (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id     BIGINT NOT NULL REFERENCES care_groups (id),
    invitee_id   BIGINT NOT NULL REFERENCES users (id),
    inviter_id   BIGINT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    accepted_at  BIGINT,
    approved_at  BIGINT,
    approved_by  BIGINT REFERENCES users (id),
    state        TEXT   NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'joined', 'declined', 'refused', 'cancelled', 'expired')),
    closed_at    BIGINT,
    closed_by    BIGINT REFERENCES users (id)
);
CREATE UNIQUE INDEX invitations_open ON invitations (group_id, invitee_id) WHERE state = 'pending';
CREATE INDEX invitations_invitee ON invitations (invitee_id);

-- Membership changes join posts in each group's sequence: `subject_id` is the member who
-- joined, left or was removed (on a deleted post: who deleted it); `author_id` who acted;
-- `text` a new name; `target_seq` the post a deletion removed. The kinds of moderation and
-- the archive (保管庫) are listed here too, as in the SQLite migration.
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('post', 'member_joined',
    'member_left', 'member_removed', 'group_renamed', 'consent_recorded', 'post_deleted',
    'group_archived', 'group_restored', 'archive_notice'));
ALTER TABLE events ADD COLUMN subject_id BIGINT REFERENCES users (id);
ALTER TABLE events ADD COLUMN target_seq BIGINT;
ALTER TABLE events ADD COLUMN deleted_at BIGINT;
-- When an archive notice says the group will be archived.
ALTER TABLE events ADD COLUMN due_at BIGINT;
