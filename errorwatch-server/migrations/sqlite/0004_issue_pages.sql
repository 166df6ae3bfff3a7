-- What the issue pages read without scanning a group's events: its events per hour (the
-- activity chart) and the releases and environments it was seen in (the detail page, and the
-- list's release filter). Both are kept by each batch's transaction, with the events.
CREATE TABLE group_hours (
    fingerprint TEXT NOT NULL,
    -- Hours since the epoch of the events' received_at.
    hour INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, hour)
) WITHOUT ROWID;
CREATE INDEX group_hours_hour ON group_hours(hour);

CREATE TABLE group_values (
    fingerprint TEXT NOT NULL,
    -- `release` or `env`.
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, kind, value)
) WITHOUT ROWID;
CREATE INDEX group_values_value ON group_values(kind, value, fingerprint);

-- The groups a server already holds get theirs from their stored events.
INSERT INTO group_hours (fingerprint, hour, count)
    SELECT fingerprint, received_at / 3600000, count(*) FROM events GROUP BY 1, 2;
INSERT INTO group_values (fingerprint, kind, value, count, last_seen)
    SELECT fingerprint, 'release', release, count(*), max(received_at) FROM events
    WHERE release IS NOT NULL GROUP BY 1, 3;
INSERT INTO group_values (fingerprint, kind, value, count, last_seen)
    SELECT fingerprint, 'env', env, count(*), max(received_at) FROM events GROUP BY 1, 3;

-- The list's default order within a status, and its status filter.
CREATE INDEX groups_status_last_seen ON groups(status, last_seen);
