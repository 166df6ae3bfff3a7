-- The same store as SQLite's migrations build, in PostgreSQL's types: every id and time is a
-- BIGINT (milliseconds since the epoch), as the server reads them.

CREATE TABLE projects (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    ingestion_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    sample_rate DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    daily_quota BIGINT
);

CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE groups (
    fingerprint TEXT PRIMARY KEY,
    project_id BIGINT NOT NULL REFERENCES projects(id),
    title TEXT NOT NULL,
    error_type TEXT,
    error_value TEXT,
    grouping_rule TEXT NOT NULL,
    level TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'unresolved',
    count BIGINT NOT NULL DEFAULT 0,
    users_affected BIGINT NOT NULL DEFAULT 0,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    file TEXT,
    line BIGINT,
    env TEXT NOT NULL,
    resolved_at BIGINT,
    regressed_at BIGINT
);
CREATE INDEX groups_project_last_seen ON groups(project_id, last_seen);

CREATE TABLE group_users (
    fingerprint TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (fingerprint, user_id)
);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT,
    project_id BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    level TEXT NOT NULL,
    env TEXT NOT NULL,
    release TEXT,
    message TEXT,
    error_type TEXT,
    error_value TEXT,
    stack TEXT NOT NULL,
    file TEXT,
    line BIGINT,
    user_id TEXT,
    url TEXT,
    status_code BIGINT,
    payload TEXT NOT NULL
);
CREATE INDEX events_fingerprint ON events(fingerprint, id);
CREATE INDEX events_received_at ON events(received_at);

CREATE TABLE logs (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
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

CREATE TABLE cron_monitors (
    id BIGSERIAL PRIMARY KEY,
    project_id BIGINT NOT NULL,
    slug TEXT NOT NULL,
    env TEXT,
    created_at BIGINT NOT NULL,
    last_checkin_at BIGINT,
    last_status TEXT,
    UNIQUE (project_id, slug)
);

CREATE TABLE cron_checkins (
    id BIGSERIAL PRIMARY KEY,
    monitor_id BIGINT NOT NULL REFERENCES cron_monitors(id),
    status TEXT NOT NULL,
    checkin_id TEXT,
    duration BIGINT,
    env TEXT,
    payload TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX cron_checkins_monitor ON cron_checkins(monitor_id, id);
CREATE INDEX cron_checkins_checkin_id ON cron_checkins(checkin_id);

CREATE TABLE write_probe (
    written_at BIGINT NOT NULL,
    filler BYTEA NOT NULL
);

-- The rules every server on this database shares (see SQLite's 0003_shared_rules.sql).
CREATE TABLE dedupe_windows (
    key TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL
);

CREATE TABLE quota_usage (
    project_id BIGINT NOT NULL,
    day BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (project_id, day)
);

CREATE TABLE maintenance (
    task TEXT PRIMARY KEY,
    last_run BIGINT NOT NULL
);

-- Requests per client address and minute, summed over every server. Losing it in a crash
-- only forgets a minute's counts, so it is not written to the WAL.
CREATE UNLOGGED TABLE rate_windows (
    client TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    used BIGINT NOT NULL,
    PRIMARY KEY (client, window_start)
);
