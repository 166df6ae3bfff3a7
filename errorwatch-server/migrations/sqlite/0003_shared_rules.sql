-- The rules that must hold across every server on one database live in it, decided inside the
-- write transaction of a batch: the duplicate window, each project's use of its daily quota,
-- and which server runs a periodic task.

-- The key of each event whose 10-second duplicate window is open (or recently was).
CREATE TABLE dedupe_windows (
    key TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Events stored per project and UTC day (day = milliseconds since the epoch / 86 400 000).
CREATE TABLE quota_usage (
    project_id INTEGER NOT NULL,
    day INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (project_id, day)
) WITHOUT ROWID;

-- When each periodic task (retention, expiring windows) last ran, on any server.
CREATE TABLE maintenance (
    task TEXT PRIMARY KEY,
    last_run INTEGER NOT NULL
);
