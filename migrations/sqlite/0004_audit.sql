-- The audit trail (MHLW safety guideline: who accessed which patient's information, and
-- every change, tamper-evident). Append-only and hash-chained: a record's hash covers the
-- previous record's hash and its own fields, so altering, removing or inserting a record
-- breaks the chain, which `renkei audit verify` finds. Never content, passwords or tokens.
CREATE TABLE audit_log (
    -- Consecutive from 1: a gap is a removed record.
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    -- No foreign keys: the record outlives what it names (purged groups, for one).
    actor_id     INTEGER,
    facility_id  INTEGER,
    action       TEXT    NOT NULL,
    group_id     INTEGER,
    target       TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    result       TEXT    NOT NULL,
    hash         BLOB    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_facility ON audit_log (facility_id, at);
CREATE INDEX audit_log_group ON audit_log (group_id, at);

-- The chain's head, locked by every append so that nodes append in turn; a verification
-- compares the last record with it, which finds records cut from the end.
CREATE TABLE audit_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_id    INTEGER NOT NULL,
    last_hash  BLOB    NOT NULL
);
INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, X'');
