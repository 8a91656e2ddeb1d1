-- anchorage schema, version 4: saved browser profiles. A profile's files
-- live in the data dir under profiles/<id>/<version>; `version` names the
-- complete copy in use (NULL: nothing saved yet). A save writes a new
-- version and then switches this column, so a crash mid-save leaves the
-- previous version in use.
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
