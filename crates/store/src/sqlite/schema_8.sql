-- anchorage schema, version 8: video recordings of sessions. A recording is
-- `recording` while its session runs, then `ready` (its file is finished)
-- or `failed`.
CREATE TABLE recordings (
    id          TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    team_id     TEXT NOT NULL,
    status      TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL DEFAULT 0,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    ended_at    BIGINT
);
CREATE INDEX recordings_of_session ON recordings (session_id, created_at);
CREATE INDEX recordings_by_status ON recordings (status, ended_at);
