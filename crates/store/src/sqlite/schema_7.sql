-- anchorage schema, version 7: webhooks and their outbox. An event is
-- written in the same transaction as the change that causes it, with one
-- delivery per subscribed webhook; each attempt at a delivery is a row.
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

CREATE TABLE webhook_subscriptions (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    event_type TEXT NOT NULL,
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
    attempt         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    response_status INTEGER,
    error_message   TEXT,
    scheduled_at    BIGINT NOT NULL,
    completed_at    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, scheduled_at);
CREATE INDEX webhook_deliveries_of_webhook ON webhook_deliveries (webhook_id, scheduled_at);

-- When the batch's batch.completed/failed event was recorded (a retry clears it).
ALTER TABLE batches ADD COLUMN final_event_at BIGINT;
