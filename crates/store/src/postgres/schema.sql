-- The PostgreSQL schema, version 1: the same tables and columns as the
-- SQLite migrations 1 to 9 together, in PostgreSQL's types. Times are
-- BIGINT milliseconds since the epoch, ids and JSON documents TEXT, every
-- number BIGINT (the code reads them all as i64).

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
    headless      BOOLEAN NOT NULL,
    recording     BOOLEAN NOT NULL,
    proxy         BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    ended_at      BIGINT,
    end_reason    TEXT,
    node_id       TEXT
);
CREATE INDEX sessions_team_created ON sessions (team_id, created_at);
CREATE INDEX sessions_status ON sessions (status);
CREATE INDEX sessions_batch ON sessions (batch_id, status);
CREATE INDEX sessions_node ON sessions (node_id, status);

CREATE TABLE session_tags (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    position   BIGINT NOT NULL,
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
    item_index    BIGINT NOT NULL,
    status        TEXT NOT NULL,
    session_id    TEXT,
    configuration TEXT NOT NULL,
    error         TEXT,
    retry_count   BIGINT NOT NULL,
    metadata      TEXT,
    created_at    BIGINT NOT NULL,
    started_at    BIGINT,
    completed_at  BIGINT,
    attempts_left BIGINT NOT NULL DEFAULT 0,
    options       TEXT
);
CREATE INDEX start_requests_status ON start_requests (status, created_at);
CREATE INDEX start_requests_batch ON start_requests (batch_id, item_index);
CREATE INDEX start_requests_batch_status ON start_requests (batch_id, status);

CREATE TABLE batches (
    id             TEXT PRIMARY KEY,
    team_id        TEXT NOT NULL REFERENCES teams (id),
    api_key_id     TEXT,
    total_requests BIGINT NOT NULL,
    configuration  TEXT NOT NULL,
    metadata       TEXT,
    created_at     BIGINT NOT NULL,
    cancelled_at   BIGINT,
    final_event_at BIGINT
);
CREATE INDEX batches_team_created ON batches (team_id, created_at);

CREATE TABLE profiles (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id),
    name        TEXT NOT NULL,
    description TEXT,
    source      TEXT,
    session_id  TEXT,
    status      TEXT NOT NULL,
    version     TEXT,
    size_bytes  BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE extensions (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id),
    name        TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX extensions_by_team ON extensions (team_id, created_at);

CREATE TABLE certificates (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id),
    name        TEXT NOT NULL,
    description TEXT,
    pem         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE webhooks (
    id                    TEXT PRIMARY KEY,
    team_id               TEXT NOT NULL REFERENCES teams (id),
    url                   TEXT NOT NULL,
    description           TEXT,
    enabled               BOOLEAN NOT NULL,
    secret                TEXT NOT NULL,
    previous_secret       TEXT,
    previous_secret_until BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    deleted_at            BIGINT
);
CREATE INDEX webhooks_of_team ON webhooks (team_id, created_at);

-- `seq` keeps the order the subscriptions were given in (SQLite's rowid).
CREATE TABLE webhook_subscriptions (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    event_type TEXT NOT NULL,
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (webhook_id, event_type)
);

CREATE TABLE webhook_events (
    id         TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL REFERENCES webhook_events (id),
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id),
    attempt         BIGINT NOT NULL,
    status          TEXT NOT NULL,
    response_status BIGINT,
    error_message   TEXT,
    scheduled_at    BIGINT NOT NULL,
    completed_at    BIGINT,
    claimed_by      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, scheduled_at);
CREATE INDEX webhook_deliveries_of_webhook ON webhook_deliveries (webhook_id, scheduled_at);

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

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    max_sessions BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL
);
