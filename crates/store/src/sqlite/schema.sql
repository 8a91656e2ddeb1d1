-- anchorage schema, version 1. Portable SQL: BIGINT milliseconds for time,
-- TEXT for ids and JSON, INTEGER 0/1 for flags.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE teams (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams (id),
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL REFERENCES teams (id),
    api_key_id    TEXT,
    api_key_name  TEXT NOT NULL,
    request_id    TEXT,
    batch_id      TEXT,
    status        TEXT NOT NULL,
    configuration TEXT NOT NULL,
    headless      INTEGER NOT NULL,
    recording     INTEGER NOT NULL,
    proxy         INTEGER NOT NULL,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    ended_at      BIGINT,
    end_reason    TEXT
);
CREATE INDEX sessions_team_created ON sessions (team_id, created_at);
CREATE INDEX sessions_status ON sessions (status);

CREATE TABLE session_tags (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    position   INTEGER NOT NULL,
    tag        TEXT NOT NULL,
    PRIMARY KEY (session_id, position)
);
CREATE INDEX session_tags_tag ON session_tags (tag, session_id);

CREATE TABLE start_requests (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL REFERENCES teams (id),
    api_key_id    TEXT,
    api_key_name  TEXT NOT NULL,
    batch_id      TEXT,
    item_index    INTEGER NOT NULL,
    status        TEXT NOT NULL,
    session_id    TEXT,
    configuration TEXT NOT NULL,
    error         TEXT,
    retry_count   INTEGER NOT NULL,
    metadata      TEXT,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    completed_at  BIGINT
);
CREATE INDEX start_requests_status ON start_requests (status, created_at);
CREATE INDEX start_requests_batch ON start_requests (batch_id, item_index);
