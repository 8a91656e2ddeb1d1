-- anchorage schema, version 6: CA certificates a team uploaded, which the
-- browsers of sessions that name them trust.
CREATE TABLE certificates (
    id          TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL REFERENCES teams (id),
    name        TEXT NOT NULL,
    description TEXT,
    pem         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (team_id, name)
);
