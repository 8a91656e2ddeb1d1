-- Schema 3: code tasks, their versions, and executions (runs of user code:
-- a task's run, or an execute_code snippet). Deletes are soft (`deleted` is
-- 0 or 1); a live task's name is its team's alone.
CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    deleted     BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX tasks_live_name ON tasks (team_id, name) WHERE deleted = 0;
CREATE INDEX tasks_team ON tasks (team_id, created_at);

-- `version` is 'draft' or a number; `number` is that number (NULL for the
-- draft), for ordering and for the next deploy's number. `code` is base64.
CREATE TABLE task_versions (
    id                    TEXT PRIMARY KEY,
    task_id               TEXT NOT NULL REFERENCES tasks (id),
    version               TEXT NOT NULL,
    number                BIGINT,
    code                  TEXT NOT NULL,
    language              TEXT NOT NULL,
    description           TEXT,
    browser_configuration TEXT,
    deleted               BIGINT NOT NULL DEFAULT 0,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE UNIQUE INDEX task_versions_name ON task_versions (task_id, version);

-- `execution_time` is milliseconds, once finished; `node_id` is the node
-- that runs it (its unfinished runs are cancelled when it restarts).
CREATE TABLE executions (
    id              TEXT PRIMARY KEY,
    team_id         TEXT NOT NULL,
    task_id         TEXT,
    task_version_id TEXT,
    version         TEXT NOT NULL,
    status          TEXT NOT NULL,
    output          TEXT,
    error_message   TEXT,
    session_id      TEXT,
    node_id         TEXT,
    started_at      BIGINT NOT NULL,
    execution_time  BIGINT
);
CREATE INDEX executions_task ON executions (task_id, started_at);
CREATE INDEX executions_node ON executions (node_id, status);
