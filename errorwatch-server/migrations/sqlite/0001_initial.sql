-- Projects, their hashed API keys, issues (groups) and events.
CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    ingestion_enabled INTEGER NOT NULL DEFAULT 1,
    sample_rate REAL NOT NULL DEFAULT 1.0,
    daily_quota INTEGER
);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE groups (
    fingerprint TEXT PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id),
    title TEXT NOT NULL,
    error_type TEXT,
    error_value TEXT,
    grouping_rule TEXT NOT NULL,
    level TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'unresolved',
    count INTEGER NOT NULL DEFAULT 0,
    users_affected INTEGER NOT NULL DEFAULT 0,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    file TEXT,
    line INTEGER,
    env TEXT NOT NULL,
    resolved_at INTEGER,
    regressed_at INTEGER
);
CREATE INDEX groups_project_last_seen ON groups(project_id, last_seen);

CREATE TABLE group_users (
    fingerprint TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (fingerprint, user_id)
) WITHOUT ROWID;

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT,
    project_id INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    env TEXT NOT NULL,
    release TEXT,
    message TEXT,
    error_type TEXT,
    error_value TEXT,
    stack TEXT NOT NULL,
    file TEXT,
    line INTEGER,
    user_id TEXT,
    url TEXT,
    status_code INTEGER,
    payload TEXT NOT NULL
);
CREATE INDEX events_fingerprint ON events(fingerprint, id);
CREATE INDEX events_received_at ON events(received_at);

-- Application log lines (POST /api/v1/logs).
CREATE TABLE logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    channel TEXT NOT NULL,
    message TEXT NOT NULL,
    source TEXT NOT NULL,
    env TEXT,
    release TEXT,
    url TEXT,
    request_id TEXT,
    user_id TEXT,
    trace_id TEXT,
    span_id TEXT,
    context TEXT,
    extra TEXT
);
CREATE INDEX logs_project_id ON logs(project_id, id);
CREATE INDEX logs_received_at ON logs(received_at);

-- Scheduled jobs (created on their first check-in) and their check-ins.
CREATE TABLE cron_monitors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL,
    slug TEXT NOT NULL,
    env TEXT,
    created_at INTEGER NOT NULL,
    last_checkin_at INTEGER,
    last_status TEXT,
    UNIQUE (project_id, slug)
);

CREATE TABLE cron_checkins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    monitor_id INTEGER NOT NULL REFERENCES cron_monitors(id),
    status TEXT NOT NULL,
    checkin_id TEXT,
    duration INTEGER,
    env TEXT,
    payload TEXT,
    started_at INTEGER,
    finished_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX cron_checkins_monitor ON cron_checkins(monitor_id, id);
CREATE INDEX cron_checkins_checkin_id ON cron_checkins(checkin_id);
