-- anchorage schema, version 2: batches. A batch's status and counts are
-- derived from its items; only the cancel is stored on the batch.
CREATE TABLE batches (
    id             TEXT PRIMARY KEY,
    team_id        TEXT NOT NULL REFERENCES teams (id),
    api_key_id     TEXT,
    total_requests INTEGER NOT NULL,
    configuration  TEXT NOT NULL,
    metadata       TEXT,
    created_at     BIGINT NOT NULL,
    cancelled_at   BIGINT
);
CREATE INDEX batches_team_created ON batches (team_id, created_at);

-- How many more launches an item may try after a failure (set by a retry).
ALTER TABLE start_requests ADD COLUMN attempts_left INTEGER NOT NULL DEFAULT 0;
CREATE INDEX start_requests_batch_status ON start_requests (batch_id, status);
CREATE INDEX sessions_batch ON sessions (batch_id, status);
