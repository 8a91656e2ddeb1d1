-- anchorage schema, version 5: browser extensions a team uploaded. The
-- unpacked files live in the data dir under extensions/<id>; the row keeps
-- the manifest as uploaded.
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
