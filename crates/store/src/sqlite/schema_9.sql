-- anchorage schema, version 9: nodes. Every server process that shares the
-- database registers with a lease it renews; a node whose lease has run out
-- is dead. Webhook attempts record the node that claimed them, so that a
-- node releases only its own claims, and those of dead nodes.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    max_sessions BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL
);

ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;

-- The node a session's browser runs on.
ALTER TABLE sessions ADD COLUMN node_id TEXT;
