-- Schema 2: work is claimed by nodes. A pending start request is in the
-- queue of the node named by `claimed_by`, or of nobody yet (NULL; a claim
-- of a node whose lease ran out counts as nobody's). `team_turns` keeps
-- each team's last turn (a counter: the smallest turn, or none, was served
-- least recently), for the fair order of claims.
ALTER TABLE start_requests ADD COLUMN claimed_by TEXT;
-- The order requests were queued in (SQLite's rowid).
ALTER TABLE start_requests ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
-- The queue by team, in queue order.
CREATE INDEX start_requests_queue ON start_requests (status, team_id, seq);
-- A node's claimed requests (a claim weighs the teams' claimed loads).
CREATE INDEX start_requests_claimed ON start_requests (claimed_by, status);

CREATE TABLE team_turns (
    team_id   TEXT PRIMARY KEY,
    turn      BIGINT NOT NULL
);
